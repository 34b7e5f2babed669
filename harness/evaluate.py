"""Evaluation: n deterministic-policy episodes per seed, each seed in its own fresh-seeded env
(the seeds of a group step their envs in lockstep, one batched policy call per step; a method
with action chunks is asked once per chunk, see `harness.openloop`), scored by the task."""
from __future__ import annotations

import numpy as np

from harness.openloop import OpenLoop


def run_episodes(envs: list, act, seeds: list[int], active: list[bool], check_action=None) -> list[tuple | None]:
    """One episode in each active env at once, env k reset with seeds[k]; `act(obs (K, *obs),
    running (K,)) -> (K, A)` sees every env's latest observation (a finished or inactive env's
    last one, `running` False; its action is discarded). `check_action(k, action) -> bool` sees
    env k's action before env.step (e.g. refuses NaN); False stops that env (its result None).
    Returns per env (return, ever succeeded, length, last info) or None."""
    obs, results, running = [None] * len(envs), [None] * len(envs), list(active)
    for k in np.flatnonzero(active):
        obs[k], info = envs[k].reset(seed=seeds[k])
        results[k] = [0.0, bool(info.get("success", False)), 0, info]
    filler = next(o for o in obs if o is not None)
    obs = [filler if o is None else o for o in obs]
    while any(running):
        actions = act(np.stack(obs), running)
        for k in np.flatnonzero(running):
            if check_action is not None and not check_action(k, actions[k]):
                results[k], running[k] = None, False
                continue
            obs[k], reward, terminated, truncated, info = envs[k].step(actions[k])
            r = results[k]
            r[0] += float(reward)
            r[1] |= bool(info.get("success", False))
            r[2] += 1
            r[3] = info
            running[k] = not (terminated or truncated)
    return [None if r is None else tuple(r) for r in results]


def evaluate_seeds(algorithm, envs: list, task, episodes: int, seeds: list[int],
                   active: list[bool] | None = None, check_action=None) -> list[dict[str, float] | None]:
    """Per seed k of `algorithm` (envs[k], episode i reset with seeds[k] + i): mean raw return,
    mean normalized score and success rate over `episodes` episodes of the deterministic
    policy; None for seeds not active, or stopped by `check_action` (see `run_episodes`)."""
    active = list([True] * len(envs) if active is None else active)
    per_env: list[list] = [[] for _ in envs]
    for i in range(episodes):
        results = run_episodes(envs, OpenLoop(algorithm, len(envs), deterministic=True), [s + i for s in seeds],
                               active, check_action)
        for k, r in enumerate(results):
            if r is not None:
                per_env[k].append(r)
            else:
                active[k] = False
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


def evaluate(algorithm, env, task, episodes: int, seed: int, check_action=None) -> dict[str, float]:
    """`evaluate_seeds` for an algorithm of one seed. `check_action(action) -> action` sees every
    action before env.step (e.g. raises on NaN)."""
    check = None if check_action is None else (lambda k, a: check_action(a) is not None)
    return evaluate_seeds(algorithm, [env], task, episodes, [seed], check_action=check)[0]
