"""Aggregate per-run metrics across tasks with rliable: IQM / mean / median / optimality gap with
stratified-bootstrap 95% CIs, performance profiles, probability of improvement, and
sample-efficiency curves. The only module that imports rliable.

Score matrices are (runs x tasks) per method, checked by `check_score_matrix` before rliable sees
them. rliable needs the same number of runs on every task, and methods must share the task set:
- a task enters the aggregates only if every method has at least one completed run on it;
- each method then keeps, on every task, its n lowest-numbered seeds, n = that method's smallest
  run count over those tasks (subsampling, never padding: no run is counted twice, and which runs
  are kept does not depend on their scores). Every run left out is listed with the reason; the
  per-task tables still use all completed runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rliable import library as rly

AGG_METRICS = ["final_score", "offline_score", "dip", "regret"]
STATISTICS = ["IQM", "Mean", "Median", "Optimality gap"]
CONFIDENCE = 0.95


@dataclass
class Matrices:
    """Per method a (runs, tasks, len(AGG_METRICS)) array, the runs behind it, and the runs left out."""
    tasks: list
    scores: dict
    runs: dict
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)

    def metric(self, name: str) -> dict:
        """{method: (runs x tasks) matrix} of one metric."""
        k = AGG_METRICS.index(name)
        return {alg: m[:, :, k] for alg, m in self.scores.items()}


def check_score_matrix(matrix, n_tasks: int, name: str) -> np.ndarray:
    """Raise a one-line ValueError unless `matrix` is a finite (runs x tasks [x ...]) array."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim < 2 or m.shape[1] != n_tasks or m.shape[0] < 1:
        raise ValueError(f"score matrix for {name} has shape {m.shape}; expected (runs, {n_tasks} tasks[, ...])")
    if not np.isfinite(m).all():
        raise ValueError(f"score matrix for {name} holds {np.size(m) - np.isfinite(m).sum()} non-finite values")
    return m


def build_matrices(metrics: pd.DataFrame) -> Matrices:
    """Equal-runs-per-task score matrices from the included runs (see the module docstring)."""
    ok = metrics[metrics["included"]].copy()
    left_out = []
    bad = ok[AGG_METRICS].isna().any(axis=1)
    for row in ok[bad].to_dict("records"):
        undefined = [m for m in AGG_METRICS if pd.isna(row[m])]
        left_out.append({**row, "reason": f"{', '.join(undefined)} undefined (e.g. no eval in the dip window)"})
    ok = ok[~bad]
    algs = sorted(ok["algorithm"].unique())
    counts = ok.groupby(["task", "algorithm"]).size().unstack(fill_value=0).reindex(columns=algs, fill_value=0)
    tasks = sorted(counts.index[(counts > 0).all(axis=1)])
    for row in ok[~ok["task"].isin(tasks)].to_dict("records"):
        missing = [a for a in algs if counts.loc[row["task"], a] == 0]
        left_out.append({**row, "reason": f"task has no completed run of {', '.join(missing)}"})
    scores, runs = {}, {}
    for alg in algs:
        n = int(counts.loc[tasks, alg].min()) if tasks else 0
        fewest = counts.loc[tasks, alg].idxmin() if tasks else ""
        cols, kept = [], []
        for task in tasks:
            rows = ok[(ok["algorithm"] == alg) & (ok["task"] == task)].sort_values("seed")
            kept.append(rows.iloc[:n])
            cols.append(rows.iloc[:n][AGG_METRICS].to_numpy(float))
            for row in rows.iloc[n:].to_dict("records"):
                left_out.append({**row, "reason": f"{alg} has only {n} runs on {fewest}; kept its {n} "
                                                  f"lowest seeds per task (rliable needs equal runs per task)"})
        if tasks:
            scores[alg] = check_score_matrix(np.stack(cols, axis=1), len(tasks), alg)
            runs[alg] = pd.concat(kept)
    cols = ["suite", "task", "algorithm", "seed", "reason"]
    return Matrices(tasks, scores, runs, pd.DataFrame(left_out, columns=cols)[cols] if left_out
                    else pd.DataFrame(columns=cols))


