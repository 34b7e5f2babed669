"""Experiment trackers next to the CSV files: TensorBoard and Weights & Biases
(`logger=[csv,tensorboard,wandb]`; the CSV files are always written, they are the results store).

The runner hands each row it adds to train.csv, evals.csv and episodes.csv to `Trackers.log`, all
on one step axis, gradient updates (an online episode's step is the update count at its end,
`offline_steps + env_steps * utd`), under the tags `train/<column>`, `eval/<column>` and
`episode/<column>`. Every tracker knows the last step it already holds, so a resumed run neither
repeats nor skips a step: TensorBoard continues with `purge_step` = the step after the checkpoint
(its reader drops the older events from there on; events are flushed before every checkpoint),
W&B continues the same run (an id kept in the run directory, `resume="allow"`) after the last
step it holds, online (the server's) or offline (read back from the earlier attempts' `.wandb`
files). Rows of the checkpoint that a tracker lacks (lost to a kill -9 before they were written)
are logged again from the checkpoint's copy of the curves.
"""
from __future__ import annotations

import json
import numbers
import os
import secrets
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.job import Job

NAMES = ("csv", "tensorboard", "wandb")
KINDS = ("train", "eval", "episode")  # the order of rows logged at one step
SLURM_SKIPPED_ENV = ("WANDB_API_KEY",)  # never written into job scripts: nodes read ~/.netrc (wandb login)


def logger_names(value) -> list[str]:
    """`logger=...` as given on the command line (a name or a list) -> the trackers, csv first."""
    from harness.schema import ConfigError

    names = [value] if isinstance(value, str) else list(value or [])
    for name in names:
        if name not in NAMES:
            raise ConfigError(f"unknown logger '{name}'; choose from {', '.join(NAMES)}, "
                              f"e.g. logger=[csv,tensorboard,wandb]")
    return ["csv", *[n for n in dict.fromkeys(names) if n != "csv"]]


def wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled")


def check_trackers(names) -> None:
    """At the front door, before any job: one line for a tracker whose package is missing, or
    for W&B online without credentials (instead of the same failure in every job)."""
    from harness.schema import ConfigError

    for name in names:
        if name == "csv":
            continue
        try:
            __import__("torch.utils.tensorboard" if name == "tensorboard" else name)
        except ImportError as exc:
            raise ConfigError(f"logger={name} needs the {name} package ({exc}); install it with "
                              f"pip install -e \".[{name}]\" or drop {name} from logger") from None
    if "wandb" in names and not wandb_offline():
        import wandb

        try:
            wandb.login(verify=False)  # finds the key (env, ~/.netrc) or asks for it on a terminal
        except Exception as exc:
            raise ConfigError(f"logger=wandb: {str(exc).strip()} Or log offline: WANDB_MODE=offline "
                              f"(then wandb sync)") from None


def slurm_env_exports() -> list[str]:
    """Shell lines for SLURM jobs: the WANDB_* settings of the submitting shell (mode, entity,
    project, dir, ...) so a job logs where the command asked; the API key stays out of the script."""
    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
            if k.startswith("WANDB_") and k not in SLURM_SKIPPED_ENV]


def scalars(kind: str, row: dict[str, Any]) -> dict[str, float]:
    return {f"{kind}/{k}": float(v) for k, v in row.items()
            if k not in ("phase", "step") and isinstance(v, numbers.Real)}


def wandb_offline_runs(run_dirs) -> list[Path]:
    return sorted(p for d in run_dirs for p in Path(d).glob("wandb/offline-run-*") if p.is_dir())


