"""From a composed config to jobs: one per (algorithm, task, seed), each fully resolved,
validated before any work starts, and named by a hash of its resolved config; and the groups of
jobs that train in one process (`seeds_per_process` seeds of one method and task)."""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import algorithms
import tasks
from harness.compile import MODES as COMPILE_MODES
from harness.schema import ConfigError, check_range, check_values, coerce, typed  # noqa: F401 (ConfigError: re-exported)
from harness.store import run_dir  # noqa: F401 (re-exported: a job's run directory)

CONF_DIR = Path(__file__).parent / "conf"


MAX_STEPS = 10**9  # more gradient or env steps than any study needs: a typo (e.g. 1e12)
MAX_BATCH = 2**20
MAX_SEED = 2**31 - 1  # numpy seeds are 32-bit, evaluation seeds add an offset


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

    def __post_init__(self):
        typed(self, "protocol")
        for name in ("offline_steps", "online_steps", "checkpoint_every", "warmup_steps"):
            check_range(f"protocol.{name}", getattr(self, name), 0, MAX_STEPS)
        for name in ("utd", "eval_every_offline", "eval_every", "eval_episodes", "log_every"):
            check_range(f"protocol.{name}", getattr(self, name), 0, MAX_STEPS, low_open=True)
        check_range("protocol.utd", self.utd, high=1_000)
        check_range("protocol.eval_episodes", self.eval_episodes, high=100_000)
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


@dataclass(frozen=True)
class RunOptions:
    """The front door's own options in conf/config.yaml (other keys there pass unchecked)."""

    seed: int | None = None  # one seed instead of the suite's seeds
    runs_dir: str = "runs"
    device: str = "auto"
    dry_run: bool = False
    progress: bool = True
    report: bool = True
    retries: int = 0
    threads: int = 1  # torch threads per job (part of the job id)
    compile: str = "auto"  # compiled / CUDA-graph updates (harness.compile): auto | on | off

    def __post_init__(self):
        try:
            threads = coerce(self.threads, int, "threads")
        except ConfigError:
            threads = 0
        if not 1 <= threads <= 4096:
            raise ConfigError(f"threads must be a whole number >= 1 (torch threads per job), got {self.threads!r}")
        typed(self, "")
        if self.seed is not None:
            check_range("seed", self.seed, 0, MAX_SEED)
        check_range("retries", self.retries, 0, 100)
        if not self.runs_dir.strip():
            raise ConfigError("runs_dir must be a folder path, got ''")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")


