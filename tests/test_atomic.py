"""Atomic writes and links: a reader sees the old file or the new one, never half of one."""

import os
from pathlib import Path

import pytest

from labeling_dag import atomic


def test_link_file_gives_the_same_bytes_without_a_second_copy(tmp_path):
    source = tmp_path / "raw" / "a.png"
    atomic.write_bytes(source, b"picture")
    target = tmp_path / "cleaned" / "files" / "a.png"

    atomic.link_file(source, target)

    assert target.read_bytes() == b"picture"
    assert os.path.samefile(source, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]  # no temporary left


def test_link_file_replaces_an_existing_target_and_leaves_the_source_alone(tmp_path):
    source, target = tmp_path / "a.png", tmp_path / "b.png"
    atomic.write_bytes(source, b"new")
    atomic.write_bytes(target, b"old")

    atomic.link_file(source, target)

    assert target.read_bytes() == b"new" and source.read_bytes() == b"new"
    # Every writer replaces by rename: rewriting one name never changes the other's bytes.
    atomic.write_bytes(source, b"newer")
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second file system (tmpfs /dev/shm)")
def test_link_file_copies_across_file_systems(tmp_path):
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same file system as the test folder")
    source = Path("/dev/shm") / f"labeling-dag-test-{os.getpid()}.png"
    source.write_bytes(b"elsewhere")
    try:
        target = tmp_path / "a.png"
        atomic.link_file(source, target)
        assert target.read_bytes() == b"elsewhere"
        assert not os.path.samefile(source, target)
    finally:
        source.unlink()


def test_unsynced_copies_are_whole_files_under_their_names(tmp_path):
    """``sync=False`` skips only the flush: the rename still publishes a complete file."""
    sources = []
    for index in range(20):
        sources.append(tmp_path / "src" / f"{index}.bin")
        atomic.write_bytes(sources[-1], bytes([index]) * 1000)
    for source in sources:
        atomic.copy_file(source, tmp_path / "dst" / source.name, sync=False)
    atomic.sync_all()

    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == sorted(s.name for s in sources)
    assert all((tmp_path / "dst" / s.name).read_bytes() == s.read_bytes() for s in sources)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.json"
    atomic.write_json(target, {"rows": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target, sync=False) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed half-way")
    assert target.read_text().strip() == '{\n  "rows": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]
