"""Per-task and aggregate tables (CORL style: "offline -> final", mean ± std over seeds, 95% CI),
rendered to Markdown, LaTeX (booktabs) and HTML from one neutral table description."""
from __future__ import annotations

import html as html_lib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.aggregate import bootstrap_ci


@dataclass
class Cell:
    """Text in three parts; `main` is bolded when `bold` (the best value of the row)."""
    pre: str = ""
    main: str = ""
    post: str = ""
    bold: bool = False


@dataclass
class Table:
    title: str
    header: list
    rows: list  # each: [label (str), Cell, Cell, ...]
    note: str = ""


def _fmt(x, digits=1):
    return "–" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _mark_best(cells, values, higher_is_better=True):
    vals = np.array([np.nan if v is None else v for v in values], float)
    if np.isfinite(vals).any():
        best = np.nanmax(vals) if higher_is_better else np.nanmin(vals)
        for cell, v in zip(cells, vals):
            cell.bold = bool(np.isfinite(v) and np.isclose(v, best))
    return cells


def _task_order(metrics):
    ok = metrics[metrics["included"]]
    return ok[["domain", "task"]].drop_duplicates().sort_values(["domain", "task"]).itertuples(index=False)


def score_table(metrics: pd.DataFrame, reps: int = 2000, seed: int = 0) -> Table:
    """Per task: J0 mean ± std -> final mean ± std [95% CI of the mean final], best final bold;
    then per-domain and overall averages (means over tasks of per-task means)."""
    ok = metrics[metrics["included"]]
    algs = sorted(ok["algorithm"].unique())
    rows, per_task = [], {}
    for domain, task in _task_order(metrics):
        cells, finals = [], []
        for alg in algs:
            r = ok[(ok["task"] == task) & (ok["algorithm"] == alg)]
            if r.empty:
                cells.append(Cell(main="–")); finals.append(None)
                continue
            f = r["final_score"].to_numpy(float)
            lo, hi = bootstrap_ci(f[:, None], lambda x, axis: x.mean(axis=axis), reps, seed)
            j0 = r["offline_score"]
            cells.append(Cell(pre=f"{_fmt(j0.mean())} ± {_fmt(j0.std())} → ",
                              main=f"{_fmt(f.mean())} ± {_fmt(f.std(ddof=1) if len(f) > 1 else np.nan)}",
                              post=f" [{_fmt(lo[0])}, {_fmt(hi[0])}] (n={len(f)})"))
            finals.append(f.mean())
            per_task[(domain, task, alg)] = (j0.mean(), f.mean())
        rows.append([task] + _mark_best(cells, finals))
    domains = sorted({d for d, _, _ in per_task})
    for label, keep in [(f"{d} average", [d]) for d in domains] + [("total average", domains)]:
        cells, finals = [], []
        for alg in algs:
            v = [per_task[k] for k in per_task if k[0] in keep and k[2] == alg]
            j0, f = (np.mean([a for a, _ in v]), np.mean([b for _, b in v])) if v else (np.nan, np.nan)
            cells.append(Cell(pre=f"{_fmt(j0)} → ", main=_fmt(f)))
            finals.append(f)
        rows.append([label] + _mark_best(cells, finals))
    return Table("Normalized score: offline → final", ["task"] + algs, rows,
                 "offline (last offline eval) → final (last online eval): mean ± std over seeds; "
                 "[95% bootstrap CI of the mean final score] (n = runs); best final score per row in bold.")


def metric_table(metrics: pd.DataFrame, column: str, title: str, higher_is_better: bool,
                 digits: int = 2, note: str = "") -> Table:
    """Per task mean ± std over seeds of one metric, plus domain and overall averages."""
    ok = metrics[metrics["included"]]
    algs = sorted(ok["algorithm"].unique())
    means = ok.groupby(["domain", "task", "algorithm"])[column].agg(["mean", "std", "count"])
    rows = []
    for domain, task in _task_order(metrics):
        cells, vals = [], []
        for alg in algs:
            if (domain, task, alg) in means.index and means.loc[(domain, task, alg), "count"] > 0:
                m = means.loc[(domain, task, alg)]
                cells.append(Cell(main=f"{_fmt(m['mean'], digits)} ± {_fmt(m['std'], digits)}"))
                vals.append(m["mean"])
            else:
                cells.append(Cell(main="–")); vals.append(None)
        rows.append([task] + _mark_best(cells, vals, higher_is_better))
    task_mean = means["mean"].reset_index()
    for label, sel in [(f"{d} average", task_mean["domain"] == d) for d in sorted(task_mean["domain"].unique())] \
            + [("total average", task_mean["domain"].notna())]:
        avg = task_mean[sel].groupby("algorithm")["mean"].mean()
        vals = [avg.get(a, np.nan) for a in algs]
        rows.append([label] + _mark_best([Cell(main=_fmt(v, digits)) for v in vals], vals, higher_is_better))
    return Table(title, ["task"] + algs, rows, note)


