"""Paper-style figures (PNG for the page, PDF for papers) of the aggregates, performance profiles,
probability of improvement and sample-efficiency curves. Uses matplotlib's Agg backend."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reports.files import save_figure  # noqa: E402

# Okabe-Ito: distinguishable with colour-blindness and in greyscale print.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.6,
    "savefig.dpi": 150, "pdf.fonttype": 42, "font.family": "DejaVu Sans",
}
PRETTY = {"final_score": "final score", "offline_score": "offline score", "dip": "unlearning dip",
          "regret": "cumulative regret"}


def colors(algs) -> dict:
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(sorted(algs))}


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        save_figure(fig, p, bbox_inches="tight")
    plt.close(fig)
    return paths


def interval_plot(intervals: pd.DataFrame, panels, out_dir: Path, name: str) -> list[Path]:
    """One panel per (metric, statistic): a CI bar and point per method (rliable's layout)."""
    algs = sorted(intervals["algorithm"].unique())
    col = colors(algs)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 0.35 * len(algs) + 0.9))
        for ax, (metric, stat) in zip(np.atleast_1d(axes), panels):
            sub = intervals[(intervals["metric"] == metric) & (intervals["statistic"] == stat)].set_index("algorithm")
            for i, a in enumerate(algs):
                lo, hi, v = sub.loc[a, ["lo", "hi", "value"]]
                ax.barh(i, hi - lo, left=lo, height=0.6, color=col[a], alpha=0.75)
                ax.plot([v, v], [i - 0.3, i + 0.3], color="black", lw=1.2)
            ax.set_yticks(range(len(algs)), algs if ax is np.atleast_1d(axes)[0] else [])
            ax.set_title(f"{stat}", fontsize=9)
            ax.set_xlabel(PRETTY.get(metric, metric))
            ax.grid(axis="y", visible=False)
            ax.invert_yaxis()
        fig.tight_layout()
        return _save(fig, out_dir, name)


def profile_plot(taus, profiles, cis, out_dir: Path) -> list[Path]:
    col = colors(profiles)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        for a in sorted(profiles):
            ax.plot(taus, profiles[a], color=col[a], label=a)
            ax.fill_between(taus, cis[a][0], cis[a][1], color=col[a], alpha=0.2, lw=0)
        ax.set_xlabel(r"normalized final score $\tau$")
        ax.set_ylabel(r"fraction of runs with score $> \tau$")
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False)
        fig.tight_layout()
        return _save(fig, out_dir, "performance_profile")


def poi_plot(poi: pd.DataFrame, out_dir: Path, title: str = "P(X > Y), final score",
             name: str = "probability_of_improvement") -> list[Path]:
    """Heatmap of P(row improves on column) with the value written in each cell."""
    algs = sorted(set(poi["x"]) | set(poi["y"]))
    mat = np.full((len(algs), len(algs)), np.nan)
    for r in poi.itertuples():
        mat[algs.index(r.x), algs.index(r.y)] = r.value
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(0.7 * len(algs) + 1.8, 0.6 * len(algs) + 1.0))
        im = ax.imshow(mat, cmap="RdBu", vmin=0, vmax=1)
        for i in range(len(algs)):
            for j in range(len(algs)):
                if i != j:
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if abs(mat[i, j] - 0.5) > 0.3 else "black")
        ax.set_xticks(range(len(algs)), algs, rotation=30, ha="right")
        ax.set_yticks(range(len(algs)), algs)
        ax.set_xlabel("Y")
        ax.set_ylabel("X")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        return _save(fig, out_dir, name)


def _curve_axis(ax, frame, col, x, xlabel, y="iqm"):
    for a, g in frame.groupby("algorithm"):
        ax.plot(g[x], g[y], color=col[a], label=a)
        ax.fill_between(g[x], g["lo"], g["hi"], color=col[a], alpha=0.2, lw=0)
    ax.axvline(0, color="0.3", ls="--", lw=0.9)
    ax.set_xlabel(xlabel)


def sample_efficiency_plot(curve: pd.DataFrame, budget, out_dir: Path) -> list[Path]:
    """IQM and mean over all tasks vs fine-tuning env steps (fraction of the budget when tasks
    differ), one panel each."""
    col = colors(curve["algorithm"].unique())
    curve = curve.copy()
    if budget:
        curve["x"], xlabel = curve["frac"] * budget, "fine-tuning env steps"
    else:
        curve["x"], xlabel = curve["frac"], "fraction of each task's fine-tuning budget"
    stats = list(dict.fromkeys(curve["statistic"]))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3.0), sharey=True, squeeze=False)
        for ax, stat in zip(axes.flat, stats):
            _curve_axis(ax, curve[curve["statistic"] == stat], col, "x", xlabel, y="score")
            ax.text(0.01, 0.02, " end of pre-training", transform=ax.transAxes, fontsize=7, color="0.3")
            ax.set_ylabel(f"{stat} normalized score")
        axes.flat[0].legend(frameon=False, ncol=2)
        fig.tight_layout()
        return _save(fig, out_dir, "sample_efficiency")


