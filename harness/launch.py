"""Launchers: run a list of jobs, skipping the finished ones, one process per group of jobs
(`harness.job.group_jobs`: the seeds trained together; a job alone otherwise). `local` runs
them in this process (workers=1) or in worker processes that split the cores between them;
`slurm` submits them as one job array through submitit, each array task checkpointing and
requeueing itself when SLURM signals pre-emption or the time limit."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from harness.schema import ConfigError
from harness.job import Job, group_jobs

from harness.store import run_dir
from harness.slurm import QueueUnavailable, queue_states, read_ledger
from harness.store import RunDirConflict, atomic_write, check_run_dir, finished_summary, read_summary


def is_done(job: Job, runs_dir: Path) -> bool:
    return finished_summary(run_dir(runs_dir, job), job.job_id) is not None


def check_run_dirs(jobs: list[Job], runs_dir: Path) -> None:
    """Before any work: every existing run directory must belong to the same resolved config."""
    for job in jobs:
        try:
            check_run_dir(run_dir(runs_dir, job), job)
        except RunDirConflict as exc:
            raise ConfigError(str(exc)) from None


def configure_torch(threads: int) -> None:
    """Per-process settings for training (every launcher and the benchmark call this): threads
    and flush-to-zero (denormals slow this kind of CPU by up to 2x)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def live_owner(d: Path):
    """The live process (not this one) that owns run directory `d`, else None."""
    from harness.lock import owner_dead, read_owner, this_machine

    owner = read_owner(d)
    if owner is None or owner.pid == os.getpid() and owner.host == socket.gethostname() and owner.machine == this_machine():
        return None
    return None if owner_dead(d, owner) else owner


def group_errors(group: list[Job], runs_dir: Path, error: str | None) -> list[tuple[str, str | None]]:
    """(job id, error or None) for each job of a group that ran: a seed that failed alone has
    its error in its summary.json; a group's failure is every unfinished seed's."""
    out = []
    for job in group:
        d = run_dir(runs_dir, job)
        if finished_summary(d, job.job_id) is not None:
            out.append((job.job_id, None))
        elif (owner := live_owner(d)) is not None:  # another launcher trains it: not this one's to report
            print(f"{job.algorithm.name} {job.task.name} seed{job.seed}: skipped, {owner} (another launcher) "
                  f"runs it", flush=True)
            out.append((job.job_id, None))
        else:  # read again only for a run that did not finish: its recorded error
            out.append((job.job_id, error or (read_summary(d) or {}).get("error") or "did not finish"))
    return out


# -- local ---------------------------------------------------------------------------------
_STOP = None  # in a worker: the launcher's stop event (Ctrl-C), see _init_worker


def _run_group(args) -> list[tuple[str, str | None]]:
    group, runs_dir, progress = args
    from harness.lock import LockLost
    from harness.runner import Interrupted, run_jobs

    if _STOP is not None and _STOP.is_set():
        return []  # stopping: not started
    configure_torch(group[0].threads)
    try:
        run_jobs(group, [run_dir(runs_dir, j) for j in group], progress_bar=progress,
                 stop_requested=_STOP.is_set if _STOP is not None else lambda: False)
        error = None
    except Interrupted:  # stopped at a safe point with a checkpoint: resumes next time
        return []
    except LockLost as exc:  # another launcher judged this one dead and continues the run: its to report
        print(f"{group[0].algorithm.name} {group[0].task.name}: stopped, {exc}", flush=True)
        error = None
    except Exception as exc:  # recorded in summary.json; the rest of the suite goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return group_errors(group, runs_dir, error)


def finished_line(job: Job, runs_dir: Path, error: str | None) -> str:
    name = f"{job.algorithm.name} {job.task.name} seed{job.seed}"
    if error:
        return f"{name}: FAILED {error.splitlines()[0]}"
    s = read_summary(run_dir(runs_dir, job)) or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"{name}: offline {fmt(s.get('offline_score'))} -> final {fmt(s.get('final_score'))} "
            f"({s.get('wall_time_s', 0):.0f} s)")


