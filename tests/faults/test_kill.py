"""SIGKILL: the run process killed inside each of the 9 assets of the seed round, then re-run.

Runs ``bench/faults.py --quick`` (a reference loop and a killed loop with one seed, tiny data,
2 training epochs; ~2 min on 2 cores) and checks its two workdirs here, independently of the
bench's own report where it can. Training is deterministic and weights files hold no dates or
paths, so the killed loop must end exactly as the reference: every table, snapshot, trace and
model the same but for run ids and times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from labeling_dag.definitions import ASSETS as ASSET_DEFINITIONS

REPO = Path(__file__).resolve().parents[2]
ASSETS = {asset.key.to_user_string() for asset in ASSET_DEFINITIONS}
RUN_SPECIFIC = ["run_id", "pre_label_run_id", "created_at", "merged_at"]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The quick fault run: its root folder (reference/ and killed/ workdirs) and its report."""
    root = tmp_path_factory.mktemp("faults")
    out = root / "report.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faults.py"), "--quick", "--root", str(root), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.rstrip().splitlines()[-1].startswith("rows lost ")
    return root, json.loads(out.read_text())


@pytest.mark.slow
def test_a_kill_landed_inside_every_asset_and_every_file_parsed_after_each(faults) -> None:
    """Each asset slow enough to aim at was running when at least one SIGKILL hit, and after every kill all
    parquet and JSON files of the workdir parsed (no half-written file under a real name)."""
    _, report = faults
    landed = {step for kill in report["kills"] for step in kill["running"]}
    assert landed >= ASSETS, sorted(ASSETS - landed)
    assert len(report["kills"]) >= 9
    assert [kill["unreadable"] for kill in report["kills"] if kill["unreadable"]] == []


@pytest.mark.slow
def test_verified_tables_after_kills_equal_the_uninterrupted_run(faults) -> None:
    """Verified labels, verified images and merges of the killed loop equal the reference's,
    row for row, on every column but run ids and times."""
    root, _ = faults
    for table, key in (("labels", "label_id"), ("images", "image_id"), ("merges", "merge_id")):
        frames = [
            pd.read_parquet(root / which / "work" / "verified_labels" / f"{table}.parquet")
            .drop(columns=RUN_SPECIFIC, errors="ignore")
            .sort_values(key)
            .reset_index(drop=True)
            for which in ("reference", "killed")
        ]
        assert len(frames[0]) > 0
        pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=False, rtol=1e-9)


@pytest.mark.slow
def test_no_row_lost_or_duplicated_and_lineage_and_snapshots_hold(faults) -> None:
    """Every reviewed and gold box is in force exactly once; every label traces back to a raw file
    and a snapshot; every snapshot history entry has its pointer and cache object and ends at the
    folder's current pointer; every file, snapshot, trace and model equals the reference's."""
    root, report = faults
    labels = pd.read_parquet(root / "killed" / "work" / "verified_labels" / "labels.parquet")
    assert not labels["label_id"].duplicated().any()
    assert report["expected_rows"] == len(labels) > 0
    assert report["rows_lost"] == 0 and report["rows_duplicated"] == 0
    assert report["lineage_unresolved"] == [] and report["history_problems"] == []
    assert report["unreadable"] == []
    assert report["files_differing"] == [] and report["compared_files"] > 20
    assert report["snapshots_differing"] == [] and report["lineage_differing"] == []
    assert report["models_equal"] is True
    assert report["promoted_models"] == report["reference_promoted_models"]
