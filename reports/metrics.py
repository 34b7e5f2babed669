"""Per-run fine-tuning metrics (offline score, final score, regret, unlearning dip, recovery).

Definitions (scores are normalized, 0-100; "online evals" are the evals.csv rows with phase online):
- offline score J0: the last offline eval; final score: the last online eval.
- cumulative regret (Cal-QL): mean over online evals of 1 - score / 100.
- failed-episode fraction (CORL's regret): 1 - mean success of the online training episodes
  (episodes.csv); only for goal tasks (the run's goal flag: config task.goal, else the summary's
  `goal` from the task's `goal_reaching`; without one, any success > 0 in the run), NaN otherwise.
- unlearning dip: max(0, J0 - min J_t) over the online evals with env_steps <= window x the
  run's online budget (protocol.online_steps; the last eval's env_steps if absent). Default
  window 0.25 (`--dip-window`). When no eval lies in the window (evals sparser than the window),
  the first online eval stands in, as in the harness's closing table. NaN when J0 is unknown
  or there is no online eval.
- relative dip: dip / J0 (NaN when J0 == 0).
- steps to recover: the env_steps of the first online eval with J_t >= J0; NaN and
  `recovered = False` (censored at the run's last eval) when no eval reaches J0.
The early-window rule (`early_min_score`) lives in `scoring/`, which the runner uses for
the summary's `early_min_score`: one rule, and no pandas in a training job.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scoring import DEFAULT_DIP_WINDOW, early_min_score  # noqa: F401  (the summary's rule, shared)


def unlearning_dip(offline_score: float, env_steps: np.ndarray, scores: np.ndarray, online_steps: int,
                   window: float = 0.25) -> float:
    """max(0, J0 - min J_t) over online evals with env_steps <= window * online_steps
    (the first online eval alone if none lies in the window)."""
    if np.isnan(offline_score):
        return float("nan")
    low = early_min_score(env_steps, scores, online_steps, window)
    return float("nan") if np.isnan(low) else float(max(0.0, offline_score - low))


def steps_to_recover(offline_score: float, env_steps, scores) -> float:
    """env_steps of the first online eval scoring >= J0; NaN if none does (censored)."""
    env_steps = np.asarray(env_steps, dtype=float)
    reached = np.asarray(scores, dtype=float) >= offline_score
    return float(env_steps[reached.argmax()]) if reached.any() else float("nan")


def cumulative_regret(scores) -> float:
    """Cal-QL's cumulative regret: mean of 1 - score / 100 over the fine-tuning evals."""
    scores = np.asarray(scores, dtype=float)
    return float(np.mean(1.0 - scores / 100.0)) if scores.size else float("nan")


def is_goal_task(goal_flag, success) -> bool:
    """The run's goal flag (config task.goal, else the summary's `goal`: the task's
    `goal_reaching`); without one (older stores), whether anything ever succeeded."""
    if goal_flag is not None and not (isinstance(goal_flag, float) and np.isnan(goal_flag)):
        return bool(goal_flag)
    return bool(np.nansum(np.asarray(success, dtype=float)) > 0)


def run_metrics(run: dict, evals: pd.DataFrame, window: float = DEFAULT_DIP_WINDOW) -> dict:
    """All metrics of one run from its evals rows and its `runs` row (episodes summary)."""
    evals = evals.sort_values(["step", "env_steps"], kind="stable")
    off = evals[evals["phase"] == "offline"]
    on = evals[evals["phase"] == "online"]
    j0 = float(off["normalized_score"].iloc[-1]) if len(off) else float("nan")
    env, score = on["env_steps"].to_numpy(float), on["normalized_score"].to_numpy(float)
    budget = run.get("online_steps")
    if budget is None or np.isnan(budget):
        budget = env.max()
    dip = unlearning_dip(j0, env, score, budget, window)
    recover = steps_to_recover(j0, env, score)
    fail = float("nan")
    if run.get("episodes", 0) and is_goal_task(run.get("goal"), on.get("success", [])):
        fail = 1.0 - float(run["episode_success"])
    return {
        "offline_score": j0,
        "final_score": float(score[-1]),
        "regret": cumulative_regret(score),
        "failed_episodes": fail,
        "dip": dip,
        "relative_dip": dip / j0 if j0 != 0 else float("nan"),
        "steps_to_recover": recover,
        "recovered": not np.isnan(recover),
        "last_env_steps": float(env[-1]),
    }


def all_run_metrics(store, window: float = DEFAULT_DIP_WINDOW) -> pd.DataFrame:
    """The store's `runs` frame with metric columns filled for included runs."""
    keys = ["suite", "task", "algorithm", "seed"]
    evals = dict(tuple(store.evals.groupby(keys))) if len(store.evals) else {}
    rows = []
    for run in store.runs.to_dict("records"):
        key = tuple(run[k] for k in keys)
        if run["included"]:
            run.update(run_metrics(run, evals[key], window))
        rows.append(run)
    return pd.DataFrame(rows)


METRIC_COLUMNS = ["offline_score", "final_score", "regret", "failed_episodes", "dip",
                  "relative_dip", "steps_to_recover"]


def task_means(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and run count of each metric per (domain, task, algorithm), included runs only."""
    ok = metrics[metrics["included"]]
    grouped = ok.groupby(["domain", "task", "algorithm"])[METRIC_COLUMNS]
    out = grouped.agg(["mean", "std", "count"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["recovered_frac"] = ok.groupby(["domain", "task", "algorithm"])["recovered"].mean()
    return out.reset_index()


def domain_averages(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, algorithm): mean over tasks of the per-task mean of each metric."""
    per_task = task_means(metrics)
    cols = [f"{m}_mean" for m in METRIC_COLUMNS]
    out = per_task.groupby(["domain", "algorithm"])[cols].mean()
    out["tasks"] = per_task.groupby(["domain", "algorithm"])["task"].nunique()
    return out.reset_index()
