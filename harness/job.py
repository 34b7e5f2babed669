"""The frozen types a run is made of: a `Job` (one seed of one method on one task, holding its
built method Config), the `JobGroup` of seeds trained together in one process, and the parts a
job holds (`Protocol`, `ReplayConfig`, `RewardTransform`, `TaskRef`). `harness.config` builds
them from the Hydra tree; `job_id` names a job by a hash of its resolved config."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import algorithms
from harness.schema import ConfigError, check_range, typed

MAX_STEPS = 10**9  # more gradient or env steps than any study needs: a typo (e.g. 1e12)
MAX_BATCH = 2**20
MAX_SEED = 2**31 - 1  # numpy seeds are 32-bit, evaluation seeds add an offset
DEFAULT_THREADS, DEFAULT_DEVICE, DEFAULT_COMPILE = 1, "auto", "auto"  # RunOptions' defaults (harness.config)


@dataclass(frozen=True)
class Protocol:
    offline_steps: int  # gradient steps of offline pre-training
    online_steps: int  # environment steps of online fine-tuning
    utd: int = 1  # gradient updates per environment step while fine-tuning
    warmup_steps: int = 0  # first online env steps that only fill the buffer (no updates)
    warmup_policy: str = "policy"  # warm-up actions: "policy" (the frozen pre-trained one, sampled) | "uniform"
    eval_every_offline: int = 10_000  # gradient steps between offline evaluations
    eval_every: int = 2_000  # environment steps between online evaluations
    eval_episodes: int = 20  # deterministic-policy episodes per evaluation
    log_every: int = 1_000  # gradient steps between rows of train.csv
    checkpoint_every: int = 0  # environment/gradient steps between checkpoints (0: none)
    # a sharded dataset (tasks.base.Task.shards): offline updates between swaps of the one shard
    # held in memory (QC's main.py --dataset_replace_interval, default 1000); 0: every shard at once
    shard_every: int = 1_000

    def __post_init__(self):
        typed(self, "protocol")
        for name in ("offline_steps", "online_steps", "checkpoint_every", "warmup_steps", "shard_every"):
            check_range(f"protocol.{name}", getattr(self, name), 0, MAX_STEPS)
        highest = {"utd": 1_000, "eval_episodes": 100_000}  # the others: MAX_STEPS
        for name in ("utd", "eval_every_offline", "eval_every", "eval_episodes", "log_every"):
            check_range(f"protocol.{name}", getattr(self, name), 0, highest.get(name, MAX_STEPS), low_open=True)
        if self.warmup_policy not in ("policy", "uniform"):
            raise ConfigError(f"protocol.warmup_policy must be 'policy' or 'uniform', got '{self.warmup_policy}'")
        if self.online_steps and self.warmup_steps >= self.online_steps:
            raise ConfigError(f"protocol.warmup_steps ({self.warmup_steps}) must be below protocol.online_steps "
                              f"({self.online_steps}): the warm-up would take all of fine-tuning; lower warmup_steps")


@dataclass(frozen=True)
class ReplayConfig:
    # "mix": fixed offline fraction per batch; "append": one combined buffer; "online": the offline
    # data is dropped when fine-tuning starts (batches from online data only)
    mode: str = "mix"
    mixing_ratio: float = 0.5  # offline fraction of each fine-tuning batch in "mix" mode
    batch_size: int = 256

    def __post_init__(self):
        typed(self, "algorithm.replay")
        if self.mode not in ("mix", "append", "online"):
            raise ConfigError(f"algorithm.replay.mode must be 'mix', 'append' or 'online', got '{self.mode}'")
        if not 0.0 <= self.mixing_ratio <= 1.0:
            raise ConfigError(f"algorithm.replay.mixing_ratio must be in [0, 1], got {self.mixing_ratio}")
        check_range("algorithm.replay.batch_size", self.batch_size, 0, MAX_BATCH, low_open=True)


@dataclass(frozen=True)
class RewardTransform:
    scale: float = 1.0  # r' = scale * r + shift, applied to offline and online rewards
    shift: float = 0.0

    def __post_init__(self):
        typed(self, "algorithm.reward")
        check_range("algorithm.reward.scale", self.scale, 0, low_open=True)

    def __call__(self, r):
        return self.scale * r + self.shift


def yaml_value(v):
    """A Config value as config.yaml writes it (tuples as lists)."""
    return list(v) if isinstance(v, tuple) else v


@dataclass(frozen=True)
class ResolvedAlgorithm:
    """A method in a job: its name, buffer, reward transform and its built Config (the method's
    dataclass, every field filled in, those that follow the protocol included)."""

    name: str
    config: Any  # the method's Config instance
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    reward: RewardTransform = field(default_factory=RewardTransform)

    @property
    def hparams(self) -> dict[str, Any]:
        """The Config as a plain dict, in its fields' order (as config.yaml holds it)."""
        return {f: yaml_value(getattr(self.config, f)) for f in type(self.config).__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResolvedAlgorithm:
        config = algorithms.base.build_config(algorithms.get(d["name"]), dict(d.get("hparams") or {}))
        return cls(d["name"], config, ReplayConfig(**d.get("replay") or {}), RewardTransform(**d.get("reward") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "replay": asdict(self.replay), "reward": asdict(self.reward),
                "hparams": self.hparams}


@dataclass(frozen=True)
class TaskRef:
    name: str
    domain: str  # picks the method's `domains.<domain>` settings


# Protocol fields added after results existed: at these values they leave a job's id (and so its
# finished run directory) as it was. A method's hparams added later do the same at their default
# (Config field metadata {"id_neutral": True}, `algorithms.base.id_neutral_defaults`).
ID_NEUTRAL_PROTOCOL = {"warmup_steps": 0, "warmup_policy": "policy"}
# Protocol fields added after studies were registered too: left out of a job's config (config.yaml,
# the id, a study's design) at these values, as `compile` is at its default.
UNWRITTEN_PROTOCOL = {"shard_every": 1_000}


def protocol_dict(protocol: Protocol) -> dict[str, Any]:
    """A protocol as a job's config holds it (`UNWRITTEN_PROTOCOL` fields only where set)."""
    return {k: v for k, v in asdict(protocol).items() if k not in UNWRITTEN_PROTOCOL or v != UNWRITTEN_PROTOCOL[k]}


def job_id(job: dict[str, Any]) -> str:
    """The hash of a job's config (`Job.to_dict()`) that names it."""
    # where it runs, how its updates are compiled and how it is watched: rounding, not maths
    payload = {k: v for k, v in job.items() if k not in ("job_id", "device", "logger", "compile")}
    if "protocol" in payload:
        payload["protocol"] = {k: v for k, v in payload["protocol"].items()
                               if k not in ID_NEUTRAL_PROTOCOL or v != ID_NEUTRAL_PROTOCOL[k]}
    algo = payload.get("algorithm")
    if isinstance(algo, dict) and algo.get("name") in algorithms.REGISTRY and algo.get("hparams"):
        neutral = algorithms.base.id_neutral_defaults(algorithms.get(algo["name"]).Config)
        payload["algorithm"] = {**algo, "hparams": {k: v for k, v in algo["hparams"].items()
                                                    if k not in neutral or v != yaml_value(neutral[k])}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Job:
    """One seed of one method on one task, fully resolved (`harness.config`). `job_id` is a hash
    of its config (`to_dict()`, as config.yaml holds it, without where it runs and is watched): a
    finished run is reused only by a job of the same id."""

    suite: str
    seed: int
    algorithm: ResolvedAlgorithm
    task: TaskRef
    protocol: Protocol
    threads: int = DEFAULT_THREADS  # torch threads
    device: str = DEFAULT_DEVICE
    logger: tuple[str, ...] = ("csv",)  # trackers, csv first
    seed_group: tuple[int, ...] | None = None  # the seeds trained together with this one (None: alone)
    compile: str = DEFAULT_COMPILE  # how its updates run (harness.compile); like device, not in the id
    job_id: str = field(init=False, default="")

    def __post_init__(self):
        object.__setattr__(self, "logger", tuple(self.logger))
        if self.seed_group is not None:
            object.__setattr__(self, "seed_group", tuple(self.seed_group))
        object.__setattr__(self, "job_id", job_id(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data in config.yaml's order (its bytes, and so the job ids, depend on it)."""
        d = {"suite": self.suite, "seed": self.seed, "algorithm": self.algorithm.to_dict(),
             "task": asdict(self.task), "protocol": protocol_dict(self.protocol), "threads": self.threads,
             "device": self.device, "logger": list(self.logger)}
        if self.seed_group is not None:
            d["seed_group"] = list(self.seed_group)
        if self.compile != DEFAULT_COMPILE:
            d["compile"] = self.compile
        d["job_id"] = self.job_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        """The job of a `to_dict()` (a config.yaml, a pickled SLURM task); refuses one whose
        `job_id` is not the hash of its config."""
        job = cls(suite=d["suite"], seed=d["seed"], algorithm=ResolvedAlgorithm.from_dict(d["algorithm"]),
                  task=TaskRef(**d["task"]), protocol=Protocol(**d["protocol"]),
                  **{k: d[k] for k in ("threads", "device", "logger", "seed_group", "compile") if k in d})
        if d.get("job_id") not in (None, job.job_id):
            raise ValueError(f"job {d['job_id']}: its config hashes to job id {job.job_id}")
        return job


@dataclass(frozen=True)
class JobGroup:
    """The jobs trained together in one process: seeds of the same method, task and protocol
    (one job when its seeds train alone)."""

    jobs: tuple[Job, ...]

    def __post_init__(self):
        object.__setattr__(self, "jobs", tuple(self.jobs))
        first = {k: v for k, v in self.jobs[0].to_dict().items() if k not in ("job_id", "seed")}
        for job in self.jobs[1:]:
            if {k: v for k, v in job.to_dict().items() if k not in ("job_id", "seed")} != first:
                raise ValueError(f"job {job.job_id} differs from job {self.jobs[0].job_id} in more than its seed; "
                                 f"a group trains one method, task and protocol")

    def __iter__(self):
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Job:
        return self.jobs[i]


def group_jobs(jobs: list[Job]) -> list[JobGroup]:
    """The jobs that train together, in order: those sharing a `seed_group` (and everything
    else in their config); a job without one is a group of its own."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.seed_group is None:
            groups[job.job_id] = [job]
            continue
        key = json.dumps({k: v for k, v in job.to_dict().items() if k not in ("job_id", "seed")}, sort_keys=True)
        groups.setdefault(key, []).append(job)
    return [JobGroup(tuple(g)) for g in groups.values()]
