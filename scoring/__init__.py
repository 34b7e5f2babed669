"""Rules on an eval curve shared by the harness (a run's summary.json) and the reports, kept in
neither so that neither imports the other: numpy only, no pandas in a training job, and the
reports compute what the summary records."""
from __future__ import annotations

import numpy as np

DEFAULT_DIP_WINDOW = 0.25  # fraction of the online budget in which the unlearning dip is sought


def early_min_score(env_steps, scores, online_steps: int, window: float = DEFAULT_DIP_WINDOW) -> float:
    """Lowest score among the online evals with env_steps <= window * online_steps (the first
    online eval alone if none lies in the window); NaN without online evals."""
    env_steps = np.asarray(env_steps, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return float("nan")
    early = scores[env_steps <= window * online_steps]
    if early.size == 0:
        early = scores[np.argsort(env_steps, kind="stable")[:1]]
    return float(np.nanmin(early))
