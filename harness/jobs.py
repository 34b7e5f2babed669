"""From a composed config to jobs: one per (algorithm, task, seed), each fully resolved,
validated before any work starts, and named by a hash of its resolved config; and the groups of
jobs that train in one process (`seeds_per_process` seeds of one method and task)."""
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
    eval_every_offline: int = 10_000  # gradient steps between offline evaluations
    eval_every: int = 2_000  # environment steps between online evaluations
    eval_episodes: int = 20  # deterministic-policy episodes per evaluation
    log_every: int = 1_000  # gradient steps between rows of train.csv
    checkpoint_every: int = 0  # environment/gradient steps between checkpoints (0: none)

    def __post_init__(self):
        for name in ("offline_steps", "online_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"protocol.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("utd", "eval_every_offline", "eval_every", "eval_episodes", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"protocol.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ReplayConfig:
    mode: str = "mix"  # "mix": fixed offline fraction per batch; "append": one combined buffer
    mixing_ratio: float = 0.5  # offline fraction of each fine-tuning batch in "mix" mode
    batch_size: int = 256

    def __post_init__(self):
        if self.mode not in ("mix", "append"):
            raise ConfigError(f"replay.mode must be 'mix' or 'append', got '{self.mode}'")
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


def job_id(job: dict[str, Any]) -> str:
    payload = {k: v for k, v in job.items() if k not in ("job_id", "device")}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def expand(cfg: DictConfig) -> list[dict[str, Any]]:
    """All jobs of the composed config, each validated: algorithm x task x seed. With
    `suite.seeds_per_process` K > 1 the seeds of each (algorithm, task) are split, in order, into
    groups of up to K trained together in one process; each job of a group of more than one
    records the group's seeds (`seed_group`), so its id says how the seed was trained."""
    suite = cfg.suite
    algo_cfgs = [cfg.algorithm] if cfg.get("algorithm") else [load_group("algorithm", n) for n in suite.algorithms]
    task_cfgs = [cfg.task] if cfg.get("task") else [load_group("task", n) for n in suite.tasks]
    seeds = [cfg.seed] if cfg.get("seed") is not None else list(suite.seeds)
    per_process = suite.get("seeds_per_process", 1)
    if not isinstance(per_process, int) or isinstance(per_process, bool) or per_process < 1:
        raise ConfigError(f"suite.seeds_per_process must be an integer >= 1, got {per_process!r}")
    seed_groups = [[int(s) for s in seeds[i:i + per_process]] for i in range(0, len(seeds), per_process)]
    jobs = []
    for task_cfg in task_cfgs:
        try:
            task = tasks.get(task_cfg.name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        protocol = OmegaConf.merge(task_cfg.protocol, _plain(suite.get("protocol")), _plain(cfg.get("protocol")))
        try:
            protocol = Protocol(**OmegaConf.to_container(protocol))
        except TypeError as exc:
            raise ConfigError(f"bad protocol option: {exc}; valid: {', '.join(Protocol.__dataclass_fields__)}") from None
        for algo_cfg in algo_cfgs:
            algo = resolve_algorithm(algo_cfg, task.domain)
            shared = _plain(suite.get("algorithm_overrides"))  # e.g. one replay mode for every method
            algo = OmegaConf.to_container(OmegaConf.merge(algo, shared), resolve=True) if shared else algo
            validate_algorithm(algo)
            if max(map(len, seed_groups)) > 1:
                check_seed_groups(algo["name"], task, per_process)
            for group in seed_groups:
                for seed in group:
                    if seed < 0:
                        raise ConfigError(f"seed must be >= 0, got {seed}")
                    job = {"suite": suite.name, "seed": seed, "algorithm": algo,
                           "task": {"name": task.name, "domain": task.domain}, "protocol": asdict(protocol),
                           "device": cfg.get("device", "auto")}
                    if len(group) > 1:
                        job["seed_group"] = group
                    job["job_id"] = job_id(job)
                    jobs.append(job)
    return jobs


def check_seed_groups(algorithm: str, task, per_process: int) -> None:
    """Refuse seed groups where they cannot be trained as one batched model."""
    if not algorithms.get(algorithm).multi_seed:
        raise ConfigError(f"algorithm '{algorithm}' trains one seed per process (multi_seed = False), "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")
    if task.image_shape is not None:
        raise ConfigError(f"task '{task.name}' has image observations, which train one seed per process, "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")


def group_jobs(jobs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The jobs that train together, in order: those sharing a `seed_group` (and everything
    else in their config); a job without one is a group of its own."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if "seed_group" not in job:
            groups[job["job_id"]] = [job]
            continue
        key = json.dumps({k: v for k, v in job.items() if k not in ("job_id", "seed")}, sort_keys=True)
        groups.setdefault(key, []).append(job)
    return list(groups.values())



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