@dataclass(frozen=True)
class ResolvedAlgorithm:
    """A method's resolved config in a job (`resolve_algorithm`): its name, buffer, reward
    transform and every hyperparameter of its Config (a plain dict, as config.yaml writes it)."""

    name: str
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    reward: RewardTransform = field(default_factory=RewardTransform)
    hparams: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResolvedAlgorithm:
        return cls(d["name"], ReplayConfig(**d.get("replay") or {}), RewardTransform(**d.get("reward") or {}),
                   dict(d.get("hparams") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "replay": asdict(self.replay), "reward": asdict(self.reward),
                "hparams": copy.deepcopy(self.hparams)}


@dataclass(frozen=True)
class TaskRef:
    name: str
    domain: str  # picks the method's `domains.<domain>` settings


@dataclass(frozen=True)
class Job:
    """One seed of one method on one task, fully resolved (`expand`). `job_id` is a hash of its
    config (`to_dict()`, as config.yaml holds it, without where it runs and is watched): a
    finished run is reused only by a job of the same id."""

    suite: str
    seed: int
    algorithm: ResolvedAlgorithm
    task: TaskRef
    protocol: Protocol
    threads: int = RunOptions.threads  # torch threads
    device: str = RunOptions.device
    logger: tuple[str, ...] = ("csv",)  # trackers, csv first
    seed_group: tuple[int, ...] | None = None  # the seeds trained together with this one (None: alone)
    compile: str = RunOptions.compile  # how its updates run (harness.compile); like device, not in the id
    job_id: str = field(init=False, default="")

    def __post_init__(self):
        object.__setattr__(self, "logger", tuple(self.logger))
        if self.seed_group is not None:
            object.__setattr__(self, "seed_group", tuple(self.seed_group))
        object.__setattr__(self, "job_id", job_id(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data in config.yaml's order (its bytes, and so the job ids, depend on it)."""
        d = {"suite": self.suite, "seed": self.seed, "algorithm": self.algorithm.to_dict(),
             "task": asdict(self.task), "protocol": asdict(self.protocol), "threads": self.threads,
             "device": self.device, "logger": list(self.logger)}
        if self.seed_group is not None:
            d["seed_group"] = list(self.seed_group)
        if self.compile != RunOptions.compile:
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
class LocalLauncher:
    name: str = "local"
    workers: int = 0  # worker processes (0: as many as the cores hold jobs of `threads` threads)

    def __post_init__(self):
        typed(self, "launcher")
        check_range("launcher.workers", self.workers, 0, 4096)


@dataclass(frozen=True)
class SlurmLauncher:
    """The SLURM launcher's numbers (its cluster names pass unchecked: sbatch judges them)."""

    name: str = "slurm"
    timeout_min: int = 240
    array_parallelism: int = 32
    signal_delay_s: int = 120
    grace_s: int = 60
    max_num_timeout: int = 20
    poll_s: float = 10.0

    def __post_init__(self):
        typed(self, "launcher")
        check_range("launcher.timeout_min", self.timeout_min, 0, low_open=True)
        for name in ("array_parallelism", "signal_delay_s", "grace_s", "max_num_timeout"):
            check_range(f"launcher.{name}", getattr(self, name), 0)
        check_range("launcher.poll_s", self.poll_s, 0, 3600, low_open=True)


@dataclass(frozen=True)
class Suite:
    name: str
    algorithms: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    algorithm_seeds: dict[str, list[int]] = field(default_factory=dict)  # some methods' seeds instead of `seeds`
    # seeds of one (method, task) trained together in one process, as one batched model; auto: 1 on
    # the CPU, on CUDA all of them up to GPU_GROUP_BYTES of replay (`seeds_per_process`)
    seeds_per_process: int | str = "auto"

    def __post_init__(self):
        for key in ("algorithms", "tasks", "seeds"):
            values = getattr(self, key)
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"suite.{key} must be a non-empty list, got {values!r}")
        for name in (*self.algorithms, *self.tasks):
            if not isinstance(name, str):
                raise ConfigError(f"suite.algorithms and suite.tasks must be lists of names, got {name!r}")
        for seed in self.seeds:
            check_range("suite.seeds", coerce(seed, int, "suite.seeds"), 0, MAX_SEED)
        if not isinstance(self.algorithm_seeds, dict):
            raise ConfigError(f"suite.algorithm_seeds must map method names to seed lists, got {self.algorithm_seeds!r}")
        for name, seeds in self.algorithm_seeds.items():
            where = f"suite.algorithm_seeds.{name}"
            if name not in self.algorithms:
                raise ConfigError(f"{where}: '{name}' is not in suite.algorithms ({', '.join(self.algorithms)})")
            if not isinstance(seeds, (list, tuple)) or not seeds:
                raise ConfigError(f"{where} must be a non-empty list of seeds, got {seeds!r}")
            for seed in seeds:
                check_range(where, coerce(seed, int, where), 0, MAX_SEED)
        if self.seeds_per_process != "auto":
            per_process = coerce(self.seeds_per_process, int, "suite.seeds_per_process")
            check_range("suite.seeds_per_process", per_process, 1, 4096)
            object.__setattr__(self, "seeds_per_process", per_process)


LAUNCHERS = {"local": LocalLauncher, "slurm": SlurmLauncher}  # launchers whose options are checked here


def check_options(cfg: DictConfig) -> RunOptions:
    """The front door's own options, the suite and the launcher, before anything is expanded."""
    plain = lambda x: OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x  # noqa: E731
    options = RunOptions(**{f: cfg[f] for f in RunOptions.__dataclass_fields__ if f in cfg})
    suite = plain(cfg.suite)
    Suite(**{k: suite[k] for k in ("name", "algorithms", "tasks", "seeds", "seeds_per_process") if k in suite},
          algorithm_seeds=_plain(suite.get("algorithm_seeds")))
    launcher = plain(cfg.get("launcher")) or {}
    schema = LAUNCHERS.get(launcher.get("name"))
    if schema is not None:
        schema(**{k: v for k, v in launcher.items() if k in schema.__dataclass_fields__})
    return options


def package_yamls(group: str) -> dict[str, Path]:
    """Yamls shipped by installed method packages: `<top package>/conf/algorithm/<name>.yaml` for
    each `o2o_bench.algorithms` entry point `<name>` (so such a method needs no edit here)."""
    if group != "algorithm":
        return {}
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    found = {}
    for ep in entry_points(group=algorithms.base.ENTRY_POINT_GROUP):
        spec = find_spec(ep.value.split(":")[0].split(".")[0])
        for loc in (spec.submodule_search_locations or []) if spec else []:
            path = Path(loc) / "conf" / group / f"{ep.name}.yaml"
            if path.exists():
                found.setdefault(ep.name, path)
    return found


def group_names(group: str) -> list[str]:
    return sorted({p.stem for p in (CONF_DIR / group).glob("*.yaml")} | set(package_yamls(group)))


def load_group(group: str, name: str) -> DictConfig:
    """A group's yaml as Hydra composes it: a `defaults: [other, _self_]` list (e.g. calql.yaml
    inheriting cql.yaml) merges those configs of the same group first."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        path = package_yamls(group).get(name, path)
    if not path.exists():
        raise ConfigError(f"unknown {group} '{name}'; choose one of: {', '.join(group_names(group))}")
    cfg = OmegaConf.load(path)
    defaults = cfg.pop("defaults", None)
    if not defaults:
        return cfg
    parts = [cfg if entry == "_self_" else load_group(group, str(entry)) for entry in defaults]
    return OmegaConf.merge(*parts, *([] if "_self_" in defaults else [cfg]))


ALGORITHM_KEYS = ("name", "replay", "reward", "hparams", "protocol")  # protocol: the method's own (e.g. RLPD's UTD)


def resolve_algorithm(algo_cfg: DictConfig | dict, domain: str, *overrides: dict[str, Any]) -> dict[str, Any]:
    """A method's resolved config, later layers winning: its dataclass defaults < its yaml < the
    yaml's `domains.<domain>` block < each of `overrides` (the suite's algorithm_overrides, then
    the command line). Checked against the schema and complete: every field has its value."""
    cfg = OmegaConf.to_container(algo_cfg, resolve=True) if isinstance(algo_cfg, DictConfig) else dict(algo_cfg)
    cfg.pop("defaults", None)
    domains = cfg.pop("domains", None) or {}
    known = {t.domain for t in tasks.TASKS.values()}
    if set(domains) - known:
        raise ConfigError(f"algorithm '{cfg.get('name')}': domains.{sorted(set(domains) - known)[0]} is not a "
                          f"task domain; known: {', '.join(sorted(known))}")
    merged = OmegaConf.merge(cfg, domains.get(domain) or {}, *[o for o in overrides if o])
    return validate_algorithm(OmegaConf.to_container(merged, resolve=True))


def standalone_hparams(algo: dict[str, Any]) -> dict[str, Any]:
    """A resolved method's hparams for building it outside a job (the bench, scripts): fields that
    follow the protocol take the method's own protocol (its yaml's `protocol:`, else the defaults)."""
    own = Protocol(**{"offline_steps": 0, "online_steps": 0, **(algo.get("protocol") or {})})
    return algorithms.base.follow_protocol(algorithms.get(algo["name"]), algo["hparams"], own)


def _plain(x) -> dict[str, Any]:
    """A plain dict without the keys left at null (null means: not overridden here)."""
    d = OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else (x or {})
    return {k: v for k, v in d.items() if v is not None}


def hydra_overrides(argv: list[str]) -> list[str]:
    """Command-line overrides as given, with options of the chosen algorithm or task and the
    suite's overrides passed as `++key=value`: the yamls hold only what differs from the dataclass
    defaults, so a key such as algorithm.hparams.cql_alpha may be absent from the composed yaml;
    the schema then checks it."""
    def rewrite(arg: str) -> str:
        key = arg.partition("=")[0]
        if "=" in arg and key.startswith(("algorithm.", "task.", "suite.protocol.", "suite.algorithm_overrides.",
                                                        "suite.algorithm_seeds.", "suite.seeds_per_process")):
            return "++" + arg
        return arg

    return [rewrite(a) for a in argv]


def command_line_values(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The values the command line set inside the chosen algorithm and task (`algorithm.hparams.x=1`,
    `task.protocol.utd=2`), as composed by Hydra: they are applied last, after the yaml's domain
    block and the suite's overrides, so that they always take effect."""
    out = OmegaConf.create({})
    for arg in overrides:
        key = arg.partition("=")[0]
        if key.startswith("~") or not arg.count("="):
            continue  # deletions act on the composed yaml itself
        key = key.lstrip("+")
        if (key.startswith("algorithm.") and not key.startswith("algorithm.domains.")) or key.startswith("task.protocol."):
            OmegaConf.update(out, key, OmegaConf.select(cfg, key), force_add=True)
    return OmegaConf.to_container(out, resolve=True)


