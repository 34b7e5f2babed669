"""The report built from what the harness really writes: a tiny real study (Cal-QL and CQL, two
seeds, the dense PointMaze task, whose scores differ from seed to seed) through
`python -m harness.run`, then `reports.build_report` on its run directory. Every seed is in the
tables, and the scores in them are the ones the runs themselves wrote."""
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

import reports

ROOT = Path(__file__).resolve().parents[2]
TASK, METHODS, SEEDS = "pointmaze-umaze-dense", ("calql", "cql"), (0, 1)
ONLINE_STEPS = 200
TINY = ["protocol.offline_steps=100", f"protocol.online_steps={ONLINE_STEPS}", "protocol.eval_every_offline=50",
        "protocol.eval_every=50", "protocol.eval_episodes=1", "protocol.log_every=50"]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    """The suite directory of a finished real study, its report, and each run's own files."""
    runs = tmp_path_factory.mktemp("runs")
    proc = subprocess.run([sys.executable, "-m", "harness.run", "suite=smoke", f"suite.tasks=[{TASK}]",
                           f"suite.seeds=[{','.join(map(str, SEEDS))}]", f"runs_dir={runs}", *TINY,
                           "report=false", "progress=false"],
                          cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    suite_dir = runs / "smoke"
    written = {}
    for algo in METHODS:
        for seed in SEEDS:
            d = suite_dir / TASK / algo / f"seed{seed}"
            written[algo, seed] = (json.loads((d / "summary.json").read_text()), pd.read_csv(d / "evals.csv"))
    index = reports.build_report(suite_dir, tmp_path_factory.mktemp("report"), reps=100)
    return index.parent, written


@pytest.mark.slow
def test_every_run_is_in_the_report_with_its_own_scores(real_study):
    out, written = real_study
    runs = pd.read_csv(out / "runs.csv").set_index(["algorithm", "seed"])
    assert sorted(runs.index) == sorted(written) and runs["included"].all()
    assert (runs["task"] == TASK).all() and (runs["last_env_steps"] == ONLINE_STEPS).all()
    assert pd.read_csv(out / "not_included.csv").empty
    scores = []
    for key, (summary, evals) in written.items():
        assert summary["status"] == "done"
        row = runs.loc[key]
        assert row["offline_score"] == pytest.approx(summary["offline_score"], abs=1e-9)
        assert row["final_score"] == pytest.approx(summary["final_score"], abs=1e-9)
        # the runner's lowest early score and the report's dip agree on what the dip was
        assert row["dip"] == pytest.approx(max(0.0, summary["offline_score"] - summary["early_min_score"]), abs=1e-9)
        scores.append(summary["final_score"])
    assert len(set(scores)) == len(scores)  # distinct per run: a swapped seed or method would show


@pytest.mark.slow
def test_tidy_evals_are_the_runs_eval_files(real_study):
    out, written = real_study
    tidy = pd.read_csv(out / "evals_tidy.csv")
    assert set(zip(tidy["algorithm"], tidy["seed"])) == set(written)
    cols = ["phase", "step", "env_steps", "normalized_score", "success"]
    for (algo, seed), (_, evals) in written.items():
        mine = tidy[(tidy["algorithm"] == algo) & (tidy["seed"] == seed)][cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, evals[cols], check_dtype=False)


@pytest.mark.slow
def test_per_seed_tables_list_every_seed_and_score(real_study):
    out, written = real_study
    md = (out / "task_tables.md").read_text()
    per_seed = md.split("### Final score of every run", 1)[1]
    offline = md.split("### Offline score J0 of every run", 1)[1]
    for algo in METHODS:
        finals = ", ".join(f"{written[algo, s][0]['final_score']:.0f}" for s in SEEDS)
        j0s = ", ".join(f"{written[algo, s][0]['offline_score']:.0f}" for s in SEEDS)
        seeds = f"(seeds {min(SEEDS)}-{max(SEEDS)})"
        assert f"| {TASK} | {algo} | {finals} {seeds} |" in per_seed, per_seed
        assert f"| {TASK} | {algo} | {j0s} {seeds} |" in offline, offline
    # the headline table: mean offline -> mean final over the seeds, per method
    row = next(line for line in md.splitlines() if line.startswith(f"| {TASK} |") and "→" in line)
    for algo in METHODS:
        mean = lambda key: sum(written[algo, s][0][key] for s in SEEDS) / len(SEEDS)  # noqa: E731
        assert f"{mean('offline_score'):.1f} ±" in row and f"{mean('final_score'):.1f} ±" in row, row


@pytest.mark.slow
def test_curve_figure_is_drawn_from_the_runs(real_study):
    out, written = real_study
    curves = pd.read_csv(out / "curves_per_task.csv")
    for algo in METHODS:
        mine = curves[curves["algorithm"] == algo].sort_values("env_steps")
        start, end = mine.iloc[0], mine.iloc[-1]
        assert (start["env_steps"], end["env_steps"]) == (0, ONLINE_STEPS)
        for point, key in ((start, "offline_score"), (end, "final_score")):
            values = [written[algo, s][0][key] for s in SEEDS]
            # with two runs the IQM is their mean, and the 95% band lies within them
            assert point["iqm"] == pytest.approx(sum(values) / len(values), abs=1e-9)
            assert min(values) - 1e-9 <= point["lo"] <= point["hi"] <= max(values) + 1e-9
    png = out / "figures" / "curves_per_task.png"
    assert mpimg.imread(png)[..., :3].var() > 1e-3, "the per-task curve figure looks blank"
    page = (out / "index.html").read_text()
    assert TASK in page and all(algo in page for algo in METHODS)
