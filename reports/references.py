"""Our runs next to the published results (reports/reference/): for each method x task that a
reference matches by the protocol rule (reports.reference.match), our final score (mean over
seeds, 95% percentile bootstrap CI) beside the published one (with its CI: bootstrapped the same
way from per-seed data, or as published for sources that give only means and CIs), flagged
`disagree` when each mean lies outside the other's interval; and the published fine-tuning curve
drawn under ours, per task and averaged over the matched tasks (stratified bootstrap bands).
Scores are normalized 0-100; the final score is the last online evaluation on both sides (at
offline + online steps), J0 the evaluation at the end of pre-training."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reports.aggregate import GRID, KEYS, bootstrap_ci, stratified_mean_ci
from reports.reference.match import match_store


def _mean(x, axis):
    return x.mean(axis=axis)


def _interval(values: np.ndarray, reps: int, seed: int):
    """mean, lo, hi of the mean over seeds (NaN interval for one seed)."""
    lo, hi = bootstrap_ci(values[:, None], _mean, reps, seed)
    return float(values.mean()), float(lo[0]), float(hi[0])


def reference_rows(refs: pd.DataFrame, match: dict) -> pd.DataFrame:
    """The published normalized-score rows behind one match row."""
    sel = ((refs["source"] == match["source"]) & (refs["method"] == match["method"])
           & (refs["task"] == match["ref_task"]) & (refs["file"] == match["file"])
           & (refs["metric"] == "normalized_score"))
    return refs[sel]


def published_final(rows: pd.DataFrame, reps: int, seed: int) -> dict:
    """Published final score (at offline + online steps) and J0: mean, CI, seed count."""
    end = rows["offline_steps"].iloc[0] + rows["online_steps"].iloc[0]
    final = rows[rows["step"] == end]
    j0 = rows[rows["step"] == rows["offline_steps"].iloc[0]]["score"]
    per_seed = final[final["seed"] != "aggregate"]
    if len(per_seed):
        mean, lo, hi = _interval(per_seed["score"].to_numpy(float), reps, seed)
        n = str(len(per_seed))
    elif len(final):
        r = final.iloc[0]
        mean, lo, hi, n = float(r["score"]), float(r["ci_low"]), float(r["ci_high"]), "published CI"
    else:
        mean = lo = hi = np.nan
        n = "no evaluation at the final step"
    notes = "; ".join(sorted({n for n in rows["notes"] if n}))
    return {"ref_final": mean, "ref_lo": lo, "ref_hi": hi, "ref_n": n,
            "ref_j0": float(j0.mean()) if len(j0) else np.nan, "ref_notes": notes}


def disagree(a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float) -> bool:
    """Each mean outside the other's interval (an unknown interval counts as the point itself)."""
    a_lo, a_hi = (a, a) if np.isnan(a_lo) else (a_lo, a_hi)
    b_lo, b_hi = (b, b) if np.isnan(b_lo) else (b_lo, b_hi)
    return bool(not (b_lo <= a <= b_hi) and not (a_lo <= b <= a_hi))


def agreement(per_run: pd.DataFrame, refs: pd.DataFrame, matches: pd.DataFrame, reps: int = 2000,
              seed: int = 0) -> pd.DataFrame:
    """One row per comparable (our method x task, reference): our and the published final score."""
    ok = per_run[per_run["included"]]
    rows = []
    for m in matches[matches["comparable"]].to_dict("records"):
        ours = ok[(ok["suite"] == m["suite"]) & (ok["task"] == m["task"]) & (ok["algorithm"] == m["algorithm"])]
        if ours.empty:
            continue
        mean, lo, hi = _interval(ours["final_score"].to_numpy(float), reps, seed)
        pub = published_final(reference_rows(refs, m), reps, seed)
        verdict = "no published final" if np.isnan(pub["ref_final"]) else \
            "DISAGREE" if disagree(mean, lo, hi, pub["ref_final"], pub["ref_lo"], pub["ref_hi"]) else "agree"
        rows.append({"suite": m["suite"], "task": m["task"], "success_timing": m["success_timing"],
                     "algorithm": m["algorithm"], "source": m["source"],
                     "method": m["method"], "ref_task": m["ref_task"], "repository": m["repository"],
                     "commit": m["commit"], "file": m["file"], "ours_j0": float(ours["offline_score"].mean()),
                     "ours_final": mean, "ours_lo": lo, "ours_hi": hi, "ours_n": len(ours), **pub,
                     "verdict": verdict})
    return pd.DataFrame(rows)


