"""Per-run metrics on hand-made curves with known answers."""
import math

import numpy as np
import pandas as pd

from reports import load, metrics
from tests.reports import synthetic


def test_unlearning_dip_window():
    env = [100, 200, 300, 400, 500, 600, 700, 800]
    score = [40, 30, 45, 60, 10, 70, 80, 90]  # the 10 at 500 lies outside a 0.25 window
    assert metrics.unlearning_dip(50.0, env, score, online_steps=1600, window=0.25) == 20.0
    assert metrics.unlearning_dip(50.0, env, score, online_steps=1600, window=0.5) == 40.0
    assert metrics.unlearning_dip(20.0, env, score, online_steps=1600) == 0.0  # never below J0
    # no eval inside the window: the first online eval stands in (the harness does the same)
    assert metrics.unlearning_dip(50.0, env, score, online_steps=100, window=0.25) == 10.0
    assert math.isnan(metrics.unlearning_dip(50.0, [], [], online_steps=100))
    assert math.isnan(metrics.unlearning_dip(float("nan"), env, score, online_steps=1600))


def test_recover_and_regret():
    env, score = [100, 200, 300], [30.0, 50.0, 80.0]
    assert metrics.steps_to_recover(50.0, env, score) == 200
    assert math.isnan(metrics.steps_to_recover(90.0, env, score))
    assert math.isclose(metrics.cumulative_regret(score), np.mean([0.7, 0.5, 0.2]))


def write_known_run(root, online, j0=50.0, status="done", episodes_success=(1, 0, 0, 1)):
    ev = synthetic.make_evals(1000, 500, online, 100, [10.0, j0])
    ep = pd.DataFrame({"env_steps": [100, 200, 300, 400], "return": 0.0, "normalized_score": 0.0,
                       "success": list(episodes_success), "length": 100})
    cfg = synthetic.make_config("s", "maze", "antmaze", "calql", 0, offline_steps=1000,
                                online_steps=100 * len(online), eval_every=100, offline_eval_every=500)
    synthetic.write_run(root / "s" / "maze" / "calql" / "seed0", config=cfg, evals=ev, episodes=ep,
                        summary={"status": status})


def test_run_metrics_from_store(tmp_path):
    online = [40.0, 20.0, 45.0, 55.0, 60.0, 70.0, 80.0, 90.0]  # budget 800, window 200
    write_known_run(tmp_path, online)
    m = metrics.all_run_metrics(load.load_store(tmp_path), window=0.25).iloc[0]
    assert m["included"]
    assert m["offline_score"] == 50.0 and m["final_score"] == 90.0
    assert m["dip"] == 30.0 and math.isclose(m["relative_dip"], 0.6)
    assert m["steps_to_recover"] == 400 and m["recovered"]
    assert math.isclose(m["regret"], np.mean([1 - s / 100 for s in online]))
    assert m["failed_episodes"] == 0.5


def test_never_recovers_is_censored(tmp_path):
    write_known_run(tmp_path, [10.0, 20.0, 30.0, 40.0], j0=0.0 + 60.0)
    m = metrics.all_run_metrics(load.load_store(tmp_path)).iloc[0]
    assert math.isnan(m["steps_to_recover"]) and not m["recovered"]


def test_relative_dip_nan_when_j0_zero(tmp_path):
    write_known_run(tmp_path, [0.0, 10.0, 20.0, 30.0], j0=0.0)
    m = metrics.all_run_metrics(load.load_store(tmp_path)).iloc[0]
    assert m["dip"] == 0.0 and math.isnan(m["relative_dip"])


def test_domain_averages(small_store):
    m = metrics.all_run_metrics(load.load_store(small_store))
    dom = metrics.domain_averages(m)
    tm = metrics.task_means(m)
    row = dom[(dom.domain == "antmaze") & (dom.algorithm == "cql")].iloc[0]
    expect = tm[(tm.domain == "antmaze") & (tm.algorithm == "cql")]["final_score_mean"].mean()
    assert math.isclose(row["final_score_mean"], expect) and row["tasks"] == 2
