"""Registered hypotheses in the report (verdicts on stores whose answer is known) and the seed
planner against a case whose power is known in closed form."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import build_report
from reports.study import power, read_pilot, verdicts
from scoring.study import Hypothesis, design_hash
from tests.reports import synthetic

ROOT = Path(__file__).resolve().parents[2]
TASK = "maze"
HYPOTHESES = [
    {"name": "cql_dips", "metric": "dip", "statistic": "mean", "methods": ["cql"], "direction": "greater",
     "value": 0, "level": 0.95},
    {"name": "calql_dips_less", "metric": "dip", "statistic": "p_less", "methods": ["calql", "cql"],
     "direction": "greater", "value": 0.5, "level": 0.95},
    {"name": "calql_ends_higher", "metric": "final_score", "statistic": "mean_difference",
     "methods": ["calql", "cql"], "direction": "greater", "value": 0, "level": None},
]


def write_study_store(root: Path, dips: dict, seeds=range(10), registered=range(10), study=True, failed=()):
    """A suite 's' on one task: each run's J0 is 60, its online evals (every 100 of 400 env
    steps) are J0 - dip at 100 env steps, then 60, 70, 80 + final bonus: its dip (window 0.25) is
    exactly dips[method][seed]. `failed`: (method, seed) runs written as failed."""
    for method, values in dips.items():
        for seed in seeds:
            run = root / "s" / TASK / method / f"seed{seed}"
            if (method, seed) in failed:
                synthetic.write_run(run, summary={"status": "failed", "error": "RuntimeError: nan in critic"})
                continue
            final = 80.0 + (5.0 if method == "calql" else 0.0)
            ev = synthetic.make_evals(1000, 500, [60 - values[seed], 60, 70, final], 100, [30, 60])
            cfg = synthetic.make_config("s", TASK, "antmaze", method, seed, offline_steps=1000, online_steps=400,
                                        eval_every=100, offline_eval_every=500)
            synthetic.write_run(run, config=cfg, evals=ev, summary={"status": "done", "algorithm": method})
    if study:
        design = {"name": "s", "hypotheses": HYPOTHESES, "dip_window": 0.25, "tasks": [TASK],
                  "methods": sorted(dips), "seeds": {m: list(registered) for m in dips}, "protocol": {}, "config": {}}
        design["hash"] = design_hash(design)
        (root / "s" / "study.json").write_text(json.dumps(design))
    return root


def report_verdicts(root: Path, tmp_path: Path) -> dict:
    build_report(root, tmp_path / "report", reps=500)
    table = pd.read_csv(tmp_path / "report" / "verdicts.csv")
    return {r["hypothesis"]: r for r in table.to_dict("records")}


def test_a_clear_effect_holds_every_registered_hypothesis(tmp_path):
    rng = np.random.default_rng(1)
    root = write_study_store(tmp_path / "runs", {"cql": rng.choice([20, 30, 40], 10), "calql": np.zeros(10)})
    v = report_verdicts(root, tmp_path)
    assert {k: r["verdict"] for k, r in v.items()} == {"cql_dips": "holds", "calql_dips_less": "holds",
                                                      "calql_ends_higher": "holds"}
    assert 20 <= v["cql_dips"]["lo"] <= v["cql_dips"]["estimate"] <= v["cql_dips"]["hi"] <= 40
    assert v["calql_dips_less"]["estimate"] == 1.0
    assert v["calql_ends_higher"]["estimate"] == pytest.approx(5.0)
    assert v["cql_dips"]["runs"] == "cql 10/10" and pd.isna(v["cql_dips"]["not_done"])
    proc = subprocess.run([sys.executable, "-m", "reports", str(root), "--out", str(tmp_path / "cli"), "--reps", "500"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HOLDS            cql_dips: the 95% CI of cql's mean dip lies above 0" in proc.stdout
    assert "Registered hypotheses" in (tmp_path / "cli" / "index.html").read_text()


def test_no_effect_fails_the_interval_hypotheses(tmp_path):
    root = write_study_store(tmp_path / "runs", {"cql": np.zeros(10), "calql": np.zeros(10)})
    v = report_verdicts(root, tmp_path)
    assert v["cql_dips"]["verdict"] == "fails" and v["cql_dips"]["hi"] == 0
    assert v["calql_dips_less"]["verdict"] == "fails" and v["calql_dips_less"]["estimate"] == 0.5
    assert v["calql_ends_higher"]["verdict"] == "holds"  # the final scores still differ by 5


def test_too_few_runs_give_no_verdict_and_name_the_runs_not_done(tmp_path):
    root = write_study_store(tmp_path / "runs", {"cql": np.full(10, 30), "calql": np.zeros(10)}, seeds=range(6),
                             failed={("cql", 5)})
    v = report_verdicts(root, tmp_path)
    assert {r["verdict"] for r in v.values()} == {"not enough runs"}
    row = v["cql_dips"]
    assert row["runs"] == "cql 5/10" and row["estimate"] == 30
    assert "cql seed 5 on maze (failed: RuntimeError: nan in critic)" in row["not_done"]
    assert all(f"cql seed {s} on maze (missing)" in row["not_done"] for s in (6, 7, 8, 9))
    # one run of a method: no interval, still no verdict
    root = write_study_store(tmp_path / "one", {"cql": np.full(10, 30), "calql": np.zeros(10)}, seeds=[0],
                             registered=[0])
    table = verdicts(pd.read_csv(build_report(root, tmp_path / "r1", reps=200).parent / "runs.csv"),
                     json.loads((root / "s" / "study.json").read_text()))
    assert set(table["verdict"]) == {"not enough runs"} and table["lo"].isna().all()


def test_a_store_without_a_study_gets_no_verdicts(tmp_path):
    root = write_study_store(tmp_path / "runs", {"cql": np.full(10, 30), "calql": np.zeros(10)}, study=False)
    index = build_report(root, tmp_path / "report", reps=200)
    assert not (index.parent / "verdicts.csv").exists() and not (index.parent / "verdicts.txt").exists()
    assert "Registered hypotheses" not in index.read_text()


def test_the_planner_matches_the_closed_form_power_of_a_difference_of_normal_means():
    """X ~ N(delta, 1), Y ~ N(0, 1), n seeds each; 'the 95% CI of mean(X) - mean(Y) lies above 0'
    holds with probability Phi(delta sqrt(n / 2) - z_0.975) for a normal-theory interval."""
    rng = np.random.default_rng(0)
    delta = 0.6
    pilot = [rng.normal(delta, 1, (4000, 1)), rng.normal(0, 1, (4000, 1))]
    h = Hypothesis("x_above_y", "final_score", "mean_difference", ("x", "y"), "greater", 0.0, 0.95)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    for n in (10, 20, 40):
        expected = phi(delta * math.sqrt(n / 2) - 1.959964)
        got = power(h, pilot, n, sims=600, reps=1000)
        # the percentile bootstrap's interval is a little narrower than the normal one at small n
        assert abs(got - expected) < 0.06, (n, got, expected)
    assert power(h, pilot, 40, sims=200, reps=500) > power(h, pilot, 10, sims=200, reps=500)


def test_plan_prints_a_seeds_versus_power_table_for_the_dip_study_from_a_pilot_of_a_few_seeds():
    pilot = ROOT / "docs" / "dip-study-design7-runs.csv"
    assert read_pilot(pilot) is not None
    proc = subprocess.run([sys.executable, "-m", "reports", "plan", str(pilot), "--study",
                           str(ROOT / "harness/conf/suite/dip.yaml"), "--pilot-seeds", "5", "--n", "3,10,30",
                           "--sims", "100", "--reps", "200"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if line.startswith("cql_dips"))
    assert "cql 5" in row and len(row.split()) == 3 + 3 + 1
    assert "Assumptions:" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "reports", "plan", str(pilot)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--study" in bad.stderr