def recovery_table(metrics: pd.DataFrame) -> Table:
    """Per task: median env steps to recover J0 over the runs that recovered, and how many did."""
    ok = metrics[metrics["included"]]
    algs = sorted(ok["algorithm"].unique())
    rows = []
    for domain, task in _task_order(metrics):
        cells = []
        for alg in algs:
            r = ok[(ok["task"] == task) & (ok["algorithm"] == alg)]
            rec = r[r["recovered"].astype(bool)]
            med = rec["steps_to_recover"].median() if len(rec) else np.nan
            cells.append(Cell(main="never" if not len(rec) else f"{med:,.0f}",
                              post=f" ({len(rec)}/{len(r)} recovered)") if len(r) else Cell(main="–"))
        rows.append([task] + cells)
    return Table("Env steps to recover the offline score", ["task"] + algs, rows,
                 "median over the runs that recovered (first online eval with score >= J0); runs that "
                 "never did are censored at their last eval and counted in the denominator.")


def calibration_table(metrics: pd.DataFrame, reps: int = 2000, seed: int = 0) -> Table:
    """Per task: the learned policy's Q against the data's Monte-Carlo return at the end of
    pre-training, mean over seeds, and their difference with a 95% bootstrap CI."""
    ok = metrics[metrics["included"] & metrics["policy_value_end"].notna()]
    algs = sorted(ok["algorithm"].unique())
    rows = []
    for domain, task in _task_order(ok):
        cells = []
        for alg in algs:
            r = ok[(ok["task"] == task) & (ok["algorithm"] == alg)]
            if r.empty:
                cells.append(Cell(main="–"))
                continue
            gap = (r["policy_value_end"] - r["mc_return_end"]).to_numpy(float)
            lo, hi = bootstrap_ci(gap[:, None], lambda x, axis: x.mean(axis=axis), reps, seed)
            cells.append(Cell(pre=f"{_fmt(r['policy_value_end'].mean())} vs {_fmt(r['mc_return_end'].mean())}: ",
                              main=f"{gap.mean():+.1f}", post=f" [{_fmt(lo[0])}, {_fmt(hi[0])}] (n={len(r)})"))
        rows.append([task] + cells)
    return Table("Calibration at the end of pre-training: Q of the learned policy vs the data's return",
                 ["task"] + algs, rows,
                 "Q(s, pi(s)) vs the Monte-Carlo return of the batch's trajectories (batch means over the last "
                 "20% of pre-training, mean over seeds, each method's own reward scale): their difference "
                 "[95% bootstrap CI]; below 0 the values underestimate the data's return.")


def per_seed_table(metrics: pd.DataFrame, column: str, title: str, digits: int = 0) -> Table:
    """Per (task, method): the metric of every run, in seed order."""
    ok = metrics[metrics["included"]]
    rows = []
    for domain, task in _task_order(metrics):
        for alg in sorted(ok.loc[ok["task"] == task, "algorithm"].unique()):
            r = ok[(ok["task"] == task) & (ok["algorithm"] == alg)].sort_values("seed")
            values = ", ".join(_fmt(v, digits) for v in r[column])
            rows.append([task, alg, Cell(main=values, post=f" (seeds {r['seed'].min()}-{r['seed'].max()})")])
    return Table(title, ["task", "method", "per seed"], rows)


def aggregate_table(intervals: pd.DataFrame, metric: str, title: str, statistics, digits=1) -> Table:
    """Rows: statistics; columns: methods; cells: value [95% CI]."""
    algs = sorted(intervals["algorithm"].unique())
    sub = intervals[intervals["metric"] == metric].set_index(["statistic", "algorithm"])
    rows = []
    for stat in statistics:
        vals = [sub.loc[(stat, a), "value"] for a in algs]
        cells = [Cell(main=_fmt(sub.loc[(stat, a), "value"], digits),
                      post=f" [{_fmt(sub.loc[(stat, a), 'lo'], digits)}, {_fmt(sub.loc[(stat, a), 'hi'], digits)}]")
                 for a in algs]
        higher = (metric in ("final_score", "offline_score")) != (stat == "Optimality gap")
        rows.append([stat] + _mark_best(cells, vals, higher))
    return Table(title, ["statistic"] + algs, rows, "point estimate [95% stratified bootstrap CI] (rliable)")


