"""Evaluation: n deterministic-policy episodes in a fresh-seeded env, scored by the task."""
from __future__ import annotations

import numpy as np


def run_episode(env, act, seed: int | None = None) -> tuple[float, bool, int]:
    """Play one episode with `act(obs) -> action`; returns (return, ever succeeded, length)."""
    obs, info = env.reset(seed=seed)
    total, success, length, done = 0.0, bool(info.get("success", False)), 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total += float(reward)
        success |= bool(info.get("success", False))
        length += 1
        done = terminated or truncated
    return total, success, length


def evaluate(algorithm, env, task, episodes: int, seed: int) -> dict[str, float]:
    """Mean raw return, mean normalized score and success rate over `episodes` episodes."""
    results = [run_episode(env, lambda o: algorithm.act(o, deterministic=True), seed + i)
               for i in range(episodes)]
    returns = np.array([r for r, _, _ in results])
    return {"return": float(returns.mean()),
            "normalized_score": float(np.mean([task.normalize(r) for r in returns])),
            "success": float(np.mean([s for _, s, _ in results]))}
