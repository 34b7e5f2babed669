"""Registered hypotheses (a suite's `study:` block, recorded in the store's study.json by the
harness; schema and wording in scoring/study.py): the report's verdicts, and the seed planner.

Each hypothesis reads one statistic of one per-run metric (reports/metrics.py) over the
registered runs, a (seeds x tasks) matrix per method. Its interval is a percentile stratified
bootstrap (seeds resampled within each task, each method independently, as rliable's
StratifiedIndependentBootstrap), vectorized here so that the planner can repeat it thousands of
times. Verdicts:
- holds / fails: every registered run of the hypothesis's methods is done, and the registered
  rule (scoring/study.py: the interval strictly beyond the value, or the estimate reaching it) is
  met / not met;
- not enough runs: some registered run is missing, failed, unfinished or has the metric
  undefined (each is named), or a method has fewer than 2 runs. The estimate and interval of the
  runs there are still shown.

The planner (`python -m reports plan`) estimates, for a study of n seeds per method, the
probability that a hypothesis holds: it draws n seeds per method and task with replacement from
the pilot's per-seed values (the pilot's seeds stand for the population of seeds), applies the
same bootstrap test to each draw, and counts how often it holds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata

from scoring.study import STUDY_FILE, Hypothesis, hypotheses_of, parse_study

VERDICTS_TXT = "verdicts.txt"  # the report folder's verdict lines, as printed
MIN_RUNS = 2  # a bootstrap over fewer seeds has no spread
INFO_LEVEL = 0.95  # the interval shown for a hypothesis that reads the estimate alone


def statistic(h: Hypothesis, xs: list[np.ndarray]) -> np.ndarray:
    """The hypothesis's statistic of (..., seeds, tasks) arrays, one per method in h.methods."""
    if h.statistic == "mean":
        return xs[0].mean(axis=(-2, -1))
    x, y = xs
    if h.statistic == "mean_difference":
        return x.mean(axis=(-2, -1)) - y.mean(axis=(-2, -1))
    nx, ny = x.shape[-2], y.shape[-2]
    lead = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    both = np.concatenate([np.broadcast_to(x, lead + x.shape[-2:]), np.broadcast_to(y, lead + y.shape[-2:])], axis=-2)
    ranks = rankdata(both, axis=-2)  # average ranks: ties count half
    u_y = ranks[..., nx:, :].sum(axis=-2) - ny * (ny + 1) / 2  # pairs with y > x, ties half
    p_less = (u_y / (nx * ny)).mean(axis=-1)  # P(X < Y) per task, averaged over tasks
    return p_less if h.statistic == "p_less" else 1.0 - p_less


def resample(x: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(..., seeds, tasks) -> (..., reps, seeds, tasks): seeds drawn with replacement within each task."""
    n, t = x.shape[-2:]
    idx = rng.integers(0, n, x.shape[:-2] + (reps, n, t))
    return np.take_along_axis(x[..., None, :, :], idx, axis=-2)


def interval(h: Hypothesis, xs: list[np.ndarray], reps: int, rng: np.random.Generator):
    """(estimate, lo, hi) over the leading axes: the percentile bootstrap interval at h.level."""
    level = h.level or INFO_LEVEL
    boot = statistic(h, [resample(x, reps, rng) for x in xs])
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2], axis=-1)
    return statistic(h, xs), lo, hi


def holds(h: Hypothesis, estimate, lo, hi) -> np.ndarray:
    """The registered rule, elementwise (Hypothesis.holds on arrays)."""
    if h.level is None:
        return estimate >= h.value if h.direction == "greater" else estimate <= h.value
    return lo > h.value if h.direction == "greater" else hi < h.value


# -- the study of a store ------------------------------------------------------------------
def read_study(path) -> dict | None:
    """A design: study.json (as the harness records it), or a suite yaml with a `study:` block."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        suite = yaml.safe_load(path.read_text()) or {}
        study = parse_study(suite.get("study"), list(suite.get("algorithms") or []))
        if study is None:
            raise ValueError(f"{path} has no study: block")
        return {"name": suite.get("name", path.stem), "hypotheses": [h.to_dict() for h in study["hypotheses"]],
                "dip_window": study["dip_window"], "tasks": list(suite.get("tasks") or []),
                "seeds": {m: list((suite.get("algorithm_seeds") or {}).get(m, suite.get("seeds") or []))
                          for m in suite.get("algorithms") or []}, "hash": None}
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}); it is the study's registered design") from None


def store_studies(root: Path, suites) -> dict[str, dict]:
    """{suite: design} for the suites of a store (root: a store of suites, or one suite's folder)."""
    out = {}
    for suite in suites:
        for path in (Path(root) / suite / STUDY_FILE, Path(root) / STUDY_FILE):
            design = read_study(path)
            if design is not None and design.get("name") == suite:
                out[suite] = design
                break
    return out


