"""The TextClassifier resource and the text model: zero-shot, training, prediction, evaluation.

Real sentence embeddings from the packaged all-MiniLM-L6-v2, on a few dozen short news-like
sentences of three topics written into YOLO-layout datasets under ``tmp_path``. The class names
are deliberately not in alphabetical order, so that a sorted class list cannot pass for the
class-id order.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from labeling_dag.resources.text_classifier import TextClassifier

from labeling_dag import text_embeddings
from labeling_dag.text_classification import class_probabilities, fit_logistic_regression
from labeling_dag.text_evaluation import evaluation_figures
from labeling_dag.text_model import FORMAT, LOGISTIC_REGRESSION, TextModel, zero_shot_weights

NAMES = ("technology", "sport", "business")
DESCRIPTIONS = {
    "sport": "sport: football, tennis, athletics, matches and teams",
    "business": "business: companies, markets, the economy and finance",
    "technology": "technology: computers, software, the internet and gadgets",
}
TEXTS = {
    "sport": [
        "The striker scored twice in the second half.",
        "The home team won the championship final.",
        "She set a new world record in the 100 metres.",
        "The coach was sacked after five straight defeats.",
        "Fans filled the stadium for the derby match.",
        "He served three aces in the final set at Wimbledon.",
        "The cyclist took the yellow jersey on the mountain stage.",
        "The goalkeeper saved a penalty in extra time.",
        "The rugby side beat their rivals by ten points.",
        "The boxer won the title fight by knockout.",
        "The marathon runner finished in under two hours.",
    ],
    "business": [
        "The company's quarterly profits rose by ten percent.",
        "Shares fell sharply after the earnings report.",
        "The central bank raised interest rates again.",
        "The retailer announced plans to cut two thousand jobs.",
        "Investors welcomed the merger of the two banks.",
        "Inflation reached its highest level in a decade.",
        "The firm's revenue beat analysts' forecasts.",
        "Oil prices pushed the stock market lower.",
        "The airline reported a loss for the year.",
        "The startup raised fifty million dollars from investors.",
        "Consumer spending slowed in the last quarter.",
    ],
    "technology": [
        "The new smartphone has a faster processor.",
        "Researchers released an open-source machine learning library.",
        "The software update fixes a security vulnerability.",
        "The chip maker unveiled a new graphics card.",
        "Hackers stole passwords from the social network.",
        "The laptop's battery lasts twelve hours.",
        "Engineers built a quantum computer with more qubits.",
        "The browser now blocks third-party cookies.",
        "The app uses artificial intelligence to translate speech.",
        "The operating system adds support for new hardware.",
        "Cloud servers went down for several hours.",
    ],
}
N_TRAIN = 8  # per class; the other 3 texts of each class are the val split


def write_dataset(root: Path, splits: dict[str, list[tuple[str, int | None]]], names: tuple[str, ...] = NAMES) -> Path:
    """A YOLO-layout text dataset: ``images/<split>/NNN.txt`` items, each with a whole-item label
    (none: an empty label file); return its data.yaml."""
    for split, rows in splits.items():
        for index, (text, class_id) in enumerate(rows):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "images" / split / f"{index:03d}.txt").write_text(text, encoding="utf-8")
            label = "" if class_id is None else f"{class_id} 0.5 0.5 1 1\n"
            (root / "labels" / split / f"{index:03d}.txt").write_text(label)
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def _rows(start: int, stop: int) -> list[tuple[str, int | None]]:
    return [(text, NAMES.index(name)) for name in NAMES for text in TEXTS[name][start:stop]]


@pytest.fixture(scope="module")
def embedder() -> object:
    """The packaged sentence-transformers model, loaded once for the module (it is cached per
    process): the tests that embed then do not each pay for it."""
    return text_embeddings.load_embedder("")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 labelled texts per class for training, 3 per class for validation."""
    return write_dataset(tmp_path_factory.mktemp("texts"), {"train": _rows(0, N_TRAIN), "val": _rows(N_TRAIN, None)})


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zero_shot_weights(NAMES, tmp_path_factory.mktemp("zero_shot") / "model.json", descriptions=DESCRIPTIONS)


