"""The whole report: files written, figures not blank, index.html links resolve, left-out runs named."""
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

import reports
from tests.reports import synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def report(small_report):
    return small_report


def test_outputs_written(report):
    out = report.parent
    for name in ["evals_tidy.csv", "runs.csv", "aggregates.csv", "task_tables.md", "task_tables.tex",
                 "aggregate_tables.md", "aggregate_tables.tex", "not_included.csv"]:
        assert (out / name).stat().st_size > 0, name
    tidy = pd.read_csv(out / "evals_tidy.csv")
    assert {"suite", "task", "algorithm", "seed", "phase", "env_steps", "normalized_score"} <= set(tidy.columns)
    tex = (out / "task_tables.tex").read_text()
    assert "\\textbf{" in tex and "$\\to$" in tex and "\\toprule" in tex
    md = (out / "task_tables.md").read_text()
    assert "→ **" in md


def test_figures_not_blank(report):
    figs = sorted((report.parent / "figures").glob("*.png"))
    assert {f.stem for f in figs} >= {"aggregates", "dip_regret", "performance_profile",
                                     "probability_of_improvement", "sample_efficiency", "curves_per_task"}
    for f in figs:
        assert mpimg.imread(f)[..., :3].var() > 1e-3, f"{f.name} looks blank"
        assert f.with_suffix(".pdf").stat().st_size > 1000


def test_index_links_exist(report):
    page = report.read_text()
    links = re.findall(r'(?:src|href)=["\']([^"\'#]+)["\']', page)
    assert len(links) > 10
    for link in links:
        assert (report.parent / link).is_file(), link


def test_not_included_runs_named(report):
    page = report.read_text()
    section = page.split("id='not-included'")[1]
    assert "RuntimeError: nan in critic" in section
    assert "still running" in section
    assert "missing: no run directory" in section
    assert section.count("<tr>") >= 4  # header + the failed, running and missing runs


def test_report_with_only_unfinished_runs(tmp_path):
    synthetic.write_run(tmp_path / "s" / "maze" / "cql" / "seed0", summary={"status": "running"})
    page = reports.build_report(tmp_path, tmp_path / "out", reps=100).read_text()
    assert "No completed run yet" in page and "still running" in page


def test_cli_errors_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reports", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: no runs found under {tmp_path}; run python -m harness.run first"


def test_cli_builds(small_store, tmp_path):
    r = subprocess.run([sys.executable, "-m", "reports", str(small_store), "--out", str(tmp_path),
                        "--reps", "100", "--dip-window", "0.5"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "index.html").exists() and "dip window 0.5" in (tmp_path / "index.html").read_text()


def test_light_import():
    code = "import sys, reports; from reports.metrics import unlearning_dip; " \
           "print(any(m in sys.modules for m in ('rliable', 'matplotlib', 'torch', 'harness')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.strip() == "False", r.stderr


def test_expected_runs_come_from_the_suites_jobs_json(tmp_path):
    """Per-method seed lists (suite.algorithm_seeds) are not holes; a job the manifest lists but
    that never ran is. Without a manifest, the grid of what is present stands in for it."""
    from harness.job import Job
    from harness.store import write_manifest
    from reports.load import load_store

    task = synthetic.CALQL_TASKS[0]
    synthetic.write_store(tmp_path, methods=["calql"], tasks=[task], seeds=range(3), suite="s")
    synthetic.write_store(tmp_path, methods=["iql"], tasks=[task], seeds=range(1), suite="s")
    grid = load_store(tmp_path).runs
    assert sorted(grid.loc[grid.status == "missing", "seed"]) == [1, 2]  # iql seeds 1, 2: no manifest

    asked = [Job.from_dict({"suite": "s", "task": {"name": task[0], "domain": task[1]}, "algorithm": {"name": a}, "seed": k,
                            "protocol": {"offline_steps": 0, "online_steps": 0}})
             for a, seeds in (("calql", range(4)), ("iql", range(1))) for k in seeds]
    write_manifest(asked, tmp_path)
    runs = load_store(tmp_path).runs
    missing = runs[runs.status == "missing"]
    assert list(zip(missing.algorithm, missing.seed)) == [("calql", 3)]
    assert len(runs) == 5