def _plain_task(suite: str, task: str) -> str:
    return task[len(suite) + 1:] if task.startswith(suite + "/") else task


def method_values(per_run: pd.DataFrame, design: dict, h: Hypothesis, method: str):
    """(seeds x tasks) matrix of the metric over the registered runs that are done (tasks in the
    design's order; equal runs per task: each task's lowest seeds), and the registered runs that
    are not, as 'seed N on TASK (why)'."""
    suite = design["name"]
    rows = per_run[per_run["suite"] == suite]
    rows = rows.assign(plain_task=[_plain_task(suite, t) for t in rows["task"]])
    columns, not_done = [], []
    for task in design["tasks"]:
        values = []
        for seed in design["seeds"].get(method, []):
            r = rows[(rows["plain_task"] == task) & (rows["algorithm"] == method) & (rows["seed"] == seed)]
            if r.empty:
                not_done.append(f"seed {seed} on {task} (missing)")
            elif not bool(r["included"].iloc[0]):
                status = str(r["status"].iloc[0])
                reason = "missing" if status == "missing" else str(r["reason"].iloc[0]) or status
                not_done.append(f"seed {seed} on {task} ({reason})")
            elif pd.isna(r[h.metric].iloc[0]):
                not_done.append(f"seed {seed} on {task} ({h.metric} undefined)")
            else:
                values.append(float(r[h.metric].iloc[0]))
        columns.append(values)
    n = min(map(len, columns)) if columns else 0
    return np.array([c[:n] for c in columns], float).T.reshape(n, len(columns)), not_done