@pytest.fixture(scope="module")
def trained(embedder: object, dataset: Path, zero_shot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TextClassifier().train(dataset, tmp_path_factory.mktemp("run"), base_weights=zero_shot, epochs=30)


def _items(data_yaml: Path, split: str) -> list[Path]:
    return sorted((data_yaml.parent / "images" / split).glob("*.txt"))


# --------------------------------------------------------------------------- the weights file


def test_zero_shot_weights_are_the_documented_json(zero_shot: Path) -> None:
    content = json.loads(zero_shot.read_text())
    assert content == {
        "format": FORMAT,
        "task": "classify",
        "kind": "zero_shot",
        "class_names": list(NAMES),
        "class_descriptions": DESCRIPTIONS,
        "embedder": "all-MiniLM-L6-v2",
    }
    default = zero_shot_weights(["a b"], zero_shot.with_name("default.json"))
    assert json.loads(default.read_text())["class_descriptions"] == {"a b": "a b"}


def test_describe_reads_both_kinds(zero_shot: Path, trained: Path) -> None:
    assert TextClassifier().describe(zero_shot) == ("classify", NAMES)
    assert TextClassifier().describe(trained) == ("classify", NAMES)
    assert trained == trained.parents[1] / "weights" / "model.json"


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b"\xff\xfe\x00binary",
        b"[1, 2, 3]",
        json.dumps({"format": "something-else/1", "task": "classify"}).encode(),
        json.dumps({"format": FORMAT, "task": "classify", "kind": "zero_shot", "class_names": ["a"]}).encode(),
        json.dumps(
            {
                "format": FORMAT,
                "task": "classify",
                "kind": LOGISTIC_REGRESSION,
                "class_names": ["a", "b"],
                "class_descriptions": {"a": "a", "b": "b"},
                "embedder": "all-MiniLM-L6-v2",
                "coef": [[0.0, 1.0]],
                "intercept": [0.0, 0.0],
            }
        ).encode(),
        json.dumps(
            {
                "format": FORMAT,
                "task": "classify",
                "kind": LOGISTIC_REGRESSION,
                "class_names": ["a"],
                "class_descriptions": {"a": "a"},
                "embedder": "all-MiniLM-L6-v2",
                "coef": [["x"]],
                "intercept": [0.0],
            }
        ).encode(),
        json.dumps(
            {
                "format": FORMAT,
                "task": "classify",
                "kind": "zero_shot",
                "class_names": ["a", "b"],
                "class_descriptions": {"a": "a"},
                "embedder": "",
            }
        ).encode(),
    ],
    ids=["text", "binary", "list", "format", "missing-keys", "coef-shape", "coef-text", "no-description"],
)
def test_describe_rejects_other_files_naming_them(tmp_path: Path, content: bytes) -> None:
    weights = tmp_path / "weights.json"
    weights.write_bytes(content)
    with pytest.raises(ValueError, match=str(weights)):
        TextClassifier().describe(weights)


def test_a_model_of_another_embedder_is_refused(tmp_path: Path) -> None:
    weights = zero_shot_weights(NAMES, tmp_path / "model.json", embedder="/models/another")
    with pytest.raises(ValueError, match=f"{weights}: built on /models/another embeddings"):
        list(TextClassifier().predict(weights, [tmp_path / "model.json"]))


# --------------------------------------------------------------------------- pure functions


def test_evaluation_figures_by_hand() -> None:
    # true a a b b b, predicted a b b b c: c is never true, so it has no per-class row.
    figures = evaluation_figures([0, 0, 1, 1, 1], [0, 1, 1, 1, 2], ("a", "b", "c"))
    assert figures.map50 == figures.map50_95 == pytest.approx(0.6)
    rows = {row.class_name: row for row in figures.per_class}
    assert list(rows) == ["a", "b"]
    assert (rows["a"].instances, rows["a"].precision, rows["a"].recall) == (2, 1.0, 0.5)
    assert (rows["b"].instances, rows["b"].precision, rows["b"].recall) == pytest.approx((3, 2 / 3, 2 / 3))
    assert rows["b"].map50 == rows["b"].map50_95 == rows["b"].recall
    assert figures.confusion.labels == ("a", "b", "c", "background")
    # [predicted][true]
    assert figures.confusion.counts == ((1, 0, 0, 0), (1, 2, 0, 0), (0, 1, 0, 0), (0, 0, 0, 0))
    assert figures.confusion.conf == 0.0