def calibration_plot(metrics: pd.DataFrame, train: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per task, left: Q of the learned policy against the data's Monte-Carlo return at the end
    of pre-training, one point per run (on the diagonal: calibrated); right: the mean over seeds
    of both during training (solid: Q(s, pi(s)); dashed: MC return), dashed line = end of pre-training."""
    ok = metrics[metrics["included"] & metrics["policy_value_end"].notna()]
    tasks = sorted(ok["task"].unique())
    col = colors(metrics["algorithm"].unique())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(tasks), 2, figsize=(8.4, 3.0 * len(tasks)), squeeze=False)
        for (ax_end, ax_t), task in zip(axes, tasks):
            sub = ok[ok["task"] == task]
            for alg, g in sub.groupby("algorithm"):
                ax_end.scatter(g["mc_return_end"], g["policy_value_end"], color=col[alg], s=14, alpha=0.8, label=alg)
            lo = min(sub["mc_return_end"].min(), sub["policy_value_end"].min())
            hi = max(sub["mc_return_end"].max(), sub["policy_value_end"].max())
            ax_end.plot([lo, hi], [lo, hi], color="0.4", ls=":", lw=1)
            ax_end.set_xlabel("Monte-Carlo return of the data")
            ax_end.set_ylabel("Q(s, pi(s))")
            ax_end.set_title(f"{task}: end of pre-training", fontsize=8)
            rows = train[(train["task"] == task) & train["included"].astype(bool)] if train is not None and len(train) else None
            if rows is not None and len(rows):
                means = rows.groupby(["algorithm", "step"])[["policy_value", "mc_return"]].mean().reset_index()
                for alg, g in means.groupby("algorithm"):
                    ax_t.plot(g["step"], g["policy_value"], color=col[alg], label=alg)
                    ax_t.plot(g["step"], g["mc_return"], color=col[alg], ls="--", lw=1)
                offline = rows[rows["phase"] == "offline"]["step"]
                if len(offline):
                    ax_t.axvline(offline.max(), color="0.3", ls="--", lw=0.9)
            ax_t.set_xlabel("gradient updates")
            ax_t.set_ylabel("batch mean (mean over seeds)")
            ax_t.set_title("solid: Q(s, pi(s)); dashed: Monte-Carlo return", fontsize=8)
        axes[0, 0].legend(frameon=False, fontsize=7)
        fig.tight_layout()
        return _save(fig, out_dir, "calibration")


def per_task_plot(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Small multiples: IQM over seeds per task with bootstrap bands; dashed line = end of pre-training."""
    tasks = sorted(curves["task"].unique())
    col = colors(curves["algorithm"].unique())
    ncol = min(4, len(tasks))
    nrow = int(np.ceil(len(tasks) / ncol))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.1 * nrow + 0.4), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            _curve_axis(ax, curves[curves["task"] == task], col, "env_steps", "env steps")
            ax.set_title(task, fontsize=8)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        for ax in axes.flat[len(tasks):]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("normalized score")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return _save(fig, out_dir, "curves_per_task")


def reference_plot(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per compared task and in the aggregate: the published mean (dashed, light band) drawn
    under ours (solid, band), both with 95% bootstrap bands; x = fine-tuning env steps (0: the
    end of pre-training)."""
    panels = list(dict.fromkeys(sorted(p for p in curves["panel"].unique() if not p.startswith("aggregate"))
                                + sorted(p for p in curves["panel"].unique() if p.startswith("aggregate"))))
    pairs = sorted(set(zip(curves["algorithm"], curves["reference"])))
    col = {pair: PALETTE[i % len(PALETTE)] for i, pair in enumerate(pairs)}
    ncol = min(4, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.8 * ncol, 2.3 * nrow + 0.5), squeeze=False)
        for ax, panel in zip(axes.flat, panels):
            sub = curves[curves["panel"] == panel]
            x_col = "env_steps" if sub["env_steps"].notna().all() else "frac"
            for (alg, ref), g in sub.groupby(["algorithm", "reference"]):
                c = col[(alg, ref)]
                pub, ours = g[g["side"] == "published"], g[g["side"] == "ours"]
                ax.fill_between(pub[x_col], pub["lo"], pub["hi"], color=c, alpha=0.10, lw=0, zorder=1)
                ax.plot(pub[x_col], pub["mean"], color=c, ls="--", lw=1.3, alpha=0.9, zorder=2,
                        label=f"{ref} (published)")
                ax.fill_between(ours[x_col], ours["lo"], ours["hi"], color=c, alpha=0.25, lw=0, zorder=3)
                ax.plot(ours[x_col], ours["mean"], color=c, zorder=4, label=f"{alg} (ours)")
            ax.set_title(panel, fontsize=8)
            ax.set_xlabel("fine-tuning env steps" if x_col == "env_steps" else "fraction of the fine-tuning budget")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("normalized score (mean)")
        handles, labels = {}, {}
        for ax in axes.flat[:len(panels)]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)),
                   frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        return _save(fig, out_dir, "references")