def _published_grid(rows: pd.DataFrame, grid=GRID) -> tuple[np.ndarray, bool]:
    """Published curve on our grid of fractions of the online budget (0 = end of pre-training):
    (seeds, grid) per-seed values, or (3, grid) mean / ci_low / ci_high of an aggregate row set."""
    off, budget = rows["offline_steps"].iloc[0], rows["online_steps"].iloc[0]
    online = rows[rows["step"] >= off]
    frac = (online["step"] - off) / budget
    per_seed = online[online["seed"] != "aggregate"]
    if len(per_seed):
        table = per_seed.assign(frac=frac).pivot_table(index="seed", columns="frac", values="score")
        x = table.columns.to_numpy(float)
        return np.stack([np.interp(grid, x, r) for r in table.to_numpy(float)]), True
    agg = online.assign(frac=frac).sort_values("frac")
    x = agg["frac"].to_numpy(float)
    return np.stack([np.interp(grid, x, agg[c].to_numpy(float)) for c in ("score", "ci_low", "ci_high")]), False


def comparison_curves(per_run: pd.DataFrame, curves: dict, refs: pd.DataFrame, agreed: pd.DataFrame,
                      reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tidy curves for the figure: per compared task and in the aggregate over each pair's tasks,
    ours and the published mean with 95% bands. Columns: panel, algorithm, reference, side
    (ours / published), frac, env_steps, mean, lo, hi."""
    ok = per_run[per_run["included"]]
    frames, pooled = [], {}
    for a in agreed.to_dict("records"):
        runs = ok[(ok["suite"] == a["suite"]) & (ok["task"] == a["task"]) & (ok["algorithm"] == a["algorithm"])]
        mine = np.stack([curves[tuple(r[k] for k in KEYS)] for r in runs.to_dict("records")])
        rows = reference_rows(refs, {**a, "ref_task": a["ref_task"]})
        theirs, per_seed = _published_grid(rows)
        budget = float(rows["online_steps"].iloc[0])
        label = f"{a['source']} {a['method']}"
        pair = pooled.setdefault((a["algorithm"], label), {"ours": [], "published": [], "per_seed": per_seed,
                                                           "budgets": set()})
        pair["ours"].append(mine)
        pair["published"].append(theirs)
        pair["per_seed"] &= per_seed
        pair["budgets"].add(budget)
        lo, hi = bootstrap_ci(mine, _mean, reps, seed)
        frames.append(_curve(a["task"], a["algorithm"], label, "ours", budget, mine.mean(0), lo, hi))
        if per_seed:
            lo, hi = bootstrap_ci(theirs, _mean, reps, seed)
            frames.append(_curve(a["task"], a["algorithm"], label, "published", budget, theirs.mean(0), lo, hi))
        else:
            frames.append(_curve(a["task"], a["algorithm"], label, "published", budget, *theirs))
    for (alg, label), pair in pooled.items():
        budget = pair["budgets"].pop() if len(pair["budgets"]) == 1 else np.nan
        panel = f"aggregate ({len(pair['ours'])} task{'s' * (len(pair['ours']) > 1)})"
        lo, hi = stratified_mean_ci(pair["ours"], reps, seed)
        frames.append(_curve(panel, alg, label, "ours", budget, np.mean([c.mean(0) for c in pair["ours"]], 0), lo, hi))
        if pair["per_seed"]:
            lo, hi = stratified_mean_ci(pair["published"], reps, seed)
            mean = np.mean([c.mean(0) for c in pair["published"]], 0)
        else:  # means and CIs of separate tasks do not combine into a CI: the mean alone
            mean, lo, hi = np.mean([c[0] for c in pair["published"]], 0), np.nan, np.nan
        frames.append(_curve(panel, alg, label, "published", budget, mean, lo, hi))
    cols = ["panel", "algorithm", "reference", "side", "frac", "env_steps", "mean", "lo", "hi"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _curve(panel, alg, label, side, budget, mean, lo, hi) -> pd.DataFrame:
    return pd.DataFrame({"panel": panel, "algorithm": alg, "reference": label, "side": side, "frac": GRID,
                         "env_steps": GRID * budget, "mean": mean, "lo": lo, "hi": hi})


__all__ = ["agreement", "comparison_curves", "disagree", "match_store", "published_final"]
