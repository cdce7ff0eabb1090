"""The Detector resource, model_info, the model registry and the offline ultralytics setup.

Real ultralytics inference on the shared ``tiny_model`` fixture and on a classifier built
from ultralytics' YAML config (nothing is downloaded). The mix-up checks (class vectors
from the wrong anchor, records of the wrong image) can only fail on a model whose outputs
differ from anchor to anchor and image to image; ``test_tiny_model_outputs_are_informative``
guards that premise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TEST_IMGSZ
from labeling_dag.resources.detector import Detector, model_info
from PIL import Image

from labeling_dag.model_registry import ModelIntegrityError, ModelRegistry, file_sha256
from labeling_dag.records import ImagePrediction

CLASS_NAMES = ("circle", "square", "triangle")
WHOLE_IMAGE_BOX = [0.5, 0.5, 1.0, 1.0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """10 generated 96 px images (not the seed set), sorted by name."""
    from labeling_dag.simulation.sample_data import generate_dataset

    root = tmp_path_factory.mktemp("detector_images")
    generate_dataset(root, images=10, seed=23, imgsz=TEST_IMGSZ)
    # The generator always puts at least one image in val: take both splits.
    files = sorted(root.glob("images/*/*.jpg"), key=lambda path: path.name)
    assert len(files) == 10
    return files


@pytest.fixture(scope="module")
def cls_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 3-class YOLOv8n-cls built from ultralytics' YAML config and saved."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    folder = tmp_path_factory.mktemp("cls")
    config = yaml_model_load("yolov8n-cls.yaml")
    config["nc"] = len(CLASS_NAMES)
    # The file name keeps "yolov8n-cls" so that ultralytics reads the scale (n) from it.
    config_file = folder / "yolov8n-cls.yaml"
    config_file.write_text(yaml.safe_dump(config))
    model = YOLO(str(config_file))
    model.model.names = dict(enumerate(CLASS_NAMES))
    out = folder / "cls.pt"
    model.save(str(out))
    return out


# --------------------------------------------------------------------------- helpers


def _assert_same_records(actual: list[ImagePrediction], expected: list[ImagePrediction]) -> None:
    assert [r.path for r in actual] == [r.path for r in expected]
    for a, e in zip(actual, expected):
        assert (a.width, a.height) == (e.width, e.height), a.path
        assert a.boxes_xywhn.shape == e.boxes_xywhn.shape, a.path
        np.testing.assert_allclose(a.boxes_xywhn, e.boxes_xywhn, atol=1e-4, err_msg=a.path)
        np.testing.assert_array_equal(a.class_ids, e.class_ids, err_msg=a.path)
        np.testing.assert_allclose(a.confidences, e.confidences, atol=1e-4, err_msg=a.path)
        np.testing.assert_allclose(a.class_probs, e.class_probs, atol=1e-4, err_msg=a.path)
        np.testing.assert_allclose(a.embedding, e.embedding, rtol=1e-4, atol=1e-6, err_msg=a.path)


def _write_non_square(source: Path, target: Path) -> Path:
    """A 128 x 96 (w x h) copy of ``source``: width and height must not be swapped."""
    Image.open(source).convert("RGB").resize((128, 96)).save(target)
    return target


# --------------------------------------------------------------------------- detection


def test_detect_records_shapes_and_per_box_class_vectors(tiny_model: Path, images: list[Path], tmp_path: Path) -> None:
    """One well-formed record per input image; each box's class vector is its own anchor's.

    ``class_probs`` rows are gathered from the raw head output by the anchor indices NMS
    kept. The box's confidence and class come from the same anchor's scores, so the row's
    max must equal the confidence exactly (same float32 values; a loose tolerance would
    accept rows of overlapping neighbour anchors, whose scores can differ by < 1e-4) and its
    argmax must be the class id. Also pins: paths, width/height (a non-square
    image), normalised boxes, scores in [0, 1], and a finite 1-D embedding of one length
    that differs between images.
    """
    inputs = [*images[:5], _write_non_square(images[5], tmp_path / "wide.png")]
    records = list(Detector(imgsz=TEST_IMGSZ, conf=0.001).predict(tiny_model, inputs))

    assert len(records) == len(inputs)
    assert [r.path for r in records] == [str(p) for p in inputs]
    boxes_seen = 0
    for record in records:
        assert isinstance(record, ImagePrediction)
        with Image.open(record.path) as image:
            assert (record.width, record.height) == image.size
        n = len(record.class_ids)
        boxes_seen += n
        assert record.boxes_xywhn.shape == (n, 4)
        assert record.class_ids.shape == (n,)
        assert record.confidences.shape == (n,)
        assert record.class_probs.shape == (n, len(CLASS_NAMES))
        assert np.all((record.boxes_xywhn >= 0) & (record.boxes_xywhn <= 1))
        assert np.all((record.class_probs >= 0) & (record.class_probs <= 1))
        assert np.all(record.confidences >= 0.001)
        if n:
            np.testing.assert_array_equal(record.class_probs.argmax(axis=1), record.class_ids)
            np.testing.assert_allclose(record.class_probs.max(axis=1), record.confidences, rtol=1e-6, atol=0)
        assert record.embedding.ndim == 1
        assert np.all(np.isfinite(record.embedding))
    assert boxes_seen > 0, "conf=0.001 should keep some boxes; otherwise the class-vector checks ran on nothing"

    lengths = {r.embedding.shape[0] for r in records}
    assert len(lengths) == 1 and lengths.pop() > 0
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            assert not np.array_equal(a.embedding, b.embedding), (a.path, b.path)


def test_tiny_model_outputs_are_informative(tiny_model: Path, images: list[Path]) -> None:
    """Guard for the fixture: tiny_model's outputs differ between anchors and between images.

    A barely trained model (BatchNorm statistics still at their initial values) gives
    every image the same boxes and embeddings equal to ~1e-6; on such a model the mix-up
    checks in this file would pass whatever the code did.
    """
    records = list(Detector(imgsz=TEST_IMGSZ, conf=0.001).predict(tiny_model, images))
    probs = np.concatenate([r.class_probs for r in records])
    assert len(probs) >= 20
    assert np.ptp(probs.max(axis=1)) > 0.01
    assert len({len(r.class_ids) for r in records}) > 1
    embeddings = np.stack([r.embedding for r in records])
    gaps = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)[np.triu_indices(len(records), 1)]
    assert gaps.min() > 1e-2 * np.linalg.norm(embeddings, axis=1).mean()


def test_detect_records_follow_input_order(tiny_model: Path, images: list[Path]) -> None:
    """Records come back in the order of ``images``, not sorted, each with its own image's content.

    ``assets/prelabels.py`` zips the records with its image ids by position, so any
    reordering attaches predictions to the wrong images. The content of each record is
    compared with a batch-of-one prediction of the image its path names.
    """
    inputs = [images[i] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)]
    records = list(Detector(imgsz=TEST_IMGSZ, conf=0.01, batch=16).predict(tiny_model, inputs))
    assert [r.path for r in records] == [str(p) for p in inputs]

    alone = list(Detector(imgsz=TEST_IMGSZ, conf=0.01, batch=1).predict(tiny_model, inputs))
    _assert_same_records(records, alone)


def test_batches_do_not_mix_images(tiny_model: Path, images: list[Path]) -> None:
    """Streaming 10 images in chunks of 4 gives the records of one chunk of 16 and of chunks of 1.

    With chunks of one image nothing can be mixed, so equality with them shows that the
    chunking (and the hook-collected embeddings, which are per batch) keeps every box,
    class vector and embedding with its own image. Inputs are sorted so that this test
    does not depend on the ordering pinned above.
    """
    by_4 = list(Detector(imgsz=TEST_IMGSZ, conf=0.01, batch=4).predict(tiny_model, images))
    by_16 = list(Detector(imgsz=TEST_IMGSZ, conf=0.01, batch=16).predict(tiny_model, images))
    by_1 = list(Detector(imgsz=TEST_IMGSZ, conf=0.01, batch=1).predict(tiny_model, images))
    assert [r.path for r in by_4] == [str(p) for p in images]
    _assert_same_records(by_4, by_16)
    _assert_same_records(by_4, by_1)


def test_image_without_detections_gives_empty_record(tiny_model: Path, images: list[Path]) -> None:
    """An image where nothing passes ``conf`` yields an empty (0, 4) / (0, 3) record, not an error."""
    records = list(Detector(imgsz=TEST_IMGSZ, conf=0.999).predict(tiny_model, images[:2]))
    assert len(records) == 2
    for record in records:
        assert record.boxes_xywhn.shape == (0, 4)
        assert record.class_ids.shape == (0,)
        assert record.confidences.shape == (0,)
        assert record.class_probs.shape == (0, len(CLASS_NAMES))
        assert record.embedding.ndim == 1 and record.embedding.size > 0
        assert np.all(np.isfinite(record.embedding))


def test_no_images_yields_nothing(tmp_path: Path) -> None:
    """An empty image list yields no records without loading the model (the weights need not exist)."""
    assert list(Detector(imgsz=TEST_IMGSZ).predict(tmp_path / "missing.pt", [])) == []


def test_unsupported_task_is_refused(images: list[Path], tmp_path: Path) -> None:
    """A model of another task (here segmentation, built from YAML) is refused with a ValueError naming it."""
    from ultralytics import YOLO

    weights = tmp_path / "seg.pt"
    YOLO("yolov8n-seg.yaml").save(str(weights))
    with pytest.raises(ValueError, match="unsupported ultralytics task 'segment'"):
        list(Detector(imgsz=TEST_IMGSZ).predict(weights, images[:1]))


# --------------------------------------------------------------------------- classification


def test_classification_model_yields_one_whole_image_box(cls_model: Path, images: list[Path]) -> None:
    """A classify model gives each image one (0.5, 0.5, 1, 1) box whose class vector is the softmax.

    class_probs (1, n_classes) sums to 1, class_id is its argmax and confidence its max;
    the embedding is the classifier's pooled feature, finite, of one length for every image.
    """
    records = list(Detector(imgsz=TEST_IMGSZ, batch=2).predict(cls_model, images[:3]))
    assert [r.path for r in records] == [str(p) for p in images[:3]]
    for record in records:
        assert (record.width, record.height) == (TEST_IMGSZ, TEST_IMGSZ)
        np.testing.assert_allclose(record.boxes_xywhn, [WHOLE_IMAGE_BOX])
        assert record.class_probs.shape == (1, len(CLASS_NAMES))
        assert np.all((record.class_probs >= 0) & (record.class_probs <= 1))
        np.testing.assert_allclose(record.class_probs.sum(), 1.0, atol=1e-5)
        assert record.class_ids.shape == (1,) and record.confidences.shape == (1,)
        assert record.class_ids[0] == record.class_probs[0].argmax()
        assert record.confidences[0] == pytest.approx(record.class_probs[0].max(), abs=1e-7)
        assert record.embedding.ndim == 1 and np.all(np.isfinite(record.embedding))
    assert len({r.embedding.shape for r in records}) == 1


def test_model_info_of_classification_model(cls_model: Path) -> None:
    """model_info reads task "classify" and the class names stored in the checkpoint."""
    assert model_info(cls_model) == ("classify", CLASS_NAMES)


def test_model_info_of_detection_model(tiny_model: Path) -> None:
    """model_info reads task "detect" and the seed dataset's class names, in class-id order."""
    assert model_info(tiny_model) == ("detect", CLASS_NAMES)