def test_a_binary_fit_gives_scikit_learns_probabilities() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(20, 5))
    class_ids = (embeddings[:, 0] > 0).astype(int)
    descriptions = rng.normal(size=(2, 5))
    coef, intercept = fit_logistic_regression(embeddings, class_ids, descriptions, c=2.0)
    model = TextModel(("no", "yes"), ("no", "yes"), "e", LOGISTIC_REGRESSION, coef, intercept)
    reference = LogisticRegression(C=2.0).fit(np.concatenate([embeddings, descriptions]), [*class_ids, 0, 1])
    np.testing.assert_allclose(class_probabilities(model, embeddings), reference.predict_proba(embeddings), atol=1e-5)
    one = fit_logistic_regression(embeddings, [0] * 20, descriptions[:1])
    assert class_probabilities(TextModel(("only",), ("only",), "e", LOGISTIC_REGRESSION, *one), embeddings).min() == 1.0


# --------------------------------------------------------------------------- zero-shot, training


def test_zero_shot_predicts_the_described_topics(embedder: object, dataset: Path, zero_shot: Path) -> None:
    items = _items(dataset, "train") + _items(dataset, "val")
    expected = [NAMES.index(name) for name in NAMES for _ in range(N_TRAIN)] + [
        NAMES.index(name) for name in NAMES for _ in range(len(TEXTS[name]) - N_TRAIN)
    ]
    records = list(TextClassifier().predict(zero_shot, items))
    accuracy = np.mean([int(record.class_ids[0]) == truth for record, truth in zip(records, expected)])
    assert accuracy >= 0.8  # chance is 1/3; measured 1.0
    assert np.mean([float(record.confidences[0]) for record in records]) > 0.6  # not near-uniform


def test_training_from_zero_shot_classifies_the_val_split(trained: Path, dataset: Path, tmp_path: Path) -> None:
    evaluation = TextClassifier().evaluate(trained, dataset, tmp_path / "eval")
    assert evaluation.map50 == evaluation.map50_95 >= 8 / 9  # measured 1.0
    assert [row.class_name for row in evaluation.per_class] == list(NAMES)
    assert [row.instances for row in evaluation.per_class] == [3, 3, 3]
    assert (tmp_path / "eval").is_dir()
    weights = json.loads(trained.read_text())
    assert weights["kind"] == LOGISTIC_REGRESSION and weights["class_descriptions"] == DESCRIPTIONS
    assert np.asarray(weights["coef"]).shape == (3, 384)


def test_the_same_training_gives_the_same_bytes(trained: Path, dataset: Path, zero_shot: Path, tmp_path: Path) -> None:
    again = TextClassifier().train(dataset, tmp_path / "again", base_weights=zero_shot, mosaic=0.0, lr0=0.1)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(trained.read_bytes()).hexdigest()
    other = TextClassifier(c=1.0).train(dataset, tmp_path / "other", base_weights=zero_shot)
    assert other.read_bytes() != trained.read_bytes()


def test_every_class_has_a_probability_before_it_has_a_label(embedder: object, tmp_path: Path, zero_shot: Path) -> None:
    # Only sport and business are labelled: technology is known through its description alone.
    # (One example among 16 is too few for it to win, here about 0.07 on technology texts.)
    rows = [row for row in _rows(0, N_TRAIN) if row[1] != NAMES.index("technology")]
    data = write_dataset(tmp_path / "data", {"train": rows, "val": []})
    weights = TextClassifier().train(data, tmp_path / "run", base_weights=zero_shot)
    item = tmp_path / "item.txt"
    item.write_text("The new tablet runs the latest version of the software.")
    (record,) = TextClassifier().predict(weights, [item])
    assert TextClassifier().describe(weights) == ("classify", NAMES)
    assert record.class_probs.shape == (1, 3)
    assert record.class_probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert record.class_probs.min() > 0.0


def test_a_training_set_without_labels_is_refused(tmp_path: Path) -> None:
    data = write_dataset(tmp_path, {"train": [("A text nobody labelled.", None)], "val": []})
    with pytest.raises(ValueError, match=f"{data}: no labelled text"):
        TextClassifier().train(data, tmp_path / "run")


def test_a_label_file_of_several_classes_is_refused(tmp_path: Path) -> None:
    data = write_dataset(tmp_path, {"train": [("Shares fell as the team lost.", 1)], "val": []})
    label = tmp_path / "labels" / "train" / "000.txt"
    label.write_text("1 0.5 0.5 1 1\n2 0.5 0.5 1 1\n")
    with pytest.raises(ValueError, match=f"{label}: a text has one class"):
        TextClassifier().train(data, tmp_path / "run")


# --------------------------------------------------------------------------- predict, cache, evaluate