# Estimators over the first two axes (runs, tasks); trailing axes are kept. They equal
# rliable.metrics.aggregate_{iqm,mean,median,optimality_gap} on 2-D input (tested).
def trimmed_mean(x, axis=0):
    """scipy.stats.trim_mean(x, 0.25, axis) without scipy's per-call overhead (bootstrap loops)."""
    x = np.sort(np.moveaxis(x, axis, 0), axis=0)
    cut = int(0.25 * len(x))
    return x[cut:len(x) - cut].mean(axis=0)


def iqm(x):
    return trimmed_mean(x.reshape((-1,) + x.shape[2:]))


def mean(x):
    return x.mean(axis=(0, 1))


def median(x):
    return np.median(x.mean(axis=0), axis=0)


def optimality_gap(x, gamma=100.0):
    return gamma - np.minimum(x, gamma).mean(axis=(0, 1))


def _seed(seed: int) -> None:
    np.random.seed(seed)  # rliable draws its bootstrap indices from numpy's global generator


def interval_estimates(mats: Matrices, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tidy frame: algorithm, metric, statistic, value, lo, hi (stratified bootstrap, percentile)."""
    n_m = len(AGG_METRICS)

    def func(x):
        return np.stack([iqm(x), mean(x), median(x), optimality_gap(x)]).ravel()

    data = {alg: check_score_matrix(m, len(mats.tasks), alg) for alg, m in mats.scores.items()}
    _seed(seed)
    point, ci = rly.get_interval_estimates(data, func, reps=reps,
                                           confidence_interval_size=CONFIDENCE)
    rows = []
    for alg in data:
        p, c = point[alg].reshape(len(STATISTICS), n_m), ci[alg].reshape(2, len(STATISTICS), n_m)
        for s, stat in enumerate(STATISTICS):
            for k, metric in enumerate(AGG_METRICS):
                rows.append({"algorithm": alg, "metric": metric, "statistic": stat,
                             "value": p[s, k], "lo": c[0, s, k], "hi": c[1, s, k]})
    return pd.DataFrame(rows)


def performance_profiles(mats: Matrices, taus=None, reps: int = 2000, seed: int = 0):
    """Fraction of runs with final score > tau, with CIs: (taus, {alg: profile}, {alg: (2, taus)})."""
    taus = np.linspace(0, 100, 101) if taus is None else np.asarray(taus, float)
    data = {a: check_score_matrix(m, len(mats.tasks), a) for a, m in mats.metric("final_score").items()}
    _seed(seed)
    profiles, cis = rly.create_performance_profile(
        data, taus, reps=reps, custom_profile_func=lambda s, t: (s[..., None] > t).mean(axis=(0, 1)),
        confidence_interval_size=CONFIDENCE)
    return taus, profiles, cis


def prob_improvement(x, y):
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks (rliable's Mann-Whitney form)."""
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return np.mean(gt + 0.5 * eq)


def probability_of_improvement(mats: Matrices, reps: int = 2000, seed: int = 0, metric: str = "final_score",
                               lower_is_better: bool = False) -> pd.DataFrame:
    """P(X improves on Y) on one metric for every ordered pair, with stratified bootstrap CIs:
    P(X > Y), or P(X < Y) for a metric where lower is better (the dip, regret)."""
    sign = -1.0 if lower_is_better else 1.0
    values = {alg: sign * m for alg, m in mats.metric(metric).items()}
    algs = list(values)
    pairs = {f"{a}|{b}": [values[a], values[b]] for i, a in enumerate(algs) for b in algs[i + 1:]}
    rows = []
    if pairs:
        _seed(seed)
        point, ci = rly.get_interval_estimates(pairs, prob_improvement, reps=reps,
                                               confidence_interval_size=CONFIDENCE)
        for key in pairs:
            a, b = key.split("|")
            p, (lo, hi) = float(point[key]), np.ravel(ci[key])
            rows.append({"metric": metric, "x": a, "y": b, "value": p, "lo": lo, "hi": hi})
            rows.append({"metric": metric, "x": b, "y": a, "value": 1 - p, "lo": 1 - hi, "hi": 1 - lo})
    return pd.DataFrame(rows, columns=["metric", "x", "y", "value", "lo", "hi"])


GRID = np.linspace(0.0, 1.0, 51)
KEYS = ["suite", "task", "algorithm", "seed"]


def run_curve(run: dict, evals: pd.DataFrame, grid=GRID) -> np.ndarray:
    """A run's score on a grid of fractions of its online budget; 0 is J0 (end of pre-training)."""
    on = evals[evals["phase"] == "online"].sort_values("env_steps")
    budget = run["online_steps"] if not pd.isna(run["online_steps"]) else on["env_steps"].max()
    x = np.concatenate([[0.0], on["env_steps"].to_numpy(float) / budget])
    score = on["normalized_score"].to_numpy(float)
    j0 = run["offline_score"] if not pd.isna(run["offline_score"]) else score[0]
    return np.interp(grid, x, np.concatenate([[j0], score]))


def all_run_curves(metrics: pd.DataFrame, evals: pd.DataFrame) -> dict:
    """{(suite, task, algorithm, seed): grid curve} of every included run."""
    by_run = dict(tuple(evals.groupby(KEYS)))
    return {tuple(r[k] for k in KEYS): run_curve(r, by_run[tuple(r[k] for k in KEYS)])
            for r in metrics[metrics["included"]].to_dict("records")}


def curve_matrices(mats: Matrices, curves: dict) -> dict:
    """{alg: (runs, tasks, grid)} curves of the runs in the aggregate matrices."""
    out = {}
    for alg, runs in mats.runs.items():
        n = len(runs) // len(mats.tasks)
        curves_ = np.stack([curves[tuple(r[k] for k in KEYS)] for r in runs.to_dict("records")])  # task-major
        out[alg] = curves_.reshape(len(mats.tasks), n, len(GRID)).transpose(1, 0, 2)
    return out


def sample_efficiency(mats: Matrices, curves: dict, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """IQM and mean score over all tasks at each grid fraction, with stratified bootstrap CIs
    (the mean keeps the collapsing runs that the IQM trims). `curves`: from all_run_curves."""
    data = {a: check_score_matrix(c, len(mats.tasks), a) for a, c in curve_matrices(mats, curves).items()}
    frames = []
    for name, stat in (("IQM", iqm), ("Mean", mean)):
        _seed(seed)
        point, ci = rly.get_interval_estimates(data, stat, reps=reps, confidence_interval_size=CONFIDENCE)
        frames += [pd.DataFrame({"algorithm": a, "statistic": name, "frac": GRID, "score": point[a],
                                 "lo": ci[a][0], "hi": ci[a][1]}) for a in data]
    return pd.concat(frames, ignore_index=True)


def bootstrap_ci(values: np.ndarray, stat, reps: int = 2000, seed: int = 0):
    """Percentile bootstrap CI over the first axis (seeds) of `values` for `stat(x, axis=1)`."""
    values = np.asarray(values, float)
    if len(values) < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan
    idx = np.random.default_rng(seed).integers(0, len(values), (reps, len(values)))
    boot = stat(values[idx], axis=1)
    alpha = (1 - CONFIDENCE) / 2
    return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)


def stratified_mean_ci(groups, reps: int = 2000, seed: int = 0):
    """Percentile bootstrap CI of the mean over tasks of per-task means, seeds resampled within
    each task (rliable's stratified bootstrap, which also allows a different seed count per
    task). `groups`: one (seeds, ...) array per task; a task with one seed enters as it is."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for values in groups:
        values = np.asarray(values, float)
        idx = rng.integers(0, len(values), (reps, len(values)))
        total = total + values[idx].mean(axis=1)
    boot = total / len(groups)
    alpha = (1 - CONFIDENCE) / 2
    return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)


def per_task_curves(metrics: pd.DataFrame, curves: dict, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (task, algorithm), IQM over seeds at each grid fraction, all completed runs, with a
    percentile bootstrap over seeds (one task: a stratified bootstrap is a plain one)."""
    ok = metrics[metrics["included"]]
    frames = []
    for (task, alg), runs in ok.groupby(["task", "algorithm"]):
        task_curves = np.stack([curves[tuple(r[k] for k in KEYS)] for r in runs.to_dict("records")])
        lo, hi = bootstrap_ci(task_curves, trimmed_mean, reps, seed)
        budget = runs["online_steps"].max() if runs["online_steps"].notna().any() else runs["last_env_steps"].max()
        frames.append(pd.DataFrame({"task": task, "algorithm": alg, "frac": GRID, "env_steps": GRID * budget,
                                    "iqm": trimmed_mean(task_curves), "lo": lo, "hi": hi}))
    return pd.concat(frames, ignore_index=True)
