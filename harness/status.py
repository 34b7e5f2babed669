"""Where a suite stands: `python -m harness.status RUNS_DIR [suite=NAME] [other overrides]`.

One line per job: done / running / queued / interrupted / failed / damaged / missing, with progress and,
for failures, the last lines of the error. Jobs sent to SLURM are looked up in the queue
(squeue) by the id squeue shows (`30_0`: task 0 of array 30). The expected jobs come from the
overrides when given (expanded exactly as `harness.run` would), else from the jobs.json
manifests the front door writes under RUNS_DIR/<suite>/. Exit code: 0 when every job is done,
1 otherwise.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from harness.lock import owner_dead, read_owner
from harness.slurm import QueueUnavailable, queue_states, read_ledger
from harness.store import damaged_finished_run, read_summary


def expected_jobs(runs_dir: Path, overrides: list[str]) -> list[dict]:
    """[{run_dir, job_id, algorithm, task, seed}] for the overrides, or from the manifests."""
    if overrides:
        from hydra import compose, initialize_config_dir

        from harness.config import CONF_DIR, CommandLine, expand
        from harness.store import run_dir

        cli = CommandLine.parse([*overrides, f"runs_dir={runs_dir}"])
        overrides = cli.hydra_args()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        return [{"run_dir": str(run_dir(runs_dir, j).relative_to(runs_dir)), "job_id": j.job_id,
                 "algorithm": j.algorithm.name, "task": j.task.name, "seed": j.seed}
                for j in expand(cfg, cli)]
    entries = []
    for manifest in sorted(runs_dir.glob("*/jobs.json")):
        try:
            entries += [e for e in json.loads(manifest.read_text())["jobs"] if isinstance(e, dict) and "run_dir" in e]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged: the runs on disk still show
            print(f"note: {manifest} is unreadable ({type(exc).__name__}); listing the runs found on disk (the "
                  f"next launch rewrites it; or name the suite: python -m harness.status {runs_dir} suite=NAME)",
                  file=sys.stderr)
    known = {e["run_dir"] for e in entries}
    for summary in sorted(runs_dir.glob("*/*/*/seed*/summary.json")):  # runs on disk, not in a manifest
        rel = str(summary.parent.relative_to(runs_dir))
        if rel not in known:
            s = read_summary(summary.parent) or {}
            _, task, algorithm, seed = Path(rel).parts  # <suite>/<task>/<algorithm>/seed<N>: a damaged summary's too
            entries.append({"run_dir": rel, "job_id": s.get("job_id"), "algorithm": s.get("algorithm", algorithm),
                            "task": s.get("task", task), "seed": s.get("seed", seed.removeprefix("seed"))})
    return entries


def slurm_view(runs_dir: Path, entries: list[dict]) -> tuple[dict[str, str], dict[str, str], str | None]:
    """(ledger: job id -> SLURM id of its latest submission; queue: SLURM id -> state, empty
    when no job was ever sent to SLURM; why squeue could not be asked, or None). The queue is
    read before job_state reads the summaries: a job writes its done summary before it leaves
    the queue, so a job that finishes in between is seen done, never gone."""
    ledger: dict[str, str] = {}
    for suite in dict.fromkeys(e["run_dir"].split("/")[0] for e in entries):
        ledger.update(read_ledger(runs_dir / suite))
    on_slurm = ledger or any((read_summary(runs_dir / e["run_dir"]) or {}).get("slurm_job_id") for e in entries)
    if not on_slurm:
        return ledger, {}, None
    try:
        return ledger, queue_states(), None
    except QueueUnavailable as exc:
        return ledger, {}, str(exc)


def job_state(runs_dir: Path, entry: dict, ledger: dict[str, str] | None = None,
              queue: dict[str, str] | None = None, queue_error: str | None = None) -> tuple[str, str]:
    """(state, detail) of one expected job, from its summary and, for jobs sent to SLURM, the
    queue: done / running / queued / interrupted / failed / missing / stale / unknown."""
    ledger, queue = ledger or {}, queue or {}
    d = runs_dir / entry["run_dir"]
    s = read_summary(d)
    ids = list(dict.fromkeys(i for i in (ledger.get(entry["job_id"]), (s or {}).get("slurm_job_id")) if i))
    queued = next((i for i in ids if i in queue), None)
    on_queue = f"SLURM job {queued} {queue[queued]}" if queued else ""
    if s is not None and s.get("job_id") != entry["job_id"]:
        return "stale", f"holds job {s.get('job_id')} of another config"
    if queue_error and ids and (s is None or s.get("status") == "running"):
        return "unknown", f"SLURM job {ids[0]}; {queue_error}: cannot tell whether it still runs"
    if s is None:
        if problem := damaged_finished_run(d):  # finished, its summary cut short: never "missing" (retrained)
            return "damaged", problem
        if queued:
            return ("queued" if queue[queued] == "PENDING" else "running"), f"{on_queue}, not started yet"
        if ids:
            return "interrupted", f"SLURM job {ids[0]} left the queue before it started; rerun the same command to resubmit"
        return "missing", ""
    status = s.get("status")
    if status == "done":
        again = (f"; {on_queue} again (requeued): it returns done at once, nothing is redone" if queued else "")
        return "done", f"final {s.get('final_score')}  resumes {s.get('resumes', 0)}  {s.get('wall_time_s')} s{again}"
    if status == "failed":
        if queued:
            return ("queued" if queue[queued] == "PENDING" else "running"), f"{on_queue}, resubmitted after a failure"
        lines = (s.get("traceback") or s.get("error") or "").strip().splitlines()[-4:]
        return "failed", "\n      ".join(lines)
    ckpt = Path(s["checkpoint"]) if s.get("checkpoint") else d / "checkpoint" / "state.pt"  # a group's: its own dir
    age = time.time() - max(p.stat().st_mtime for p in [d / "summary.json", *([ckpt] if ckpt.exists() else [])])
    where = f"checkpoint {age:.0f} s old" if ckpt.exists() else "no checkpoint yet"
    if queued:
        if queue[queued] == "PENDING":
            again = "requeued" if queued == s.get("slurm_job_id") else "resubmitted"
            then = f"resumes from its checkpoint ({age:.0f} s old)" if ckpt.exists() else "starts over (no checkpoint yet)"
            return "queued", f"{on_queue} ({again}); {then}"
        return "running", f"last write {age:.0f} s ago; {where}; {on_queue}"
    if s.get("slurm_job_id"):
        return "interrupted", (f"SLURM job {s['slurm_job_id']} is no longer in the queue; {where}; "
                               f"rerun the same command to resume")
    owner = read_owner(d)  # a live run owns its folder (harness.lock): judged as a second launcher would
    if owner is None:
        return "interrupted", f"no process owns it; {where}; rerun the same command to resume"
    if why := owner_dead(d, owner):
        return "interrupted", f"{why}; {where}; rerun the same command to resume"
    return "running", f"{owner}; last write {age:.0f} s ago; {where}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs_dir, overrides = Path(argv[0]).expanduser(), argv[1:]  # '~/runs' quoted, or from a script
    if not runs_dir.is_dir():
        print(f"error: no runs directory '{runs_dir}'", file=sys.stderr)
        return 2
    from harness.schema import ConfigError
    from tasks import DatasetError

    try:
        if overrides:
            from harness.config import CommandLine

            CommandLine.parse(overrides).check()  # unknown names and options: one line, before Hydra's long ones
        entries = expected_jobs(runs_dir, overrides)
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra's own parse and composition errors
        print(f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
              file=sys.stderr)
        return 2
    ledger, queue, queue_error = slurm_view(runs_dir, entries)
    counts: dict[str, int] = {}
    print(f"{'state':<11} {'algorithm':<10} {'task':<28} {'seed':>4}  {'job id':<12}  detail")
    for e in entries:
        state, detail = job_state(runs_dir, e, ledger, queue, queue_error)
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:<11} {e['algorithm'] or '?':<10} {e['task'] or '?':<28} {e['seed'] if e['seed'] is not None else '?':>4}"
              f"  {e['job_id'] or '?':<12}  {detail}")
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no jobs found")
    return 0 if entries and counts.get("done", 0) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
