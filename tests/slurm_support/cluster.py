"""Start and stop the one-node SLURM cluster of ``scripts/slurm_cluster.sh`` from tests.

Usage in a test module::

    from .cluster import slurm_cluster   # or: ensure_cluster, stop_cluster

    @pytest.fixture(scope="module")
    def cluster():
        with slurm_cluster() as info:      # installs + starts (no-op if already up)
            yield info                     # stops at exit, if this call started it

The cluster needs root and Debian. Elsewhere ``ensure_cluster`` skips the calling test,
except under CI (``CI`` set to a true value) or with ``O2O_SLURM_REQUIRED=1``, where it
fails instead: CI must run these tests, not skip them.

Environment: ``O2O_SLURM_DIR`` (state dir, default /tmp/o2o-slurm; passed through to the
script), ``O2O_SLURM_KEEP=1`` (leave the cluster running after the tests, to rerun them
without the start-up cost).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "slurm_cluster.sh"
PARTITION = "debug"
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class ClusterInfo:
    state_dir: Path
    partition: str
    started_here: bool  # False when the cluster was already up before ensure_cluster()
    start_seconds: float  # wall time of `slurm_cluster.sh start` (install included)
    output: str  # what the script printed


def state_dir() -> Path:
    return Path(os.environ.get("O2O_SLURM_DIR", "/tmp/o2o-slurm"))


def unavailable_reason() -> Optional[str]:
    """Why the cluster cannot be started here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the SLURM test cluster needs root"
    if not Path("/etc/debian_version").exists():
        return "the SLURM test cluster needs Debian (apt-get)"
    if not SCRIPT.exists():
        return f"{SCRIPT} is missing"
    return None


def required() -> bool:
    """True where the SLURM tests must run (CI): unavailability is then an error."""
    return (
        os.environ.get("CI", "").strip().lower() in _TRUE
        or os.environ.get("O2O_SLURM_REQUIRED", "").strip().lower() in _TRUE
    )


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def is_running() -> bool:
    """Whether every daemon of the cluster runs (``slurm_cluster.sh status``)."""
    if unavailable_reason() is not None:
        return False
    return _run("status", timeout=60).returncode == 0


def ensure_cluster(timeout: float = 900) -> ClusterInfo:
    """Install (if needed) and start the cluster; return once its node is idle.

    Skips the calling test where the cluster cannot run (not root / not Debian), unless
    ``required()``; raises RuntimeError when the script fails.
    """
    reason = unavailable_reason()
    if reason is not None:
        if required():
            raise RuntimeError(f"SLURM tests are required here (CI) but cannot run: {reason}")
        import pytest

        pytest.skip(reason)
    was_running = is_running()
    t0 = time.monotonic()
    proc = _run("start", timeout=timeout)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{SCRIPT} start` failed with exit code {proc.returncode}:\n{proc.stdout}"
        )
    return ClusterInfo(
        state_dir=state_dir(),
        partition=PARTITION,
        started_here=not was_running,
        start_seconds=seconds,
        output=proc.stdout,
    )


def stop_cluster(purge: bool = False, timeout: float = 120) -> None:
    """Stop every daemon of the cluster (``purge``: also delete its state directory)."""
    if unavailable_reason() is not None:
        return
    proc = _run("stop", *(["--purge"] if purge else []), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"`{SCRIPT} stop` failed with exit code {proc.returncode}:\n{proc.stdout}")


@contextlib.contextmanager
def slurm_cluster() -> Iterator[ClusterInfo]:
    """ensure_cluster() on entry; stop_cluster() on exit if this call started it
    (and O2O_SLURM_KEEP is not set)."""
    info = ensure_cluster()
    try:
        yield info
    finally:
        keep = os.environ.get("O2O_SLURM_KEEP", "").strip().lower() in _TRUE
        if info.started_here and not keep:
            stop_cluster()
