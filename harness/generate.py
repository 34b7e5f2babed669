"""`python -m harness.generate TASK [shards=A-B] [launcher=slurm launcher.KEY=VALUE ...]`: a sharded
dataset (OGBench's 100M variants, `tasks/ogbench.py`) made shard by shard through the launchers:
`local` in worker processes, `slurm` as one job array (submitit; an interrupted or timed-out
shard requeues and resumes at its first missing chunk). Shards already written are never
submitted or redone, nor those still queued from an earlier submission (waited for instead);
once every shard is there the dataset's manifest is written by one rename."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import traceback

from omegaconf import OmegaConf

from harness.config import CONF_DIR, LAUNCHERS
from harness.schema import ConfigError

USAGE = "usage: python -m harness.generate TASK [shards=A-B] [threads=N] [launcher=local|slurm] [launcher.KEY=VALUE ...]"


class ShardJob:
    """One shard as a launcher runs it (plain data, pickled to a worker or a SLURM node): the
    task, the shard and the data folder of the machine that submitted it."""

    def __init__(self, task, shard: int, data_root: str):
        self.task, self.shard, self.data_root = task, shard, data_root

    def __call__(self) -> str:
        os.environ["O2O_DATA_DIR"] = self.data_root
        return str(self.task.generate_shard(self.shard))

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on pre-emption or time limit: requeue; the shard resumes from its chunks."""
        import submitit

        return submitit.helpers.DelayedSubmission(ShardJob(self.task, self.shard, self.data_root))


def _run(job: ShardJob) -> tuple[int, str | None]:
    try:
        job()
        return job.shard, None
    except Exception as exc:  # reported per shard; the others go on
        return job.shard, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def parse_shards(text: str, n: int) -> list[int]:
    """'3', '0-9' or '0-4,7' -> shard numbers, each within 0..n-1."""
    out = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"shards must look like 3, 0-9 or 0-4,7, got '{text}'") from None
    bad = [s for s in out if not 0 <= s < n]
    if bad or not out:
        raise ConfigError(f"shards must lie in 0-{n - 1}, got '{text}'")
    return sorted(set(out))


def launch_shards(task, shards: list[int], launcher, progress: bool = True) -> dict[int, str]:
    """Runs the missing shards of `task` through `launcher` (a composed launcher config);
    returns {shard: error} for those that failed."""
    from tasks.sources import data_dir

    todo = [s for s in shards if not task.shard_path(s).exists()]
    if progress and len(todo) < len(shards):
        print(f"{len(shards) - len(todo)} shard(s) already written: not redone", flush=True)
    if not todo:
        return {}
    jobs = [ShardJob(task, s, str(data_dir())) for s in todo]
    if launcher.name == "local":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n = max(1, min(launcher.workers or cores, len(jobs)))
        if n == 1:
            results = [_run(j) for j in jobs]
        else:
            with mp.get_context("spawn").Pool(n) as pool:
                results = list(pool.imap_unordered(_run, jobs))
                pool.close()
                pool.join()
        for shard, error in sorted(results):
            if progress:
                print(f"shard {shard}: " + (f"FAILED {error.splitlines()[0]}" if error else "done"), flush=True)
        return {s: e for s, e in results if e}
    if launcher.name == "slurm":
        return launch_slurm(task, jobs, launcher)
    raise ConfigError(f"unknown launcher '{launcher.name}'; choose one of: local, slurm")


