"""Evaluation: n deterministic-policy episodes per seed, each seed in its own fresh-seeded env
(the seeds of a group step their envs in lockstep, one batched policy call per step), scored by
the task."""
from __future__ import annotations

import numpy as np


def run_episodes(envs: list, act, seeds: list[int], active: list[bool]) -> list[tuple | None]:
    """One episode in each active env at once, env k reset with seeds[k]; `act(obs (K, *obs))
    -> (K, A)` sees every env's latest observation (a finished or inactive env's last one; its
    action is discarded). Returns per env (return, ever succeeded, length, last info) or None."""
    obs, results, running = [None] * len(envs), [None] * len(envs), list(active)
    for k in np.flatnonzero(active):
        obs[k], info = envs[k].reset(seed=seeds[k])
        results[k] = [0.0, bool(info.get("success", False)), 0, info]
    filler = next(o for o in obs if o is not None)
    obs = [filler if o is None else o for o in obs]
    while any(running):
        actions = act(np.stack(obs))
        for k in np.flatnonzero(running):
            obs[k], reward, terminated, truncated, info = envs[k].step(actions[k])
            r = results[k]
            r[0] += float(reward)
            r[1] |= bool(info.get("success", False))
            r[2] += 1
            r[3] = info
            running[k] = not (terminated or truncated)
    return [None if r is None else tuple(r) for r in results]


def evaluate_seeds(algorithm, envs: list, task, episodes: int, seeds: list[int],
                   active: list[bool] | None = None) -> list[dict[str, float] | None]:
    """Per seed k of `algorithm` (envs[k], episode i reset with seeds[k] + i): mean raw return,
    mean normalized score and success rate over `episodes` episodes of the deterministic
    policy; None for seeds not active."""
    active = [True] * len(envs) if active is None else active
    per_env: list[list] = [[] for _ in envs]
    for i in range(episodes):
        results = run_episodes(envs, lambda o: algorithm.act(o, deterministic=True), [s + i for s in seeds], active)
        for k, r in enumerate(results):
            if r is not None:
                per_env[k].append(r)
    out = []
    for k, results in enumerate(per_env):
        if not active[k]:
            out.append(None)
            continue
        returns = np.array([r for r, _, _, _ in results])
        out.append({"return": float(returns.mean()),
                    "normalized_score": float(np.mean([task.episode_score(r, info) for r, _, _, info in results])),
                    "success": float(np.mean([s for _, s, _, _ in results]))})
    return out


def evaluate(algorithm, env, task, episodes: int, seed: int) -> dict[str, float]:
    """`evaluate_seeds` for an algorithm of one seed."""
    return evaluate_seeds(algorithm, [env], task, episodes, [seed])[0]