class TensorBoard:
    def __init__(self, job: Job, run_dir: Path, resumed_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        log_dir = run_dir / "tensorboard"
        has_events = any(log_dir.glob("events.out.tfevents.*"))
        # resumed: everything up to the checkpoint was flushed before it was written
        self.held = resumed_step if resumed_step is not None and has_events else -1
        self.writer = SummaryWriter(str(log_dir), purge_step=self.held + 1, flush_secs=30)
        if self.held < 0:
            import yaml

            self.writer.add_text("config", "```\n" + yaml.safe_dump(job.to_dict(), sort_keys=False) + "```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, summary: dict[str, Any] | None, step: int, error: bool) -> None:
        if summary is not None:
            self.writer.add_text("summary", "```\n" + json.dumps(summary, indent=1) + "\n```", step)
        self.writer.close()


class WandB:
    def __init__(self, job: Job, run_dir: Path, resumed_step: int | None):
        import wandb

        id_file = run_dir / "wandb" / "run_id"  # job id + a nonce: a deleted and rerun directory is a new W&B run
        if id_file.exists():
            self.id = id_file.read_text().strip()
        else:
            from harness.store import atomic_write

            self.id = f"{job.job_id}-{secrets.token_hex(4)}"
            atomic_write(id_file, self.id + "\n")
        earlier = list(run_dir.glob(f"wandb/*-{self.id}/run-{self.id}.wandb"))
        # wandb names an attempt's directory by its start second: a second attempt within it would reuse the first's
        while any(f.parent.name.endswith(f"run-{datetime.now():%Y%m%d_%H%M%S}-{self.id}") for f in earlier):
            time.sleep(0.1)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or f"o2o-bench-{job.suite}",
            group=f"{job.task.name}/{job.algorithm.name}", name=f"seed{job.seed}",
            tags=[job.algorithm.name, job.task.name], config=job.to_dict(), id=self.id,
            resume=None if wandb_offline() else "allow",  # offline: a file per attempt, none to resume
            dir=str(run_dir), settings=wandb.Settings(console="off", quiet=True))  # progress bars not captured
        # online: the server's last step; offline (or lost on the way): the earlier attempts' files
        self.held = max([self.run.starting_step - 1, *map(last_history_step, earlier)])

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def flush(self) -> None:
        pass  # wandb-core writes in the background; what a kill loses, the next attempt logs again

    def finish(self, summary: dict[str, Any] | None, step: int, error: bool) -> None:
        if summary is not None:
            self.run.summary.update({k: v for k, v in summary.items() if k not in ("host", "pid", "slurm_job_id")})
        self.run.finish(exit_code=1 if error else 0)
        import wandb

        wandb.teardown()  # finish returns before the .wandb file is complete; a retry in this process reads it


def last_history_step(path: Path) -> int:
    """The last history step in a `.wandb` file (-1: none), read up to where a kill cut it off."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    last = -1
    store = DataStore()
    try:
        store.open_for_scan(str(path))
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "history":
                last = max(last, record.history.step.num)
    except Exception:  # a file cut short (empty header, half a block): its readable records count
        pass
    return last


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB}


class Trackers:
    """The trackers of one run; inert until `start` (and when only csv is on)."""

    def __init__(self, job: Job, run_dir: Path):
        self.job, self.dir = job, Path(run_dir)
        self.offline_steps, self.utd = job.protocol.offline_steps, job.protocol.utd
        self.backends: list = []
        self.step = 0

    def start(self, resumed_step: int | None, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Open the trackers; `rows` (per kind) are the curves so far, restored from the checkpoint."""
        for name in self.job.logger:
            if name != "csv":
                try:
                    self.backends.append(BACKENDS[name](self.job, self.dir, resumed_step))
                except BaseException:
                    self.finish(error=True)  # close those already open
                    raise
        if not self.backends:
            return
        earlier = sorted(((self.row_step(kind, r), KINDS.index(kind), kind, r) for kind in KINDS for r in rows[kind]),
                         key=lambda t: t[:2])
        for step, _, kind, row in earlier:
            self.log(kind, row, step)

    def row_step(self, kind: str, row: dict[str, Any]) -> int:
        return row["step"] if kind != "episode" else self.offline_steps + row["env_steps"] * self.utd

    def log(self, kind: str, row: dict[str, Any], step: int | None = None) -> None:
        if not self.backends:
            return
        step = self.row_step(kind, row) if step is None else step
        self.step = max(self.step, step)
        values = scalars(kind, row)
        for b in self.backends:
            if step > b.held:
                b.log(values, step)

    def flush(self) -> None:
        for b in self.backends:
            b.flush()

    def finish(self, summary: dict[str, Any] | None = None, error: bool = False) -> None:
        """Close every tracker (`summary`: the finished run's summary.json)."""
        backends, self.backends = self.backends, []
        for b in backends:
            b.finish(summary, self.step, error)