def launch_slurm(task, jobs: list[ShardJob], launcher) -> dict[int, str]:
    """The shards not still queued or running from an earlier submission (the ledger
    `.submitit/submitted.json`: shard -> SLURM id, as `harness.launch.launch_slurm` keeps for runs)
    as one job array; with launcher.wait, waits for them and the queued ones. Returns {shard: error}."""
    import submitit

    from harness.launch import check_slurm, slurm_executor
    from harness.slurm import QueueUnavailable, queue_states, read_ledger
    from harness.store import atomic_write

    check_slurm(launcher)
    folder = task.generated_path().parent / ".submitit"
    ledger = read_ledger(folder.parent)
    todo = [j.shard for j in jobs]
    try:
        queued = queue_states([ledger[str(s)] for s in todo if str(s) in ledger])
    except QueueUnavailable as exc:
        raise ConfigError(f"{exc}; cannot tell which shards are still queued, so nothing was submitted; "
                          f"try again when squeue answers") from None
    waiting = {s: submitit.SlurmJob(folder / "%j", ledger[str(s)]) for s in todo if ledger.get(str(s)) in queued}
    queued_before = sorted(waiting)
    jobs = [j for j in jobs if j.shard not in waiting]
    if jobs:
        ex = slurm_executor(launcher, folder, len(jobs))
        with ex.batch():
            handles = [ex.submit(j) for j in jobs]
        waiting.update({j.shard: h for j, h in zip(jobs, handles)})
        ledger.update({str(j.shard): h.job_id for j, h in zip(jobs, handles)})
        atomic_write(folder / "submitted.json", json.dumps(ledger, indent=1) + "\n")
        print(f"submitted {len(handles)} shard(s) as SLURM array {handles[0].job_id.split('_')[0]}; logs: {folder}",
              flush=True)
    errors = {}
    try:  # from the line that says what is queued: a Ctrl-C there too is the one-line exit below
        if queued_before:
            print(f"{len(queued_before)} shard(s) still queued or running on SLURM "
                  f"({', '.join(ledger[str(s)] for s in queued_before)}): not resubmitted", flush=True)
        if not launcher.wait:
            return {}
        for shard, handle in sorted(waiting.items()):
            try:
                handle.result()
                print(f"shard {shard}: done", flush=True)
            except Exception as exc:  # failed, cancelled or out of requeues: rerun the same command
                errors[shard] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                print(f"shard {shard}: FAILED {errors[shard]}", flush=True)
    except KeyboardInterrupt:
        arrays = " ".join(dict.fromkeys(h.job_id.split("_")[0] for h in waiting.values()))
        print(f"\ninterrupted: the shards are left on the SLURM queue as they are; rerun the same command to wait "
              f"for them again (nothing is resubmitted or redone), `scancel {arrays}` to cancel them",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    return errors


def compose(args: list[str]):
    """(task name, shards text or None, launcher config) from the arguments, each checked."""
    names = [a for a in args if "=" not in a]
    if len(names) != 1:
        raise ConfigError(f"name one sharded task; {USAGE}")
    values, launcher_args, choice = {}, [], "local"
    for arg in (a for a in args if "=" in a):
        key, _, value = arg.partition("=")
        if key == "launcher":
            choice = value
        elif key.startswith("launcher."):
            launcher_args.append(arg)
        elif key in ("shards", "threads"):
            values[key] = value
        else:
            raise ConfigError(f"unknown option '{key}'; valid: shards, threads, launcher, launcher.KEY")
    path = CONF_DIR / "launcher" / f"{choice}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown launcher '{choice}'; choose one of: local, slurm")
    base = OmegaConf.load(path)
    if choice == "slurm":
        base.gpus_per_node = 0  # CPU work (the oracles and MuJoCo); launcher.gpus_per_node=N changes it
        base.job_name = "o2o-bench-data"
    overrides = OmegaConf.to_container(OmegaConf.from_dotlist(launcher_args)).get("launcher", {})
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ConfigError(f"unknown option 'launcher.{unknown[0]}'; valid: {', '.join('launcher.' + k for k in base)}")
    try:
        threads = int(values.get("threads", 1))
    except ValueError:
        raise ConfigError(f"threads must be a whole number >= 1, got '{values['threads']}'") from None
    launcher = OmegaConf.merge({"threads": threads, "launcher": base}, {"launcher": overrides}).launcher
    schema = LAUNCHERS[choice]
    return names[0], values.get("shards"), schema(**{k: v for k, v in OmegaConf.to_container(launcher, resolve=True).items()
                                                     if k in schema.__dataclass_fields__})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__ + "\n" + USAGE)
        return 0 if args else 2
    import tasks
    from tasks.base import DatasetError

    try:
        name, shards_text, launcher = compose(args)
        try:
            task = tasks.get(name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        if not getattr(task, "shards", 0):
            raise ConfigError(f"task '{name}' is not sharded; make its data with `python -m tasks generate {name}`")
        shards = parse_shards(shards_text, task.shards) if shards_text is not None else list(range(task.shards))
        if problem := task.save_problem():
            raise ConfigError(f"task '{name}': its shards cannot be written: {problem}")
        written = all(task.shard_path(s).exists() for s in range(task.shards))
        errors = launch_shards(task, shards, launcher)
        if errors:
            print(f"{len(errors)} shard(s) failed ({', '.join(map(str, sorted(errors)))}); rerun the same command to "
                  f"resume them from their last chunk", file=sys.stderr)
            return 1
        if all(task.shard_path(s).exists() for s in range(task.shards)):
            manifest = task.generated_path()  # a complete dataset's manifest is not rewritten
            print(f"{name}: dataset complete: {manifest if written and manifest.exists() else task.assemble()}")
        else:
            left = [s for s in range(task.shards) if not task.shard_path(s).exists()]
            print(f"{name}: {task.shards - len(left)} of {task.shards} shards written; {len(left)} left")
        return 0
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
