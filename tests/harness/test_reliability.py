"""Nothing reported that did not happen: a damaged finished run is refused, not retrained; data
out of the action space is clipped by one stated rule or refused; environment variables and
paths are checked before any work; reports and `harness.status` stay whole. Through the real
front door (`python -m harness.run`, in this process) and real files; tiny protocols."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.harness.test_bad_input import TINY, files_under, front_door

ROOT = Path(__file__).resolve().parents[2]


def python_m(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or ROOT, timeout=600)


# -- finished results -------------------------------------------------------------------------
def test_truncated_summary_of_a_finished_run_is_refused_then_rebuilt(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = [*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}"]
    code, out, err = front_door(args, capsys)
    assert code == 0, err
    (d,) = runs.glob("smoke/*/td3bc/seed0")
    original = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text((d / "summary.json").read_text()[:60])  # a copy cut short
    before = files_under(runs)
    code, out, err = front_door(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{d}/summary.json is unreadable (JSONDecodeError)" in err
    assert f"python -m harness.store rebuild {d}" in err and f"mv {d} {d}.damaged" in err
    assert files_under(runs) == before  # nothing retrained, no curve overwritten
    proc = python_m("harness.store", "rebuild", str(d))
    assert proc.returncode == 0, proc.stderr
    rebuilt = json.loads((d / "summary.json").read_text())
    for key in ("status", "job_id", "offline_score", "final_score", "early_min_score", "seed"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["rebuilt"] is True
    code, out, err = front_door(args, capsys)
    assert code == 0 and "1/1 done" in out, err
