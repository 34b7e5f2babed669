"""The results store: one directory per run holding its config, evaluation curve, training
metrics, online episodes and summary. Every write is atomic (write aside, then rename), so a
reader never sees half a file and an interrupted run never looks finished. The store's rules
live here: the layout (`run_path`), when a run is finished (`finished_summary`), when a
directory belongs to another config (`check_run_dir`) and the suite's manifest (`write_manifest`)."""
from __future__ import annotations

import csv
import errno
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


class DiskFull(OSError):
    """No space left (or over quota) where a run writes: one line naming the file."""

    def __init__(self, path: Path, code: int):
        import shutil

        try:
            free = f"{shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MB free"
        except OSError:
            free = "free space unknown"
        super().__init__(code, f"{'no space left' if code == errno.ENOSPC else 'disk quota exceeded'} writing "
                               f"{path} ({free}); free space, then rerun the same command: the run resumes "
                               f"from its last checkpoint", str(path))

    def __str__(self) -> str:
        return self.strerror


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write aside, then rename. The file gets the mode the umask allows (0644 under umask 022),
    as `open` would give it: mkstemp's 0600 would hide results from others on shared storage.
    A full disk (or quota) raises DiskFull naming `path`."""
    try:
        _atomic_write(path, data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(exc, DiskFull):
            raise DiskFull(path, exc.errno) from None
        raise


def _atomic_write(path: Path, data: str | bytes) -> None:
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
        Path(tmp).unlink(missing_ok=True)
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
    """Refuse a run directory written for another resolved config (e.g. a changed yaml), and a
    finished run whose summary.json is damaged (it would look unfinished and be trained again,
    overwriting its curves)."""
    if problem := damaged_finished_run(run_dir):
        raise RunDirConflict(problem)
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


def damaged_finished_run(run_dir: Path) -> str | None:
    """One line when `run_dir` holds a finished run (its curves, no checkpoint: a finished run
    deletes it) whose summary.json cannot be read; None otherwise. Every write here is atomic, so
    such a file was damaged from outside (a copy cut short, a full disk during a sync)."""
    d = Path(run_dir)
    path = d / "summary.json"
    if not path.exists() or read_summary(d) is not None:
        return None
    if not (d / "evals.csv").exists() or (d / CHECKPOINT_DIR).exists():
        return None  # unfinished: a resume rewrites the summary
    try:
        json.loads(path.read_text())
        why = "not a JSON object"
    except (OSError, ValueError) as exc:
        why = f"{type(exc).__name__}"
    return (f"{path} is unreadable ({why}) but the run finished (evals.csv, no checkpoint), so it is not trained "
            f"again; rebuild the summary from its files with `python -m harness.store rebuild {d}`, "
            f"or move the run away (mv {d} {d}.damaged) to train it anew")


def rebuild_summary(run_dir: Path) -> dict[str, Any]:
    """A finished run's summary.json rebuilt from its config.yaml and evals.csv (the scores and
    the early minimum as the runner computes them; timings are lost and left null). Refuses a
    curve that stops before the protocol's end: such a run did not finish."""
    import pandas as pd

    from scoring import early_min_score

    d = Path(run_dir)
    config = yaml.safe_load((d / "config.yaml").read_text()) or {}
    evals = pd.read_csv(d / "evals.csv")
    protocol = config.get("protocol") or {}
    offline = evals[evals["phase"] == "offline"]
    online = evals[evals["phase"] == "online"]
    last_online = int(online["env_steps"].max()) if len(online) else 0
    last_offline = int(offline["step"].max()) if len(offline) else 0
    if last_online < protocol.get("online_steps", 0) or (not len(online) and last_offline < protocol.get("offline_steps", 0)):
        raise ValueError(f"{d}/evals.csv ends at {last_offline} offline updates and {last_online} online env steps, "
                         f"before the protocol's end; the run did not finish, move it away to train it again")
    task, algorithm = config.get("task") or {}, config.get("algorithm") or {}
    early = early_min_score(online["env_steps"].tolist(), online["normalized_score"].tolist(),
                            protocol.get("online_steps", 0))
    scores = [*offline["normalized_score"].tolist(), *online["normalized_score"].tolist()]
    summary = {"status": "done", "job_id": config.get("job_id"), "suite": config.get("suite"),
               "task": task.get("name") if isinstance(task, dict) else task,
               "algorithm": algorithm.get("name") if isinstance(algorithm, dict) else algorithm,
               "seed": config.get("seed"),
               "offline_score": float(offline["normalized_score"].iloc[-1]) if len(offline) else None,
               "final_score": float(scores[-1]) if scores else None,
               "early_min_score": None if early != early else float(early),
               "wall_time_s": None, "updates_per_s": None, "rebuilt": True}
    RunStore(d).write_summary(summary)
    return summary


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
    found += list(run_dir.glob(".now-*"))  # harness.lock's clock probes
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
        """Atomically; on a full disk, a failed summary is written over the old one in place (it
        needs no new blocks: it is shorter), so that a run stopped by the disk is never left
        "running"."""
        text = json.dumps(summary, indent=2) + "\n"
        try:
            atomic_write(self.dir / "summary.json", text)
        except DiskFull:
            if summary.get("status") != "failed":
                raise
            brief = {k: summary.get(k) for k in ("status", "job_id", "suite", "task", "algorithm", "seed")}
            brief["error"] = str(summary.get("error") or "")[:300]
            data = (json.dumps(brief) + "\n").encode()
            with open(self.dir / "summary.json", "r+b") as f:  # no summary yet: the DiskFull stands
                if len(data) > os.fstat(f.fileno()).st_size:
                    raise
                f.write(data)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())

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


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.store rebuild RUN_DIR`: rebuild a finished run's damaged summary.json."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "rebuild":
        print("usage: python -m harness.store rebuild RUN_DIR", file=sys.stderr)
        return 2
    d = Path(argv[1])
    try:
        summary = rebuild_summary(d)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot rebuild {d}/summary.json: {exc}", file=sys.stderr)
        return 2
    print(f"{d}/summary.json rebuilt: final score {summary['final_score']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