# --------------------------------------------------------------------------- registry


def test_registry_register_verify_and_tamper(tiny_model: Path, cls_model: Path, tmp_path: Path) -> None:
    """Weights are stored under their sha256, handed out only while the bytes still match.

    The entry's version is the file's sha256 and the registry copy is byte-identical;
    registering the same bytes again is idempotent (one entry); the latest registration
    is current; appending a byte to the stored copy, or deleting it, makes verified_path
    raise ModelIntegrityError naming the path.
    """
    registry = ModelRegistry(tmp_path)
    assert registry.current() is None

    entry = registry.register(tiny_model, task="detect", class_names=CLASS_NAMES, source="cold_start")
    assert entry.model_version == file_sha256(tiny_model)
    stored = registry.verified_path(entry)
    assert stored == tmp_path / entry.path
    assert stored != tiny_model and stored.read_bytes() == tiny_model.read_bytes()
    assert registry.current() == entry

    again = registry.register(tiny_model, task="detect", class_names=CLASS_NAMES, source="retrained")
    assert again == entry  # the existing entry, not a new one with the new source
    assert registry.entries() == [entry]

    other = registry.register(
        cls_model, task="classify", class_names=CLASS_NAMES, source="retrained", parent=entry.model_version
    )
    assert registry.current() == other
    assert [e.model_version for e in registry.entries()] == [entry.model_version, other.model_version]
    assert registry.get(other.model_version).parent == entry.model_version
    registry.register(tiny_model, task="detect", class_names=CLASS_NAMES, source="cold_start", make_current=False)
    assert registry.current() == other

    with open(stored, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=re.escape(str(stored))):
        registry.verified_path(entry)
    assert registry.verified_path(other) == tmp_path / other.path

    stored.unlink()
    with pytest.raises(ModelIntegrityError, match=re.escape(str(stored))):
        registry.verified_path(entry)


