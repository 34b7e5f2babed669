"""Launchers: run a list of jobs, skipping the finished ones, one process per group of jobs
(`harness.jobs.group_jobs`: the seeds trained together; a job alone otherwise). `local` runs
them in this process (workers=1) or in worker processes that split the cores between them;
`slurm` submits them as one job array through submitit, each array task checkpointing and
requeueing itself when SLURM signals pre-emption or the time limit."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import threading
import traceback
from pathlib import Path
from typing import Any

from harness.jobs import ConfigError, group_jobs, run_dir
from harness.store import atomic_write, read_summary


def is_done(job: dict[str, Any], runs_dir: Path) -> bool:
    summary = read_summary(run_dir(runs_dir, job))
    return bool(summary and summary.get("status") == "done" and summary.get("job_id") == job["job_id"])


def check_run_dirs(jobs: list[dict[str, Any]], runs_dir: Path) -> None:
    """Before any work: every existing run directory must belong to the same resolved config."""
    from harness.runner import RunDirConflict, check_run_dir

    for job in jobs:
        try:
            check_run_dir(run_dir(runs_dir, job), job)
        except RunDirConflict as exc:
            raise ConfigError(str(exc)) from None


def write_manifest(jobs: list[dict[str, Any]], runs_dir: Path) -> Path:
    """runs_dir/<suite>/jobs.json: the expected jobs (merged with earlier commands' jobs, so a
    multirun sweep lists all of its points); `harness.status` reads it to report missing runs."""
    path = Path(runs_dir) / jobs[0]["suite"] / "jobs.json"
    try:
        entries = {e["run_dir"]: e for e in json.loads(path.read_text())["jobs"]}
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        entries = {}
    for j in jobs:
        rel = str(run_dir(runs_dir, j).relative_to(runs_dir))
        entries[rel] = {"run_dir": rel, "job_id": j["job_id"], "algorithm": j["algorithm"]["name"],
                        "task": j["task"]["name"], "seed": j["seed"]}
    atomic_write(path, json.dumps({"suite": jobs[0]["suite"], "jobs": sorted(entries.values(), key=lambda e: e["run_dir"])},
                                  indent=1) + "\n")
    return path


def configure_torch(threads: int) -> None:
    """Per-process settings for training (every launcher and the benchmark call this): threads
    and flush-to-zero (denormals slow this kind of CPU by up to 2x)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def group_errors(group: list[dict[str, Any]], runs_dir: Path, error: str | None) -> list[tuple[str, str | None]]:
    """(job id, error or None) for each job of a group that ran: a seed that failed alone has
    its error in its summary.json; a group's failure is every unfinished seed's."""
    out = []
    for job in group:
        s = read_summary(run_dir(runs_dir, job)) or {}
        if s.get("status") == "done" and s.get("job_id") == job["job_id"]:
            out.append((job["job_id"], None))
        else:
            out.append((job["job_id"], error or s.get("error") or "did not finish"))
    return out


# -- local ---------------------------------------------------------------------------------
def _run_group(args) -> list[tuple[str, str | None]]:
    group, runs_dir, threads, progress = args
    from harness.runner import run_jobs

    configure_torch(threads)
    try:
        run_jobs(group, [run_dir(runs_dir, j) for j in group], progress_bar=progress)
        error = None
    except Exception as exc:  # recorded in summary.json; the rest of the suite goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return group_errors(group, runs_dir, error)


def finished_line(job: dict[str, Any], runs_dir: Path, error: str | None) -> str:
    name = f"{job['algorithm']['name']} {job['task']['name']} seed{job['seed']}"
    if error:
        return f"{name}: FAILED {error.splitlines()[0]}"
    s = read_summary(run_dir(runs_dir, job)) or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"{name}: offline {fmt(s.get('offline_score'))} -> final {fmt(s.get('final_score'))} "
            f"({s.get('wall_time_s', 0):.0f} s)")


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


def launch_local(jobs: list[dict[str, Any]], runs_dir: Path, workers: int = 1, threads: int = 0,
                 progress: bool = True, retries: int = 0) -> dict[str, str]:
    """Runs the jobs, one process per group (failed ones up to `retries` more times); returns
    {job_id: error} for the ones that still failed."""
    todo = [j for j in jobs if not is_done(j, runs_dir)]
    errors: dict[str, str] = {}
    for attempt in range(retries + 1):
        if not todo:
            break
        groups = group_jobs(todo)
        cores = os.cpu_count() or 1
        n = max(1, min(workers, len(groups)))
        per_job = threads or max(1, cores // n)  # never more threads than cores in all
        if n == 1:
            results = [r for g in groups for r in _run_group((g, runs_dir, per_job, progress))]
        else:  # worker processes show no bars: one line per finished job instead
            by_id = {j["job_id"]: j for j in todo}
            results = []
            previous = _exit_on_sigterm()
            try:
                with mp.get_context("spawn").Pool(n) as pool:
                    for group_results in pool.imap_unordered(_run_group, [(g, runs_dir, per_job, False) for g in groups]):
                        for job_id, err in group_results:
                            results.append((job_id, err))
                            if progress:
                                print(f"[{len(results)}/{len(todo)}] {finished_line(by_id[job_id], runs_dir, err)}",
                                      flush=True)
                    pool.close()  # all done: let the workers exit on their own (the with-block's
                    pool.join()  # terminate() would kill them and leak a semaphore at shutdown)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        errors = {job_id: err for job_id, err in results if err}
        todo = [j for j in todo if j["job_id"] in errors]
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

    def __init__(self, jobs: list[dict[str, Any]], runs_dir: str, threads: int, grace_s: float = 30.0):
        self.jobs, self.runs_dir, self.threads, self.grace_s = jobs, str(runs_dir), threads, grace_s

    def __call__(self) -> list[dict[str, Any]]:
        from harness.runner import Interrupted, run_jobs

        configure_torch(self.threads)
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
            return run_jobs(self.jobs, [run_dir(self.runs_dir, j) for j in self.jobs], progress_bar=False,
                            stop_requested=requested.is_set)
        except Interrupted:
            signal.signal(sig, submitit_handler)
            submitit_handler(sig, None)  # calls self.checkpoint(), requeues, exits
            raise

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob(self.jobs, self.runs_dir, self.threads, self.grace_s))


