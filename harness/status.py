"""Where a suite stands: `python -m harness.status RUNS_DIR [suite=NAME] [other overrides]`.

One line per job: done / running / interrupted / failed / missing, with progress and, for
failures, the last lines of the error. The expected jobs come from the overrides when given
(expanded exactly as `harness.run` would), else from the jobs.json manifests the front door
writes under RUNS_DIR/<suite>/. Exit code: 0 when every job is done, 1 otherwise.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from harness.store import read_summary


def expected_jobs(runs_dir: Path, overrides: list[str]) -> list[dict]:
    """[{run_dir, job_id, algorithm, task, seed}] for the overrides, or from the manifests."""
    if overrides:
        from hydra import compose, initialize_config_dir

        from harness.jobs import CONF_DIR, expand, run_dir

        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, f"runs_dir={runs_dir}"])
        return [{"run_dir": str(run_dir(runs_dir, j).relative_to(runs_dir)), "job_id": j["job_id"],
                 "algorithm": j["algorithm"]["name"], "task": j["task"]["name"], "seed": j["seed"]}
                for j in expand(cfg)]
    entries = []
    for manifest in sorted(runs_dir.glob("*/jobs.json")):
        entries += json.loads(manifest.read_text())["jobs"]
    known = {e["run_dir"] for e in entries}
    for summary in sorted(runs_dir.glob("*/*/*/seed*/summary.json")):  # runs on disk, not in a manifest
        rel = str(summary.parent.relative_to(runs_dir))
        if rel not in known:
            s = read_summary(summary.parent) or {}
            entries.append({"run_dir": rel, "job_id": s.get("job_id"), "algorithm": s.get("algorithm"),
                            "task": s.get("task"), "seed": s.get("seed")})
    return entries


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def job_state(runs_dir: Path, entry: dict) -> tuple[str, str]:
    """(state, detail) of one expected job."""
    d = runs_dir / entry["run_dir"]
    s = read_summary(d)
    if s is None:
        return "missing", ""
    if s.get("job_id") != entry["job_id"]:
        return "stale", f"holds job {s.get('job_id')} of another config"
    status = s.get("status")
    if status == "done":
        return "done", f"final {s.get('final_score')}  resumes {s.get('resumes', 0)}  {s.get('wall_time_s')} s"
    if status == "failed":
        lines = (s.get("traceback") or s.get("error") or "").strip().splitlines()[-4:]
        return "failed", "\n      ".join(lines)
    ckpt = Path(s["checkpoint"]) if s.get("checkpoint") else d / "checkpoint" / "state.pt"  # a group's: its own dir
    age = time.time() - max(p.stat().st_mtime for p in [d / "summary.json", *([ckpt] if ckpt.exists() else [])])
    where = f"checkpoint {age:.0f} s old" if ckpt.exists() else "no checkpoint yet"
    if s.get("host") == socket.gethostname() and s.get("pid") and not s.get("slurm_job_id") and not _alive(s["pid"]):
        return "interrupted", f"process {s['pid']} is gone; {where}; rerun the same command to resume"
    job = f"  SLURM job {s['slurm_job_id']}" if s.get("slurm_job_id") else ""
    return "running", f"last write {age:.0f} s ago; {where}{job}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs_dir, overrides = Path(argv[0]), argv[1:]
    if not runs_dir.is_dir():
        print(f"error: no runs directory '{runs_dir}'", file=sys.stderr)
        return 2
    entries = expected_jobs(runs_dir, overrides)
    counts: dict[str, int] = {}
    print(f"{'state':<11} {'algorithm':<10} {'task':<28} {'seed':>4}  {'job id':<12}  detail")
    for e in entries:
        state, detail = job_state(runs_dir, e)
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:<11} {e['algorithm'] or '?':<10} {e['task'] or '?':<28} {e['seed'] if e['seed'] is not None else '?':>4}"
              f"  {e['job_id'] or '?':<12}  {detail}")
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no jobs found")
    return 0 if entries and counts.get("done", 0) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