# --------------------------------------------------------------------------- offline


_INTEGRATIONS = ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def test_predict_keeps_ultralytics_offline(
    tiny_model: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After predicting, ultralytics is offline, syncs nothing and uses the project's config folder.

    Its settings file is $YOLO_CONFIG_DIR/Ultralytics/settings.json with sync and every
    tracker integration False, the fonts it would otherwise download are in that folder,
    and YOLO_OFFLINE is "1" (re-set by predict even when the environment lost it).
    """
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    records = list(Detector(imgsz=TEST_IMGSZ).predict(tiny_model, images[:1]))
    assert len(records) == 1
    assert os.environ["YOLO_OFFLINE"] == "1"

    from ultralytics.utils import SETTINGS_FILE

    folder = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    assert Path(SETTINGS_FILE) == folder / "settings.json"
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["sync"] is False
    assert {key: settings[key] for key in _INTEGRATIONS if key in settings} == {
        key: False for key in _INTEGRATIONS if key in settings
    }
    assert (folder / "Arial.ttf").is_file()
    assert (folder / "Arial.Unicode.ttf").is_file()


_FRESH_PROCESS = """
import os, sys
from pathlib import Path
from labeling_dag.resources.detector import Detector
records = list(Detector(imgsz=int(sys.argv[3])).predict(Path(sys.argv[1]), [Path(sys.argv[2])]))
assert len(records) == 1
from ultralytics.utils import SETTINGS_FILE
print(os.environ["YOLO_OFFLINE"], os.environ["YOLO_CONFIG_DIR"], SETTINGS_FILE, sep="\\n")
"""


def test_fresh_process_sets_up_its_own_offline_config(tiny_model: Path, images: list[Path], tmp_path: Path) -> None:
    """A process with no ultralytics config yet gets one in $LABELING_DAG_CONFIG_DIR, not in HOME.

    Predicting first thing (YOLO_CONFIG_DIR and YOLO_OFFLINE unset) creates
    <config>/Ultralytics/settings.json with sync False and installs Arial.ttf and
    Arial.Unicode.ttf there; nothing is written under HOME/.config/Ultralytics.
    """
    home, config = tmp_path / "home", tmp_path / "config"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"YOLO_CONFIG_DIR", "YOLO_OFFLINE", "XDG_CONFIG_HOME"}}
    env |= {"HOME": str(home), "LABELING_DAG_CONFIG_DIR": str(config), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tiny_model), str(images[0]), str(TEST_IMGSZ)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    offline, config_dir, settings_file = done.stdout.strip().splitlines()[-3:]
    folder = config / "Ultralytics"
    assert offline == "1"
    assert Path(config_dir) == config
    assert Path(settings_file) == folder / "settings.json"
    assert json.loads((folder / "settings.json").read_text())["sync"] is False
    assert (folder / "Arial.ttf").is_file() and (folder / "Arial.Unicode.ttf").is_file()
    assert not (home / ".config" / "Ultralytics").exists()
