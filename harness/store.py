"""The results store: one directory per run holding its config, evaluation curve, training
metrics, online episodes and summary. Every write is atomic (write aside, then rename), so a
reader never sees half a file and an interrupted run never looks finished. The store's rules
live here: the layout (`run_path`), when a run is finished (`finished_summary`), when a
directory belongs to another config (`check_run_dir`) and the suite's manifest (`write_manifest`)."""
from __future__ import annotations

import csv
import io
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from harness.job import Job

EVAL_COLUMNS = ["phase", "step", "env_steps", "return", "normalized_score", "success"]
EPISODE_COLUMNS = ["env_steps", "return", "normalized_score", "success", "length"]
CHECKPOINT_DIR = "checkpoint"  # <run dir>/checkpoint/state.pt while a run is unfinished


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write aside, then rename. The file gets the mode the umask allows (0644 under umask 022),
    as `open` would give it: mkstemp's 0600 would hide results from others on shared storage."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # `.<name>.<random>` beside it, created with 0666 & ~umask by the kernel
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def csv_text(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if columns is None:  # union of keys in first-seen order (training metrics vary by method)
        columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):  # absent, unreadable, truncated (JSONDecodeError is a ValueError)
        return None
    return summary if isinstance(summary, dict) else None


def finished_summary(run_dir: Path, job_id: str | None = None) -> dict[str, Any] | None:
    """The run's summary if it finished (as the job `job_id`, when one is given), else None: the
    one rule for "this run is done and is never redone"."""
    summary = read_summary(run_dir)
    done = summary is not None and summary.get("status") == "done"
    return summary if done and (job_id is None or summary.get("job_id") == job_id) else None


def run_path(runs_dir: str | Path, suite: str, task: str, algorithm: str, seed: int) -> Path:
    """The store's layout: <runs_dir>/<suite>/<task>/<algorithm>/seed<seed>."""
    return Path(runs_dir) / suite / task / algorithm / f"seed{seed}"


def run_dir(runs_dir: str | Path, job: Job) -> Path:
    """A job's run directory."""
    return run_path(runs_dir, job.suite, job.task.name, job.algorithm.name, job.seed)


def runs_of(runs_dir: str | Path, task: str, algorithm: str) -> list[Path]:
    """Every run directory of (task, algorithm) in the store, in any suite."""
    return sorted(Path(runs_dir).glob(f"*/{task}/{algorithm}/seed*"))


class RunDirConflict(RuntimeError):
    """The run directory holds a run of a different resolved config (another job id)."""


def check_run_dir(run_dir: Path, job: Job) -> None:
    """Refuse a run directory written for another resolved config (e.g. a changed yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return
    try:
        found = (yaml.safe_load(path.read_text()) or {}).get("job_id")
    except yaml.YAMLError:
        found = None
    if found is not None and found != job.job_id:
        raise RunDirConflict(
            f"{run_dir} holds job {found}, but this config resolves to job {job.job_id} "
            f"(the config changed since that run); use another runs_dir=... or delete {run_dir}")


def write_manifest(jobs: list[Job], runs_dir: Path) -> Path:
    """runs_dir/<suite>/jobs.json: the expected jobs (merged with earlier commands' jobs, so a
    multirun sweep lists all of its points); `harness.status` reads it to report missing runs."""
    path = Path(runs_dir) / jobs[0].suite / "jobs.json"
    try:
        old = path.read_text()
        entries = {e["run_dir"]: e for e in json.loads(old)["jobs"]}
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        old, entries = None, {}
    for j in jobs:
        rel = str(run_dir(runs_dir, j).relative_to(runs_dir))
        entries[rel] = {"run_dir": rel, "job_id": j.job_id, "algorithm": j.algorithm.name, "task": j.task.name,
                        "seed": j.seed}
    text = json.dumps({"suite": jobs[0].suite, "jobs": sorted(entries.values(), key=lambda e: e["run_dir"])},
                      indent=1) + "\n"
    if text != old:  # unchanged: not rewritten (a finished study may sit on a read-only mount)
        atomic_write(path, text)
    return path


def remove_orphans(run_dir: Path) -> list[Path]:
    """Temp files of writes cut short (`kill -9` between `atomic_write`'s open and rename; a
    partial checkpoint can be hundreds of MB) and an empty `checkpoint/` folder. Called when a
    run starts, when nothing else writes into its directory. Returns what it removed."""
    run_dir = Path(run_dir)
    names = ["config.yaml", "summary.json", "evals.csv", "train.csv", "episodes.csv"]
    found = [p for n in names for p in run_dir.glob(f".{n}.*")] + list(run_dir.glob(f"{CHECKPOINT_DIR}/.state.pt.*"))
    for p in found:
        p.unlink(missing_ok=True)
    remove_empty_checkpoint_dir(run_dir)
    return found


def remove_empty_checkpoint_dir(run_dir: Path) -> None:
    try:
        (Path(run_dir) / CHECKPOINT_DIR).rmdir()
    except OSError:  # absent or not empty
        pass


class RunStore:
    """Writer for one run directory."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.evals: list[dict[str, Any]] = []
        self.train: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")

    def flush(self) -> None:
        """Rewrite the curves (small files) atomically."""
        atomic_write(self.dir / "evals.csv", csv_text(self.evals, EVAL_COLUMNS))
        atomic_write(self.dir / "train.csv", csv_text(self.train))
        atomic_write(self.dir / "episodes.csv", csv_text(self.episodes, EPISODE_COLUMNS))


def unwritable(folder: Path) -> str | None:
    """Why results cannot be written under `folder` (None: they can), found before any work by
    writing one small probe file where `folder` is or will be created; nothing is left behind."""
    import errno
    import shutil

    folder = Path(folder).expanduser().absolute()
    try:
        base = folder
        while not base.exists():
            if len(base.name.encode()) > 255:  # NAME_MAX of common file systems
                return f"runs_dir {folder}: the name {base.name[:20]}... is longer than 255 bytes; choose a shorter runs_dir"
            base = base.parent
        if not base.is_dir():
            return f"runs_dir {folder}: {base} is a file, not a folder; choose another runs_dir"
        fd, probe = tempfile.mkstemp(prefix=".o2o-write-check.", dir=base)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(base).free
        if free < MIN_FREE_BYTES:
            return (f"runs_dir {folder}: only {free / 2**20:.1f} MB free on its file system "
                    f"(at least {MIN_FREE_BYTES // 2**20} MB needed); free space or choose another runs_dir")
    except (OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        why = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (permission denied)",
               errno.EPERM: "is not writable (permission denied)", errno.ENOSPC: "has no space left",
               errno.EDQUOT: "is over its disk quota", errno.ENAMETOOLONG: "is too long a path"}.get(
            code, f"cannot be written ({getattr(exc, 'strerror', None) or exc})")
        return f"runs_dir {folder} {why}; choose another runs_dir"
    return None


MIN_FREE_BYTES = 64 * 2**20  # less than this cannot hold a study's checkpoints and curves
