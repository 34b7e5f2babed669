"""What SLURM's queue and this harness's submission ledger say about submitted jobs (light:
`harness.status` reads them without importing the training code)."""
from __future__ import annotations

import getpass
import json
import subprocess
from pathlib import Path


def read_ledger(suite_dir: Path) -> dict[str, str]:
    """<suite>/.submitit/submitted.json: job id -> SLURM id of its latest submission (`30_0`)."""
    try:
        return json.loads((Path(suite_dir) / ".submitit" / "submitted.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class QueueUnavailable(RuntimeError):
    """squeue could not be asked (controller down or busy, no SLURM tools here)."""


def queue_states(ids: list[str] | None = None) -> dict[str, str]:
    """{SLURM job id: state (PENDING, RUNNING, ...)} of those of these ids (None: of all this
    user's jobs) still in the queue, as squeue names them (`30_0` for an array's task 0).
    Raises QueueUnavailable when squeue cannot answer: the queue is never guessed."""
    if ids is not None and not ids:
        return {}
    cmd = ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"]  # not -j: it fails on purged ids
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueueUnavailable(f"squeue failed: {exc}") from None
    if out.returncode != 0:
        raise QueueUnavailable(f"squeue failed: {(out.stderr or out.stdout).strip()[:300]}")
    states = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
    return states if ids is None else {i: states[i] for i in ids if i in states}
