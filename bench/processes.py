"""Stopping a server or worker that was started as the leader of its own process group."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(
    process: subprocess.Popen, *, first: signal.Signals = signal.SIGTERM, grace_s: float = 60
) -> None:
    """Send ``first`` to the whole group (its forks, DVC, web workers too), so that it shuts down
    cleanly; SIGKILL the group if it is still there after ``grace_s``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, first)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
