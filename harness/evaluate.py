"""Evaluation: n deterministic-policy episodes in a fresh-seeded env, scored by the task."""
from __future__ import annotations

import numpy as np


def run_episode(env, act, seed: int | None = None, last_infos: list | None = None) -> tuple[float, bool, int]:
    """Play one episode with `act(obs) -> action`; returns (return, ever succeeded, length);
    the final step's info is appended to `last_infos` when given."""
    obs, info = env.reset(seed=seed)
    total, success, length, done = 0.0, bool(info.get("success", False)), 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total += float(reward)
        success |= bool(info.get("success", False))
        length += 1
        done = terminated or truncated
    if last_infos is not None:
        last_infos.append(info)
    return total, success, length


def evaluate(algorithm, env, task, episodes: int, seed: int, check_action=None) -> dict[str, float]:
    """Mean raw return, mean normalized score and success rate over `episodes` episodes.
    `check_action(action) -> action` sees every action before env.step (e.g. refuses NaN)."""
    infos: list[dict] = []
    check = check_action or (lambda a: a)
    results = [run_episode(env, lambda o: check(algorithm.act(o, deterministic=True)), seed + i, infos)
               for i in range(episodes)]
    returns = np.array([r for r, _, _ in results])
    return {"return": float(returns.mean()),
            "normalized_score": float(np.mean([task.episode_score(r, i) for r, i in zip(returns, infos)])),
            "success": float(np.mean([s for _, s, _ in results]))}