def check_slurm(launcher) -> None:
    if shutil.which("sbatch") is None:
        raise ConfigError("launcher=slurm needs SLURM's sbatch on PATH and none was found; "
                          "run on a cluster login node or use launcher=local")
    partition = launcher.get("partition")
    if partition:
        out = subprocess.run(["sinfo", "-h", "-p", str(partition), "-o", "%P"], capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            known = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
            raise ConfigError(f"unknown SLURM partition '{partition}'; choose one of: "
                              f"{', '.join(p.rstrip('*') for p in known) or '(sinfo lists none)'}")


def active_slurm_ids(ids: list[str]) -> set[str]:
    """Which of these SLURM job ids are still pending or running (squeue)."""
    if not ids:
        return set()
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def slurm_executor(launcher, folder: Path, n_jobs: int):
    import submitit

    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm",
                               slurm_max_num_timeout=int(launcher.max_num_timeout))
    params = dict(name=launcher.job_name, timeout_min=int(launcher.timeout_min),
                  cpus_per_task=int(launcher.cpus_per_task),
                  slurm_array_parallelism=int(launcher.array_parallelism or n_jobs),
                  slurm_signal_delay_s=int(launcher.signal_delay_s),
                  slurm_additional_parameters=dict(launcher.additional_parameters or {}))
    if launcher.get("gpus_per_node"):
        params["gpus_per_node"] = int(launcher.gpus_per_node)
    if launcher.get("mem_gb"):
        params["mem_gb"] = float(launcher.mem_gb)
    for key in ("partition", "account", "qos"):
        if launcher.get(key):
            params[f"slurm_{key}"] = str(launcher[key])
    # the job imports this checkout's harness, wherever the job starts
    root = Path(__file__).resolve().parents[1]
    params["slurm_setup"] = [f'export PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"', *(launcher.get("setup") or [])]
    ex.update_parameters(**params)
    return ex


def launch_slurm(jobs: list[dict[str, Any]], runs_dir: Path, launcher, retries: int = 0) -> dict[str, str]:
    """Submits the unfinished jobs as one array (skipping those still queued or running from an
    earlier submission); waits for them if launcher.wait. Returns {job_id: error}."""
    check_slurm(launcher)
    suite_dir = Path(runs_dir) / jobs[0]["suite"]
    folder = suite_dir / ".submitit"
    ledger_path = folder / "submitted.json"  # job_id -> SLURM job id of its latest submission
    try:
        ledger = json.loads(ledger_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        ledger = {}
    active = active_slurm_ids([ledger[j["job_id"]] for j in jobs if j["job_id"] in ledger])
    todo = [j for j in jobs if not is_done(j, runs_dir) and ledger.get(j["job_id"]) not in active]
    skipped = [j for j in jobs if ledger.get(j["job_id"]) in active and not is_done(j, runs_dir)]
    if skipped:
        print(f"{len(skipped)} job(s) still queued or running on SLURM: not resubmitted", flush=True)
    errors: dict[str, str] = {}
    for attempt in range(retries + 1):
        if not todo:
            break
        groups = group_jobs(todo)
        ex = slurm_executor(launcher, folder, len(groups))
        with ex.batch():
            handles = [ex.submit(SlurmJob(g, str(Path(runs_dir).resolve()), int(launcher.cpus_per_task),
                                          float(launcher.grace_s))) for g in groups]
        for g, h in zip(groups, handles):
            for j in g:
                ledger[j["job_id"]] = h.job_id
        atomic_write(ledger_path, json.dumps(ledger, indent=1) + "\n")
        print(f"submitted {len(handles)} job(s) as SLURM array {handles[0].job_id.split('_')[0]}; "
              f"logs: {folder}", flush=True)
        if not launcher.wait:
            return {}
        errors = {}
        for g, h in zip(groups, handles):
            try:
                h.result()
                error = None
            except Exception as exc:  # the job's error, or UncompletedJobError (cancelled, out of requeues)
                error = f"{type(exc).__name__}: {str(exc).strip()[-2000:]}"
            errors.update((job_id, err) for job_id, err in group_errors(g, runs_dir, error) if err)
        todo = [j for j in todo if j["job_id"] in errors]
        if todo and attempt < retries:
            print(f"resubmitting {len(todo)} failed job(s) ({attempt + 1}/{retries})", flush=True)
    return errors


def launch(jobs: list[dict[str, Any]], runs_dir: Path, cfg) -> dict[str, str]:
    """The launcher the config names (cfg.launcher.name)."""
    launcher = cfg.launcher
    retries = int(cfg.get("retries", 0))
    if launcher.name == "local":
        return launch_local(jobs, runs_dir, workers=launcher.get("workers", 1), threads=launcher.get("threads", 0),
                            progress=cfg.progress, retries=retries)
    if launcher.name == "slurm":
        return launch_slurm(jobs, runs_dir, launcher, retries=retries)
    raise ConfigError(f"unknown launcher '{launcher.name}'; choose one of: local, slurm")