def test_predict_streams_one_whole_item_region_per_text(
    trained: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labeling_dag.resources.text_classifier as module

    chunks: list[int] = []
    embed = module.embed_texts
    monkeypatch.setattr(module, "embed_texts", lambda texts, **kw: chunks.append(len(texts)) or embed(texts, **kw))
    items = _items(dataset, "train")[:10]
    records = TextClassifier(batch=4).predict(trained, items)
    assert inspect.isgenerator(records)
    first = next(records)
    assert chunks == [4]  # one batch embedded, not the whole list
    records = [first, *records]
    assert chunks == [4, 4, 2]
    assert [record.path for record in records] == [str(item) for item in items]
    for record, item in zip(records, items):
        assert (record.width, record.height) == (len(item.read_text()), 1)
        np.testing.assert_array_equal(record.boxes_xywhn, [[0.5, 0.5, 1.0, 1.0]])
        assert record.class_probs.shape == (1, len(NAMES)) and record.class_probs.dtype == np.float32
        assert record.class_probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert record.class_ids.tolist() == [int(record.class_probs[0].argmax())]
        assert record.confidences[0] == record.class_probs[0].max()
        assert record.embedding.shape == (384,) and record.embedding.dtype == np.float32
        assert np.linalg.norm(record.embedding) == pytest.approx(1.0, abs=1e-5)


def test_the_embedding_cache_spares_the_model(
    zero_shot: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items(dataset, "val")
    classifier = TextClassifier(embedding_cache=str(tmp_path / "cache"))
    first = list(classifier.predict(zero_shot, items))
    # One file per item text and per class description.
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(items) + len(NAMES)

    def no_model(embedder: str) -> None:
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(text_embeddings, "load_embedder", no_model)
    second = list(classifier.predict(zero_shot, items))
    for before, after in zip(first, second):
        np.testing.assert_array_equal(before.class_probs, after.class_probs)
        np.testing.assert_array_equal(before.embedding, after.embedding)
    # An entry cut short (a crash before it reached the disk) is embedded again.
    next((tmp_path / "cache").rglob("*.npy")).write_bytes(b"")
    with pytest.raises(AssertionError, match="the model was loaded"):
        list(classifier.predict(zero_shot, items))


def test_evaluate_agrees_with_a_hand_count(trained: Path, tmp_path: Path) -> None:
    # The val split: a tech text labelled business (a label error the model should not follow),
    # a sport text without a label (left out) and two of each class otherwise.
    val = [
        (TEXTS["technology"][8], NAMES.index("business")),
        (TEXTS["technology"][9], NAMES.index("technology")),
        (TEXTS["technology"][10], NAMES.index("technology")),
        (TEXTS["sport"][8], None),
        (TEXTS["sport"][9], NAMES.index("sport")),
        (TEXTS["sport"][10], NAMES.index("sport")),
        (TEXTS["business"][9], NAMES.index("business")),
        (TEXTS["business"][10], NAMES.index("business")),
    ]
    data = write_dataset(tmp_path / "data", {"train": [], "val": val})
    (tmp_path / "data" / "labels" / "val" / "007.txt").unlink()  # a missing label file: left out too
    labelled = [(item, class_id) for item, (_, class_id) in zip(_items(data, "val"), val)][:-1]
    labelled = [(item, class_id) for item, class_id in labelled if class_id is not None]
    records = TextClassifier().predict(trained, [item for item, _ in labelled])
    pairs = [(class_id, int(record.class_ids[0])) for (_, class_id), record in zip(labelled, records)]

    evaluation = TextClassifier().evaluate(trained, data, tmp_path / "eval")

    assert len(pairs) == 6
    assert evaluation.map50 == pytest.approx(sum(t == p for t, p in pairs) / len(pairs))
    counts = [[sum((p, t) == (predicted, true) for t, p in pairs) for true in range(3)] for predicted in range(3)]
    assert [list(row[:3]) for row in evaluation.confusion.counts[:3]] == counts
    assert all(row[3] == 0 for row in evaluation.confusion.counts) and set(evaluation.confusion.counts[3]) == {0}
    for row in evaluation.per_class:
        k = NAMES.index(row.class_name)
        true_k = sum(t == k for t, _ in pairs)
        hits = sum(t == p == k for t, p in pairs)
        predicted_k = sum(p == k for _, p in pairs)
        assert row.instances == true_k
        assert row.recall == pytest.approx(hits / true_k) == row.map50
        assert row.precision == pytest.approx(hits / predicted_k if predicted_k else 0.0)
