"""From a composed config to jobs: one per (algorithm, task, seed), each fully resolved,
validated before any work starts, and named by a hash of its resolved config."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import algorithms
import tasks

CONF_DIR = Path(__file__).parent / "conf"


class ConfigError(ValueError):
    """A bad name or value in the configuration (one line: what and how to fix it)."""


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
        for name in ("offline_steps", "online_steps", "checkpoint_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"protocol.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("utd", "eval_every_offline", "eval_every", "eval_episodes", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"protocol.{name} must be > 0, got {getattr(self, name)}")
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
        if self.mode not in ("mix", "append", "online"):
            raise ConfigError(f"replay.mode must be 'mix', 'append' or 'online', got '{self.mode}'")
        if not 0.0 <= self.mixing_ratio <= 1.0:
            raise ConfigError(f"replay.mixing_ratio must be in [0, 1], got {self.mixing_ratio}")
        if self.batch_size <= 0:
            raise ConfigError(f"replay.batch_size must be > 0, got {self.batch_size}")


@dataclass(frozen=True)
class RewardTransform:
    scale: float = 1.0  # r' = scale * r + shift, applied to offline and online rewards
    shift: float = 0.0

    def __call__(self, r):
        return self.scale * r + self.shift


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
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        path = package_yamls(group).get(name, path)
    if not path.exists():
        raise ConfigError(f"unknown {group} '{name}'; choose one of: {', '.join(group_names(group))}")
    return OmegaConf.load(path)


def resolve_algorithm(algo_cfg: DictConfig | dict, domain: str) -> dict[str, Any]:
    """The method's yaml with its per-domain overrides merged in (`domains.<domain>`)."""
    cfg = OmegaConf.to_container(algo_cfg, resolve=True) if isinstance(algo_cfg, DictConfig) else dict(algo_cfg)
    domains = cfg.pop("domains", None) or {}
    merged = OmegaConf.merge(cfg, domains.get(domain, {}))
    return OmegaConf.to_container(merged, resolve=True)


def _plain(x) -> dict[str, Any]:
    """A plain dict without the keys left at null (null means: not overridden here)."""
    d = OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else (x or {})
    return {k: v for k, v in d.items() if v is not None}


# Protocol fields added after results existed: at these values they leave a job's id (and so its
# finished run directory) as it was.
ID_NEUTRAL_PROTOCOL = {"warmup_steps": 0, "warmup_policy": "policy"}


def job_id(job: dict[str, Any]) -> str:
    payload = {k: v for k, v in job.items() if k not in ("job_id", "device", "logger")}  # where it runs and is watched
    if "protocol" in payload:
        payload["protocol"] = {k: v for k, v in payload["protocol"].items()
                               if k not in ID_NEUTRAL_PROTOCOL or v != ID_NEUTRAL_PROTOCOL[k]}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def expand(cfg: DictConfig) -> list[dict[str, Any]]:
    """All jobs of the composed config, each validated: algorithm x task x seed."""
    suite = cfg.suite
    algo_cfgs = [cfg.algorithm] if cfg.get("algorithm") else [load_group("algorithm", n) for n in suite.algorithms]
    task_cfgs = [cfg.task] if cfg.get("task") else [load_group("task", n) for n in suite.tasks]
    seeds = [cfg.seed] if cfg.get("seed") is not None else list(suite.seeds)
    from harness.trackers import logger_names

    logger = logger_names(cfg.get("logger"))  # csv first, then tensorboard / wandb
    algorithm_seeds = _plain(suite.get("algorithm_seeds"))  # seeds of some methods instead of suite.seeds
    jobs = []
    for task_cfg in task_cfgs:
        try:
            task = tasks.get(task_cfg.name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        for algo_cfg in algo_cfgs:
            algo = resolve_algorithm(algo_cfg, task.domain)
            shared = _plain(suite.get("algorithm_overrides"))  # e.g. one replay mode for every method
            algo = OmegaConf.to_container(OmegaConf.merge(algo, shared), resolve=True) if shared else algo
            validate_algorithm(algo)
            # What the method's protocol differs in (e.g. RLPD: no pre-training, UTD 20) beats the
            # task's and the suite's protocol; the command line beats everything.
            protocol = OmegaConf.merge(_plain(task_cfg.protocol), _plain(suite.get("protocol")),
                                       _plain(algo.pop("protocol", None)), _plain(cfg.get("protocol")))
            try:
                protocol = Protocol(**OmegaConf.to_container(protocol))
            except TypeError as exc:
                raise ConfigError(f"bad protocol option: {exc}; valid: {', '.join(Protocol.__dataclass_fields__)}") from None
            for seed in seeds if cfg.get("seed") is not None else algorithm_seeds.get(algo["name"], seeds):
                if int(seed) < 0:
                    raise ConfigError(f"seed must be >= 0, got {seed}")
                job = {"suite": suite.name, "seed": int(seed), "algorithm": algo,
                       "task": {"name": task.name, "domain": task.domain}, "protocol": asdict(protocol),
                       "device": cfg.get("device", "auto"), "logger": logger}
                job["job_id"] = job_id(job)
                jobs.append(job)
    return jobs


def validate_algorithm(algo: dict[str, Any]) -> None:
    try:
        cls = algorithms.get(algo["name"])
        algorithms.base.build_config(cls, algo.get("hparams", {}))
        ReplayConfig(**algo.get("replay", {}))
        RewardTransform(**algo.get("reward", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"algorithm '{algo.get('name')}': {exc.args[0] if exc.args else exc}") from None


def run_dir(runs_dir: str | Path, job: dict[str, Any]) -> Path:
    return Path(runs_dir) / job["suite"] / job["task"]["name"] / job["algorithm"]["name"] / f"seed{job['seed']}"