def poi_table(poi: pd.DataFrame, what: str = "final score, P(row > column)") -> Table:
    """P(row method improves on column method) on one metric, with 95% CIs."""
    algs = sorted(set(poi["x"]) | set(poi["y"]))
    idx = poi.set_index(["x", "y"])
    rows = []
    for a in algs:
        cells = [Cell(main="–") if a == b else
                 Cell(main=f"{idx.loc[(a, b), 'value']:.2f}",
                      post=f" [{idx.loc[(a, b), 'lo']:.2f}, {idx.loc[(a, b), 'hi']:.2f}]")
                 for b in algs]
        rows.append([a] + cells)
    return Table(f"Probability of improvement: {what}", ["X \\ Y"] + algs, rows,
                 "Mann-Whitney probability per task averaged over tasks [95% stratified bootstrap CI]")


def agreement_table(agreed: pd.DataFrame) -> Table:
    """Per compared method x task and reference: our final score beside the published one."""
    rows = []
    for a in agreed.sort_values(["task", "algorithm", "source", "method"]).to_dict("records"):
        flag = a["verdict"] == "DISAGREE"
        timing = a.get("success_timing", "n/a")  # OGBench's, both sides (the match rule): shown with the task
        rows.append([a["task"] if timing == "n/a" else f"{a['task']} ({timing})", a["algorithm"],
                     f"{a['source']} {a['method']} ({a['repository']}@{str(a['commit'])[:7]})",
                     Cell(pre=f"{_fmt(a['ours_j0'])} → ", main=_fmt(a["ours_final"]),
                          post=f" [{_fmt(a['ours_lo'])}, {_fmt(a['ours_hi'])}] (n={a['ours_n']})"),
                     Cell(pre=f"{_fmt(a['ref_j0'])} → ", main=_fmt(a["ref_final"]),
                          post=f" [{_fmt(a['ref_lo'])}, {_fmt(a['ref_hi'])}] ({a['ref_n']})"
                               + (f"; {a['ref_notes']}" if a.get("ref_notes") else "")),
                     Cell(main=a["verdict"], bold=flag)])
    return Table("Agreement with published results", ["task", "method", "reference", "ours: J0 → final",
                                                      "published: J0 → final", "verdict"], rows,
                 "final score (last online evaluation), mean over seeds [95% percentile bootstrap CI] "
                 "(n = seeds; published CI as given where only means are published); DISAGREE: each mean "
                 "outside the other's interval. Only references whose protocol matches are compared; "
                 "OGBench tasks show their success timing (pre / post), the same on both sides.")


# ---- renderers ----
def to_markdown(t: Table) -> str:
    def cell(c):
        if isinstance(c, str):
            return c
        main = f"**{c.main}**" if c.bold else c.main
        return f"{c.pre}{main}{c.post}"
    lines = [f"### {t.title}", "", "| " + " | ".join(t.header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(t.header) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}")
    for a, b in [("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"), ("±", "$\\pm$"),
                 ("→", "$\\to$"), ("–", "--"), (">=", "$\\geq$")]:
        s = s.replace(a, b)
    return s


def to_latex(t: Table) -> str:
    def cell(c):
        if isinstance(c, str):
            return _tex(c)
        main = f"\\textbf{{{_tex(c.main)}}}" if c.bold else _tex(c.main)
        post = f"{{\\scriptsize {_tex(c.post)}}}" if c.post else ""
        return f"{_tex(c.pre)}{main}{post}"
    lines = ["\\begin{table}[t]", "\\centering", "\\scriptsize",
             f"\\caption{{{_tex(t.title)}. {_tex(t.note)}}}",
             "\\begin{tabular}{l" + "c" * (len(t.header) - 1) + "}", "\\toprule",
             " & ".join(_tex(h) for h in t.header) + " \\\\", "\\midrule"]
    in_averages = False
    for row in t.rows:
        if str(row[0]).endswith("average") and not in_averages:
            lines.append("\\midrule")
            in_averages = True
        lines.append(" & ".join(cell(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    def cell(c):
        if isinstance(c, str):
            return html_lib.escape(c)
        main = html_lib.escape(c.main)
        main = f"<b>{main}</b>" if c.bold else main
        return f"{html_lib.escape(c.pre)}{main}<small>{html_lib.escape(c.post)}</small>"
    head = "".join(f"<th>{html_lib.escape(h)}</th>" for h in t.header)
    body = "".join("<tr" + (' class="avg"' if str(r[0]).endswith("average") else "") + ">"
                   + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    note = f'<p class="note">{html_lib.escape(t.note)}</p>' if t.note else ""
    return f"<h3>{html_lib.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