def _init_worker(stop) -> None:
    """Workers leave Ctrl-C (sent to the whole process group) to the launcher, which sets `stop`:
    each worker then checkpoints at its next safe point and returns (one line on the terminal,
    instead of a traceback from each, and nothing lost)."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_on_sigterm():
    """SIGTERM (`kill`) exits through the worker pool's clean-up, which stops the workers:
    by default it would kill this process alone and leave them running their jobs. Their runs
    resume from their last checkpoints next time. Returns the previous handler (None off the
    main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, on_sigterm)


def launch_local(jobs: list[Job], runs_dir: Path, workers: int = 1,
                 progress: bool = True, retries: int = 0) -> dict[str, str]:
    """Runs the jobs, one process per group (failed ones up to `retries` more times), in `workers`
    processes (0: as many as the cores hold groups of their `threads`); returns {job_id: error}
    for the ones that still failed. Each job runs with its own thread count however many others
    are left, so its result is the same alone and in a suite."""
    todo = [j for j in jobs if not is_done(j, runs_dir)]
    errors: dict[str, str] = {}
    for attempt in range(retries + 1):
        if not todo:
            break
        groups = group_jobs(todo)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n = max(1, min(workers or cores // max(j.threads for j in todo), len(groups)))
        if n == 1:
            results = [r for g in groups for r in _run_group((g, runs_dir, progress))]
        else:  # worker processes show no bars: one line per finished job instead
            by_id = {j.job_id: j for j in todo}
            results = []
            previous = _exit_on_sigterm()
            try:
                ctx = mp.get_context("spawn")
                stop = ctx.Event()
                with ctx.Pool(n, initializer=_init_worker, initargs=(stop,)) as pool:
                    finished = pool.imap_unordered(_run_group, [(g, runs_dir, False) for g in groups])
                    try:
                        for group_results in finished:
                            for job_id, err in group_results:
                                results.append((job_id, err))
                                if progress:
                                    print(f"[{len(results)}/{len(todo)}] {finished_line(by_id[job_id], runs_dir, err)}",
                                          flush=True)
                    except KeyboardInterrupt:  # the workers checkpoint and return; a second Ctrl-C kills them
                        stop.set()
                        for _ in finished:
                            pass
                        pool.close()
                        pool.join()
                        raise
                    pool.close()  # all done: let the workers exit on their own (the with-block's
                    pool.join()  # terminate() would kill them and leak a semaphore at shutdown)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        errors = {job_id: err for job_id, err in results if err}
        todo = [j for j in todo if j.job_id in errors]
        if todo and attempt < retries:
            print(f"retrying {len(todo)} failed job(s) ({attempt + 1}/{retries})", flush=True)
    return errors


# -- SLURM through submitit ------------------------------------------------------------------
class SlurmJob:
    """One group of jobs (the seeds trained together; often one job) as submitit runs it on a
    node. On SLURM's signal (pre-emption or the time limit, `slurm_signal_delay_s` before the
    kill) the runner finishes its current update or env step, saves a checkpoint and submitit
    requeues the job, which resumes from it. A signal that finds no safe point within `grace_s`
    requeues from the last periodic checkpoint instead (exact too, it just repeats some work)."""

    def __init__(self, jobs: list[Job], runs_dir: str, grace_s: float = 30.0):
        # pickled for the node as plain data (`Job.to_dict()`), as config.yaml holds it
        self.jobs, self.runs_dir, self.grace_s = [j.to_dict() for j in jobs], str(runs_dir), grace_s

    def __call__(self) -> list[dict[str, Any]]:
        from harness.runner import Interrupted, run_jobs

        jobs = [Job.from_dict(d) for d in self.jobs]
        configure_torch(jobs[0].threads)
        requested = threading.Event()
        sig = signal.SIGUSR2  # submitit's USR_SIG on SLURM
        submitit_handler = signal.getsignal(sig)

        def on_signal(signum, frame):
            if requested.is_set() or not callable(submitit_handler):  # second signal: no safe point came
                return submitit_handler(signum, frame) if callable(submitit_handler) else None
            requested.set()
            timer = threading.Timer(self.grace_s, os.kill, (os.getpid(), sig))
            timer.daemon = True
            timer.start()

        signal.signal(sig, on_signal)
        try:
            return run_jobs(jobs, [run_dir(self.runs_dir, j) for j in jobs], progress_bar=False,
                            stop_requested=requested.is_set)
        except Interrupted:
            signal.signal(sig, submitit_handler)
            submitit_handler(sig, None)  # calls self.checkpoint(), requeues, exits
            raise

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob([Job.from_dict(d) for d in self.jobs], self.runs_dir,
                                                           self.grace_s))


def check_slurm(launcher) -> None:
    if shutil.which("sbatch") is None:
        raise ConfigError("launcher=slurm needs SLURM's sbatch on PATH and none was found; "
                          "run on a cluster login node or use launcher=local")
    partition = launcher.partition
    if partition:
        out = subprocess.run(["sinfo", "-h", "-p", str(partition), "-o", "%P"], capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            known = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
            raise ConfigError(f"unknown SLURM partition '{partition}'; choose one of: "
                              f"{', '.join(p.rstrip('*') for p in known) or '(sinfo lists none)'}")


def slurm_executor(launcher, folder: Path, n_jobs: int):
    import submitit

    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm",
                               slurm_max_num_timeout=int(launcher.max_num_timeout))
    params = dict(name=launcher.job_name, timeout_min=int(launcher.timeout_min),
                  cpus_per_task=int(launcher.cpus_per_task),
                  slurm_array_parallelism=int(launcher.array_parallelism or n_jobs),
                  slurm_signal_delay_s=int(launcher.signal_delay_s),
                  slurm_additional_parameters=dict(launcher.additional_parameters or {}))
    if launcher.gpus_per_node:
        params["gpus_per_node"] = int(launcher.gpus_per_node)
    if launcher.mem_gb:
        params["mem_gb"] = float(launcher.mem_gb)
    for key in ("partition", "account", "qos"):
        if getattr(launcher, key):
            params[f"slurm_{key}"] = str(getattr(launcher, key))
    # the job imports this checkout's harness, wherever the job starts
    root = Path(__file__).resolve().parents[1]
    from harness.trackers import slurm_env_exports

    params["slurm_setup"] = [f'export PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"', *slurm_env_exports(),
                             *launcher.setup]
    ex.update_parameters(**params)
    return ex


def why_gone(job: Job, runs_dir: Path, slurm_id: str, folder: Path) -> str:
    """Why a job that left the SLURM queue has no done summary: its recorded error, else the
    error submitit saved, else what the store shows."""
    from submitit.core.utils import JobPaths, pickle_load

    summary = read_summary(run_dir(runs_dir, job))
    if summary and summary.get("status") == "failed" and summary.get("slurm_job_id") == slurm_id:
        return f"SLURM job {slurm_id} failed: {summary.get('error', 'see its summary.json')}"
    paths = JobPaths(folder / "%j", job_id=slurm_id, task_id=0)
    try:
        outcome, result = pickle_load(paths.result_pickle)
        if outcome == "error":
            return f"SLURM job {slurm_id} failed: {str(result).strip().splitlines()[-1]}"
    except Exception:  # no result file (killed or cancelled), or one this process cannot read
        pass
    started = "after it started" if summary and summary.get("slurm_job_id") == slurm_id else "before it started"
    return (f"SLURM job {slurm_id} left the queue unfinished {started} (cancelled, killed, failed node or "
            f"out of requeues); log: {paths.stderr}")


def wait_slurm(waiting: dict[str, Job], ledger: dict[str, str], runs_dir: Path, folder: Path,
               poll_s: float) -> dict[str, str]:
    """Waits until every job is done in the store or gone from the SLURM queue, whichever comes
    first; never on a result file, which a job cancelled while pending never writes. A job
    gone from the queue in two polls running without a done summary failed. Returns
    {job_id: error}. Ctrl-C: one line, the queue left as it is, exit 130."""
    left = dict(waiting)
    errors: dict[str, str] = {}
    gone_before: set[str] = set()
    complained = False
    n = len(left)
    try:
        while left:
            try:
                queued = queue_states([ledger[j] for j in left])  # before the store: a job writes
            except QueueUnavailable as exc:  # its done summary before it leaves the queue
                if not complained:
                    print(f"{exc}; still waiting (asking again every {poll_s:g} s)", flush=True)
                complained = True
                time.sleep(poll_s)
                continue
            complained = False
            for job_id, job in list(left.items()):
                sid = ledger[job_id]
                error = None
                if not is_done(job, runs_dir):
                    if sid in queued:
                        gone_before.discard(job_id)
                        continue
                    if job_id not in gone_before:  # confirmed at the next poll: shared file
                        gone_before.add(job_id)  # systems can show a fresh summary late
                        continue
                    error = errors[job_id] = why_gone(job, runs_dir, sid, folder)
                del left[job_id]
                print(f"[{n - len(left)}/{n}] {sid} {finished_line(job, runs_dir, error)}", flush=True)
            if left:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        arrays = " ".join(dict.fromkeys(ledger[j].split("_")[0] for j in left))
        print(f"\ninterrupted: {len(left)} job(s) left on the SLURM queue as they are; rerun the same command to "
              f"wait for them again (nothing is resubmitted or redone), `python -m harness.status {runs_dir}` to "
              f"follow them, `scancel {arrays}` to cancel them", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    failed = ", ".join(ledger[j] for j in errors)
    print(f"SLURM: {n - len(errors)} of {n} job(s) done" + (f", {len(errors)} failed ({failed}); rerun the same "
          f"command to resume them from their checkpoints" if errors else ""), flush=True)
    return errors


def launch_slurm(jobs: list[Job], runs_dir: Path, launcher, retries: int = 0) -> dict[str, str]:
    """Submits the unfinished jobs as one array (not those still queued or running from an
    earlier submission) and, if launcher.wait, waits for all of them, those included.
    Returns {job_id: error}."""
    check_slurm(launcher)
    folder = Path(runs_dir) / jobs[0].suite / ".submitit"
    ledger_path = folder / "submitted.json"
    ledger = read_ledger(folder.parent)
    unfinished = [j for j in jobs if not is_done(j, runs_dir)]
    try:
        queued = queue_states([ledger[j.job_id] for j in unfinished if j.job_id in ledger])
    except QueueUnavailable as exc:
        raise ConfigError(f"{exc}; cannot tell which jobs are still queued, so nothing was submitted; "
                          f"try again when squeue answers") from None
    waiting = {j.job_id: j for j in unfinished if ledger.get(j.job_id) in queued}
    todo = [j for j in unfinished if j.job_id not in waiting]
    if waiting:
        print(f"{len(waiting)} job(s) still queued or running on SLURM "
              f"({', '.join(ledger[j] for j in waiting)}): not resubmitted", flush=True)
    errors: dict[str, str] = {}
    for attempt in range(retries + 1):
        if todo:
            groups = group_jobs(todo)  # one array task per group
            ex = slurm_executor(launcher, folder, len(groups))
            with ex.batch():
                handles = [ex.submit(SlurmJob(g, str(Path(runs_dir).resolve()), float(launcher.grace_s))) for g in groups]
            for g, h in zip(groups, handles):
                for j in g:
                    ledger[j.job_id] = h.job_id
                    waiting[j.job_id] = j
            atomic_write(ledger_path, json.dumps(ledger, indent=1) + "\n")
            print(f"submitted {len(handles)} job(s) as SLURM array {handles[0].job_id.split('_')[0]}; "
                  f"logs: {folder}", flush=True)
        if not launcher.wait or not waiting:
            return {}
        errors = wait_slurm(waiting, ledger, Path(runs_dir), folder, float(launcher.poll_s))
        todo, waiting = [waiting[j] for j in errors], {}
        if not todo or attempt == retries:
            break
        print(f"resubmitting {len(todo)} failed job(s) ({attempt + 1}/{retries})", flush=True)
    return errors


def launch(jobs: list[Job], runs_dir: Path, run) -> dict[str, str]:
    """The launcher `run` (a `harness.config.RunConfig`) names; returns {job_id: error}."""
    launcher, retries = run.launcher, run.options.retries
    if launcher.name == "local":
        try:
            return launch_local(jobs, runs_dir, workers=launcher.workers, progress=run.options.progress, retries=retries)
        except KeyboardInterrupt:  # Ctrl-C: the workers ignore it, checkpoint and return
            pass
        print("\ninterrupted: rerun the same command to resume (finished runs are kept; the others continue "
              "from their last checkpoints)", file=sys.stderr, flush=True)
        raise SystemExit(130)
    if launcher.name == "slurm":
        return launch_slurm(jobs, runs_dir, launcher, retries=retries)
    raise ConfigError(f"unknown launcher '{launcher.name}'; choose one of: local, slurm")
