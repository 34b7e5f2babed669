"""Write synthetic results stores (same layout as the harness writes) for tests and benchmarks.

`write_run` writes one run directory from explicit rows; `write_store` fills a whole
methods x tasks x seeds store from a simple parametric learning-curve model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# The 11 Cal-QL fine-tuning tasks: (name, domain, online env steps, episode horizon).
CALQL_TASKS = [
    ("antmaze-large-diverse-v2", "antmaze", 1_000_000, 1000),
    ("antmaze-large-play-v2", "antmaze", 1_000_000, 1000),
    ("antmaze-medium-diverse-v2", "antmaze", 1_000_000, 1000),
    ("antmaze-medium-play-v2", "antmaze", 1_000_000, 1000),
    ("kitchen-partial-v0", "kitchen", 1_000_000, 1000),
    ("kitchen-mixed-v0", "kitchen", 1_000_000, 1000),
    ("kitchen-complete-v0", "kitchen", 4_000_000, 1000),
    ("pen-binary-v0", "adroit", 200_000, 100),
    ("door-binary-v0", "adroit", 1_000_000, 200),
    ("relocate-binary-v0", "adroit", 1_000_000, 200),
    ("visual-pick-and-place", "visual", 1_000_000, 50),
]
METHODS = ["calql", "cql", "iql", "awac", "td3bc"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_run(
    run_dir: Path,
    *,
    config: dict | None = None,
    evals: pd.DataFrame | None = None,
    episodes: pd.DataFrame | None = None,
    train: pd.DataFrame | None = None,
    summary: dict | None = None,
) -> Path:
    """Write one run directory; any part left as None is not written (a partial run)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        _atomic_write(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    for name, frame in (("evals", evals), ("episodes", episodes), ("train", train)):
        if frame is not None:
            _atomic_write(run_dir / f"{name}.csv", frame.to_csv(index=False))
    if summary is not None:
        _atomic_write(run_dir / "summary.json", json.dumps(summary, indent=1))
    return run_dir


def make_config(suite, task, domain, algorithm, seed, *, offline_steps, online_steps,
                eval_every, offline_eval_every, eval_episodes=20, chunk=None) -> dict:
    """A resolved job config with the keys the reports read."""
    return {
        "suite": suite,
        "job_id": f"{algorithm}-{task}-{seed}",
        "seed": seed,
        "algorithm": {"name": algorithm, **({"hparams": {"chunk": chunk}} if chunk else {})},
        "task": {"name": task, "domain": domain},
        "protocol": {"offline_steps": offline_steps, "online_steps": online_steps,
                     "eval_every": eval_every, "offline_eval_every": offline_eval_every,
                     "eval_episodes": eval_episodes},
    }


def make_evals(offline_steps, offline_every, online_scores, online_every, offline_curve) -> pd.DataFrame:
    """evals.csv rows: offline rows (env_steps 0) then online rows every `online_every` env steps."""
    off_steps = np.arange(offline_every, offline_steps + 1, offline_every)
    off = pd.DataFrame({"phase": "offline", "step": off_steps, "env_steps": 0,
                        "normalized_score": np.asarray(offline_curve, float)})
    env = online_every * np.arange(1, len(online_scores) + 1)
    on = pd.DataFrame({"phase": "online", "step": offline_steps + env, "env_steps": env,
                       "normalized_score": np.asarray(online_scores, float)})
    frame = pd.concat([off, on], ignore_index=True)
    frame["return"] = frame["normalized_score"] / 100.0
    frame["success"] = frame["normalized_score"] / 100.0
    return frame[["phase", "step", "env_steps", "return", "normalized_score", "success"]]


@dataclass
class CurveModel:
    """Truth for one (method, task): J0, final score, dip depth and where it bottoms out."""
    offline: float
    final: float
    dip: float
    dip_at: float = 0.08  # fraction of the online budget where the dip is deepest
    noise: float = 3.0  # eval-to-eval noise (score points)
    seed_sd: float = 5.0  # seed-to-seed spread of J0 and final


def curve(model: CurveModel, frac: np.ndarray, j0: float, final: float) -> np.ndarray:
    """Mean online score at fractions `frac` of the budget: dip then saturating rise."""
    rise = j0 + (final - j0) * (1 - np.exp(-frac / 0.2))
    bump = model.dip * (frac / model.dip_at) * np.exp(1 - frac / model.dip_at)
    return rise - bump


def write_store(
    root: Path,
    methods=METHODS,
    tasks=CALQL_TASKS,
    seeds=range(10),
    suite: str = "calql",
    online_every: int = 2000,
    offline_steps: int = 1_000_000,
    offline_every: int = 50_000,
    models: dict | None = None,
    rng_seed: int = 0,
    episodes: bool = True,
    eval_episodes: int = 20,
    chunks: dict | None = None,
) -> Path:
    """Write a done-status store; `models[(method, task)]` overrides the default CurveModel;
    `chunks[method]` is written as the method's `chunk` hyperparameter."""
    rng = np.random.default_rng(rng_seed)
    root = Path(root)
    for mi, method in enumerate(methods):
        for ti, (task, domain, online_steps, horizon) in enumerate(tasks):
            model = (models or {}).get((method, task)) or CurveModel(
                offline=20 + 50 * ((mi * 7 + ti * 3) % 11) / 10,
                final=40 + 55 * ((mi * 5 + ti) % 9) / 8,
                dip=5 + 3 * mi,
            )
            n_online = online_steps // online_every
            frac = np.arange(1, n_online + 1) / n_online
            for seed in seeds:
                j0 = float(np.clip(model.offline + model.seed_sd * rng.standard_normal(), 0, 100))
                final = float(np.clip(model.final + model.seed_sd * rng.standard_normal(), 0, 100))
                online = curve(model, frac, j0, final) + model.noise * rng.standard_normal(n_online)
                online = np.clip(online, 0, 100)
                n_off = offline_steps // offline_every
                offline = np.clip(j0 * np.linspace(0.1, 1, n_off)
                                  + model.noise * rng.standard_normal(n_off), 0, 100)
                offline[-1] = j0
                ev = make_evals(offline_steps, offline_every, online, online_every, offline)
                ep = None
                if episodes:
                    ends = np.arange(horizon, online_steps + 1, horizon)
                    p = np.interp(ends / online_steps, frac, online) / 100
                    succ = (rng.random(len(ends)) < p).astype(int)
                    ep = pd.DataFrame({"env_steps": ends, "return": succ.astype(float),
                                       "normalized_score": 100.0 * succ, "success": succ,
                                       "length": horizon})
                cfg = make_config(suite, task, domain, method, seed, offline_steps=offline_steps,
                                  online_steps=online_steps, eval_every=online_every,
                                  offline_eval_every=offline_every, eval_episodes=eval_episodes,
                                  chunk=(chunks or {}).get(method))
                summary = {"status": "done", "job_id": cfg["job_id"], "suite": suite, "task": task,
                           "domain": domain, "goal": True, "algorithm": method, "seed": seed,
                           "offline_score": j0, "final_score": float(online[-1]),
                           "wall_time_s": 3600.0, "updates_per_s": 100.0}
                write_run(root / suite / task / method / f"seed{seed}", config=cfg, evals=ev,
                          episodes=ep, summary=summary)
    return root


# The OGBench suite's state tasks with their protocol (harness/conf/task/*.yaml: 1M offline
# updates evaluated every 100K, 1M online env steps evaluated every 20K, 50 episodes).
OGBENCH_TASKS = [(name, "ogbench", 1_000_000, 500) for name in
                 ("cube-single-play-singletask", "cube-double-play-singletask", "scene-play-singletask",
                  "puzzle-3x3-play-singletask")]
OGBENCH_PROTOCOL = {"online_every": 20_000, "offline_steps": 1_000_000, "offline_every": 100_000,
                    "eval_episodes": 50}


def write_final_scores_store(root: Path, finals: dict, offline: float = 50.0, suite: str = "s",
                             domain: str = "antmaze", n_online: int = 4, online_every: int = 100) -> Path:
    """A store with known answers: `finals[(method, task)]` = final score per seed. Each run's
    online evals ramp linearly from `offline` to its final score; J0 = `offline`."""
    root = Path(root)
    for (method, task), scores in finals.items():
        for seed, final in enumerate(np.asarray(scores, float)):
            online = np.linspace(offline, final, n_online + 1)[1:]
            ev = make_evals(1000, 500, online, online_every, [offline / 2, offline])
            cfg = make_config(suite, task, domain, method, seed, offline_steps=1000,
                              online_steps=n_online * online_every, eval_every=online_every,
                              offline_eval_every=500)
            write_run(root / suite / task / method / f"seed{seed}", config=cfg, evals=ev,
                      summary={"status": "done", "algorithm": method, "task": task, "seed": seed})
    return root
