"""A real Label Studio server for tests: installed once in its own virtualenv, started per module.

Label Studio pins Django, pydantic and friends at versions that clash with the project's,
so it lives in ``.tools/label-studio`` (like DVC in ``.tools/dvc``) and runs as a separate
process. The first install takes about a minute; later runs reuse it. An exclusive file
lock keeps two pytest workers from installing at the same time.

Usage in a test module::

    label_studio = pytest.fixture(scope="module")(label_studio_fixture())

Facts this relies on (Label Studio 1.23.2): ``label-studio start`` with ``--username``,
``--password`` and ``--user-token`` creates that user (with that legacy token) before it
listens, so the API is usable as soon as ``/health`` answers; the token authenticates only
when ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` was set when the organisation was created.
``label-studio --version`` is never called: it hangs on these machines.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.processes import stop_process_group

REPO = Path(__file__).resolve().parent.parent
LABEL_STUDIO_VERSION = "1.23.2"
VENV = REPO / ".tools" / "label-studio"
INSTALL_TIMEOUT_SECONDS = 900
READY_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 15.0


def ensure_installed(venv: Path = VENV, version: str = LABEL_STUDIO_VERSION) -> Path:
    """Return the ``label-studio`` executable in ``venv``, installing ``version`` there first if needed."""
    executable = venv / "bin" / "label-studio"
    if _installed(venv, version):
        return executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".label-studio-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another worker may have finished the install while this one waited for the lock.
        if _installed(venv, version):
            return executable
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv / "install.log"
        with open(log, "w") as out:
            result = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"label-studio=={version}"],
                check=False,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )
        if result.returncode != 0 or not _installed(venv, version):
            raise RuntimeError(f"installing label-studio=={version} into {venv} failed; see {log}")
    return executable


def _installed(venv: Path, version: str) -> bool:
    """True when ``venv`` holds a working Label Studio of ``version`` (importable, entry point present)."""
    python, executable = venv / "bin" / "python", venv / "bin" / "label-studio"
    if not python.exists() or not executable.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, label_studio; print(m.version('label-studio'))"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return probe.returncode == 0 and probe.stdout.strip() == version


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LabelStudioServer:
    """A running Label Studio process and how to reach it."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    document_root: Path
    log: Path
    process: subprocess.Popen[bytes]
    startup_seconds: float

    def stop(self) -> None:
        """Stop the server's whole process group: SIGINT first, SIGKILL if it lingers."""
        stop_process_group(self.process, first=signal.SIGINT, grace_s=STOP_GRACE_SECONDS)


def start_server(base_dir: Path, *, document_root: Path | None = None) -> LabelStudioServer:
    """Start Label Studio on a free port with a fresh database under ``base_dir`` and wait until it answers.

    ``document_root`` is where ``/data/local-files/?d=`` paths are resolved (default
    ``base_dir/files``). Raises ``RuntimeError`` with the log's tail if the server dies or is
    not ready within ``READY_TIMEOUT_SECONDS``.
    """
    executable = ensure_installed()
    data_dir, root = base_dir / "data", document_root or base_dir / "files"
    data_dir.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(20)
    username, password = "reviewer@example.com", secrets.token_hex(12)
    # A clean environment: Label Studio reads bare names like HOST, PORT or USERNAME too, and
    # it must not try to reach Sentry or PyPI from a machine without network.
    env = {
        "PATH": f"{executable.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(base_dir),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = base_dir / "label-studio.log"
    command = [
        str(executable), "start", "--no-browser",
        "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        f"--username={username}", f"--password={password}", f"--user-token={token}",
    ]  # fmt: skip
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=base_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabelStudioServer(
        url=f"http://127.0.0.1:{port}",
        token=token,
        username=username,
        password=password,
        data_dir=data_dir,
        document_root=root,
        log=log,
        process=process,
        startup_seconds=0.0,
    )
    try:
        _wait_until_ready(server, started)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


def _wait_until_ready(server: LabelStudioServer, started: float) -> None:
    while time.monotonic() - started < READY_TIMEOUT_SECONDS:
        if server.process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {server.process.returncode}:\n{_tail(server.log)}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Label Studio not ready after {READY_TIMEOUT_SECONDS:g} s:\n{_tail(server.log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def label_studio_fixture(
    document_root: Path | None = None,
) -> Callable[[pytest.TempPathFactory], Iterator[LabelStudioServer]]:
    """A fixture function yielding a running server, for ``pytest.fixture(scope=...)`` in a test module."""

    def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
        server = start_server(tmp_path_factory.mktemp("label-studio"), document_root=document_root)
        try:
            yield server
        finally:
            server.stop()

    return label_studio