# Protocol fields added after results existed: at these values they leave a job's id (and so its
# finished run directory) as it was.
ID_NEUTRAL_PROTOCOL = {"warmup_steps": 0, "warmup_policy": "policy"}


def job_id(job: dict[str, Any]) -> str:
    """The hash of a job's config (`Job.to_dict()`) that names it."""
    # where it runs, how its updates are compiled and how it is watched: rounding, not maths
    payload = {k: v for k, v in job.items() if k not in ("job_id", "device", "logger", "compile")}
    if "protocol" in payload:
        payload["protocol"] = {k: v for k, v in payload["protocol"].items()
                               if k not in ID_NEUTRAL_PROTOCOL or v != ID_NEUTRAL_PROTOCOL[k]}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def expand(cfg: DictConfig, overrides: list[str] = ()) -> list[Job]:
    """All jobs of the composed config, each resolved and validated: algorithm x task x seed.
    `overrides`: the command line's Hydra overrides (they win over every yaml and the suite).
    With `suite.seeds_per_process` K > 1 the seeds of each (algorithm, task) are split, in order,
    into groups of up to K trained together in one process; each job of a group of more than one
    records the group's seeds (`seed_group`), so its id says how the seed was trained."""
    options = check_options(cfg)
    cli = command_line_values(cfg, overrides)
    suite = cfg.suite
    algo_cfgs = [cfg.algorithm] if cfg.get("algorithm") else [load_group("algorithm", n) for n in suite.algorithms]
    task_cfgs = [cfg.task] if cfg.get("task") else [load_group("task", n) for n in suite.tasks]
    seeds = [cfg.seed] if cfg.get("seed") is not None else list(suite.seeds)
    shared = _plain(suite.get("algorithm_overrides"))  # e.g. one replay mode for every method
    from harness.trackers import logger_names

    logger = logger_names(cfg.get("logger"))  # csv first, then tensorboard / wandb
    algorithm_seeds = _plain(suite.get("algorithm_seeds"))  # seeds of some methods instead of suite.seeds
    threads = options.threads
    per_process = suite.get("seeds_per_process", "auto")  # checked by check_options
    on_gpu = runs_on_cuda(options.device)
    jobs = []
    for task_cfg in task_cfgs:
        try:
            task = tasks.get(task_cfg.name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        for algo_cfg in algo_cfgs:
            algo = resolve_algorithm(algo_cfg, task.domain, shared, cli.get("algorithm", {}))
            # What the method's protocol differs in (e.g. RLPD: no pre-training, UTD 20) beats the
            # task's and the suite's protocol; the command line beats everything.
            protocol = OmegaConf.merge(_plain(task_cfg.protocol), _plain(suite.get("protocol")), algo.pop("protocol", {}),
                                       cli.get("task", {}).get("protocol", {}), _plain(cfg.get("protocol")))
            try:
                protocol = Protocol(**check_values(Protocol, OmegaConf.to_container(protocol), "protocol"))
            except TypeError as exc:
                raise ConfigError(f"bad protocol option: {exc}; valid: {', '.join(Protocol.__dataclass_fields__)}") from None
            algo_seeds = [int(s) for s in (seeds if cfg.get("seed") is not None else
                                           algorithm_seeds.get(algo["name"], seeds))]
            k = seeds_per_process(algo["name"], task, protocol, len(algo_seeds), on_gpu) \
                if per_process == "auto" else int(per_process)
            seed_groups = [algo_seeds[i:i + k] for i in range(0, len(algo_seeds), k)]
            if max(map(len, seed_groups)) > 1:
                check_seed_groups(algo["name"], task, k)
            algo["hparams"] = algorithms.base.follow_protocol(algorithms.get(algo["name"]), algo["hparams"], protocol)
            resolved = ResolvedAlgorithm.from_dict(algo)
            for group in seed_groups:
                for seed in group:
                    jobs.append(Job(suite.name, seed, resolved, TaskRef(task.name, task.domain), protocol, threads,
                                    cfg.get("device", "auto"), logger, group if len(group) > 1 else None,
                                    options.compile))
    return jobs


GPU_GROUP_BYTES = 16 * 2**30  # replay memory of one process's seeds on a GPU (any current card holds it)
SEED_OVERHEAD_BYTES = 256 * 2**20  # networks, optimizer states and activations of one seed (CQL's: ~100 MB)


def runs_on_cuda(device: str) -> bool:
    """Whether jobs of `device` (the config's auto | cpu | cuda[:N]) train on a GPU here."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def seeds_per_process(algorithm: str, task, protocol, n_seeds: int, on_gpu: bool) -> int:
    """`seeds_per_process: auto`: one seed per process on the CPU (grouping CQL-family seeds costs
    more than it saves there: docs/many-seeds.md); on a GPU, where one seed leaves it mostly idle,
    every seed of the (method, task) in one process, as many as GPU_GROUP_BYTES of online buffers
    (online_steps rows of obs, next_obs, action and 4 scalars per seed, fp32) plus
    SEED_OVERHEAD_BYTES each hold. Methods written for one seed and image tasks: 1. A function of
    the config only (never of the free memory now), so job ids are the same on every machine."""
    if not on_gpu or not algorithms.get(algorithm).multi_seed or task.image_shape is not None:
        return 1
    per_seed = protocol.online_steps * (2 * task.obs_dim + task.act_dim + 4) * 4 + SEED_OVERHEAD_BYTES
    return max(1, min(n_seeds, GPU_GROUP_BYTES // per_seed))


def check_seed_groups(algorithm: str, task, per_process: int) -> None:
    """Refuse seed groups where they cannot be trained as one batched model."""
    if not algorithms.get(algorithm).multi_seed:
        raise ConfigError(f"algorithm '{algorithm}' trains one seed per process (multi_seed = False), "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")
    if task.image_shape is not None:
        raise ConfigError(f"task '{task.name}' has image observations, which train one seed per process, "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """The jobs that train together, in order: those sharing a `seed_group` (and everything
    else in their config); a job without one is a group of its own."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.seed_group is None:
            groups[job.job_id] = [job]
            continue
        key = json.dumps({k: v for k, v in job.to_dict().items() if k not in ("job_id", "seed")}, sort_keys=True)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def validate_algorithm(algo: dict[str, Any]) -> dict[str, Any]:
    """A method's merged config checked against its schema (the method's Config dataclass,
    ReplayConfig, RewardTransform); returns it complete, every field filled in."""
    name = algo.get("name")
    unknown = sorted(set(algo) - set(ALGORITHM_KEYS))
    try:
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join('algorithm.' + k for k in unknown)}; "
                              f"valid: {', '.join(ALGORITHM_KEYS)}")
        try:
            cls = algorithms.get(name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        hparams = check_values(cls.Config, algo.get("hparams") or {}, "algorithm.hparams")
        try:
            config = algorithms.base.build_config(cls, hparams)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc.args[0] if exc.args else exc).replace(
                f"{cls.Config.__qualname__}.", "algorithm.hparams.")) from None
        replay = ReplayConfig(**check_values(ReplayConfig, algo.get("replay") or {}, "algorithm.replay"))
        reward = RewardTransform(**check_values(RewardTransform, algo.get("reward") or {}, "algorithm.reward"))
        protocol = check_values(Protocol, _plain(algo.get("protocol")), "algorithm.protocol")  # checked whole in expand
    except ConfigError as exc:
        raise ConfigError(f"algorithm '{name}': {exc}") from None
    listed = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 (yaml-safe, as the yamls write them)
    return {"name": name, "replay": asdict(replay), "reward": asdict(reward),
            "hparams": {f: listed(getattr(config, f)) for f in cls.Config.__dataclass_fields__},
            **({"protocol": protocol} if protocol else {})}