def verdicts(per_run: pd.DataFrame, design: dict, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per registered hypothesis: its claim, estimate, interval, verdict, the runs behind
    it and the registered runs that are not done. `per_run` is computed with the design's dip window."""
    rows = []
    for k, h in enumerate(hypotheses_of(design)):
        xs, runs, not_done = [], [], []
        for m in h.methods:
            x, missing = method_values(per_run, design, h, m)
            registered = len(design["seeds"].get(m, [])) * len(design["tasks"])
            xs.append(x)
            runs.append(f"{m} {x.size}/{registered}")
            not_done += [f"{m} {d}" for d in missing]
        if all(x.shape[0] >= MIN_RUNS for x in xs):
            est, lo, hi = (float(v) for v in interval(h, xs, reps, np.random.default_rng([seed, k])))
        else:
            est = float(statistic(h, xs)) if all(x.size for x in xs) else float("nan")
            lo = hi = float("nan")
        if not_done or any(x.shape[0] < MIN_RUNS for x in xs):
            verdict = "not enough runs"
        else:
            verdict = "holds" if h.holds(est, lo, hi) else "fails"
        rows.append({"suite": design["name"], "hypothesis": h.name, "claim": h.claim(),
                     "estimate": est, "lo": lo, "hi": hi, "level": h.level or INFO_LEVEL, "verdict": verdict,
                     "runs": ", ".join(runs), "not_done": "; ".join(not_done)})
    return pd.DataFrame(rows, columns=["suite", "hypothesis", "claim", "estimate", "lo", "hi", "level", "verdict",
                                       "runs", "not_done"])


def verdict_lines(table: pd.DataFrame, design: dict) -> list[str]:
    """The verdicts as the command line prints them."""
    head = f"study '{design['name']}' (design {design.get('hash')})"
    before = (design.get("registered") or {}).get("finished_runs_before")
    if before:
        head += f", registered when {before} of its runs had already finished"
    lines = [head + ":"]
    for r in table.to_dict("records"):
        ci = "" if np.isnan(r["lo"]) else f" [{r['lo']:.2f}, {r['hi']:.2f}]"
        est = "n/a" if np.isnan(r["estimate"]) else f"{r['estimate']:.2f}"
        lines.append(f"  {r['verdict'].upper():<16} {r['hypothesis']}: {r['claim']}: {est}{ci} "
                     f"({r['level']:.0%} CI; runs {r['runs']})")
        if r["not_done"]:
            lines.append(f"  {'':<16} not done: {r['not_done']}")
    return lines


# -- the planner ---------------------------------------------------------------------------
def power(h: Hypothesis, pilot: list[np.ndarray], n: int, sims: int = 400, reps: int = 1000,
          seed: int = 0, chunk: int = 50) -> float:
    """P(the hypothesis holds in a study of n seeds per method), pilot: one (seeds x tasks)
    matrix per method of h; each simulated study draws n seeds per task from the pilot's."""
    rng = np.random.default_rng([seed, n])
    held = 0
    for start in range(0, sims, chunk):
        m = min(chunk, sims - start)
        studies = [np.take_along_axis(np.broadcast_to(x, (m,) + x.shape),
                                      rng.integers(0, x.shape[0], (m, n, x.shape[1])), axis=-2) for x in pilot]
        est, lo, hi = interval(h, studies, reps, rng)
        held += int(holds(h, est, lo, hi).sum())
    return held / sims


def smallest_n(h: Hypothesis, pilot, ns: list[int], powers: list[float], target: float, **kw) -> int | None:
    """The smallest n whose power reaches `target`: the first of `ns` that does, then a bisection
    over the integers below it (power taken as rising with n)."""
    above = [n for n, p in zip(ns, powers) if p >= target]
    if not above:
        return None
    hi = above[0]
    lo = max([n for n in ns if n < hi] + [MIN_RUNS - 1])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power(h, pilot, mid, **kw) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def pilot_values(per_run: pd.DataFrame, h: Hypothesis, tasks: list[str], max_seeds: int | None = None):
    """The pilot's (seeds x tasks) matrix for each method of h: its done runs with the metric
    defined, each task's lowest seeds (the first `max_seeds` when given), equal per task."""
    out = []
    for m in h.methods:
        ok = per_run[(per_run["algorithm"] == m) & per_run["included"].astype(bool) & per_run[h.metric].notna()]
        columns = []
        for task in tasks:
            rows = ok[[_plain_task(s, t) == task for s, t in zip(ok["suite"], ok["task"])]].sort_values("seed")
            columns.append(rows[h.metric].to_numpy(float)[:max_seeds])
        n = min(map(len, columns)) if columns else 0
        if n < MIN_RUNS:
            raise ValueError(f"the pilot has {n} usable run(s) of {m} on {', '.join(tasks)} for {h.name}; "
                             f"the planner needs at least {MIN_RUNS} per method and task")
        out.append(np.stack([c[:n] for c in columns], axis=1))
    return out


def plan(per_run: pd.DataFrame, design: dict, ns: list[int], target: float, sims: int = 400, reps: int = 1000,
         seed: int = 0, max_seeds: int | None = None) -> list[str]:
    """The planner's table: per hypothesis, P(holds) for a study of each n seeds per method and
    task, the smallest n reaching `target`, and the assumptions."""
    kw = {"sims": sims, "reps": reps, "seed": seed}
    header = f"{'hypothesis':<22} {'pilot seeds':<18}" + "".join(f"{'n=' + str(n):>7}" for n in ns) + \
        f"   smallest n for P >= {target:g}"
    lines = [f"study '{design['name']}' (design {design.get('hash') or 'not recorded'}): P(a study of n seeds per method and task "
             f"shows the hypothesis)", header, "-" * len(header)]
    for h in hypotheses_of(design):
        pilot = pilot_values(per_run, h, design["tasks"], max_seeds)
        powers = [power(h, pilot, n, **kw) for n in ns]
        best = smallest_n(h, pilot, ns, powers, target, **kw)
        seeds = ", ".join(f"{m} {x.shape[0]}" for m, x in zip(h.methods, pilot))
        lines.append(f"{h.name:<22} {seeds:<18}" + "".join(f"{p:>7.2f}" for p in powers)
                     + f"   {best if best is not None else f'> {max(ns)}'}")
        lines.append(f"  {h.claim()}")
    lines += [
        "Assumptions:",
        "- the pilot's per-seed values stand for every seed's: a simulated study draws its n seeds per",
        "  method and task with replacement from the pilot's (a pilot of few seeds shows few of the",
        "  values seeds can take: its probabilities are rough, and optimistic when its seeds agree);",
        "- the study runs what the pilot ran (tasks, protocol, dip window "
        f"{design.get('dip_window', 0.25):g}), and every registered run finishes;",
        f"- each simulated study is checked as the report checks it: the registered rule on a percentile "
        f"stratified bootstrap interval ({reps} resamples); {sims} simulated studies per n (the probabilities "
        f"are within about +-{1 / np.sqrt(sims):.2f});",
        "- the smallest n: the first n of the table that reaches the target, refined by bisection below it "
        "(the probability taken as rising with n).",
    ]
    return lines


def read_pilot(path) -> pd.DataFrame:
    """Per-run metrics of a pilot: a store (read and scored as the report does) or a report's runs.csv."""
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        frame = pd.read_csv(path)
        need = {"suite", "task", "algorithm", "seed", "included"}
        if not need <= set(frame.columns):
            raise ValueError(f"{path} lacks the columns {', '.join(sorted(need - set(frame.columns)))} of a report's runs.csv")
        frame["included"] = frame["included"].astype(bool)
        return frame
    return None
