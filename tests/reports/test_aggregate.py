"""rliable aggregates on stores with known answers; score-matrix validation; unequal seed counts."""
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from rliable import metrics as rlm

from reports import aggregate, load, metrics
from tests.reports import synthetic

TASKS = [f"t{i}" for i in range(6)]
MU = {"good": np.linspace(60, 90, 6), "bad": np.linspace(20, 50, 6)}
SD = 8.0


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    rng = np.random.default_rng(1)
    finals = {(m, t): MU[m][i] + SD * rng.standard_normal(10) for m in MU for i, t in enumerate(TASKS)}
    root = synthetic.write_final_scores_store(tmp_path_factory.mktemp("known"), finals)
    per_run = metrics.all_run_metrics(load.load_store(root))
    mats = aggregate.build_matrices(per_run)
    return finals, per_run, mats


def test_estimators_match_rliable():
    x = np.random.default_rng(0).uniform(0, 120, (7, 5))
    assert np.isclose(aggregate.iqm(x), rlm.aggregate_iqm(x))
    assert np.isclose(aggregate.mean(x), rlm.aggregate_mean(x))
    assert np.isclose(aggregate.median(x), rlm.aggregate_median(x))
    assert np.isclose(aggregate.optimality_gap(x), rlm.aggregate_optimality_gap(x, 100))
    y = np.round(np.random.default_rng(1).uniform(0, 100, (4, 5)))
    assert np.isclose(aggregate.prob_improvement(x, y), rlm.probability_of_improvement(x, y))


def test_iqm_is_trimmed_mean_of_final_scores(known):
    finals, _, mats = known
    ie = aggregate.interval_estimates(mats, reps=200).set_index(["algorithm", "metric", "statistic"])
    for m in MU:
        matrix = np.stack([finals[(m, t)] for t in TASKS], axis=1)  # runs x tasks
        expect = scipy.stats.trim_mean(matrix, 0.25, axis=None)
        assert np.isclose(ie.loc[(m, "final_score", "IQM"), "value"], expect)
        assert np.isclose(ie.loc[(m, "final_score", "Mean"), "value"], matrix.mean())


def test_cis_contain_true_values(known):
    _, _, mats = known
    ie = aggregate.interval_estimates(mats, reps=1000).set_index(["algorithm", "metric", "statistic"])
    rng = np.random.default_rng(2)
    for m in MU:
        population = (MU[m][None, :] + SD * rng.standard_normal((200_000, len(TASKS)))).ravel()
        truth = {"Mean": MU[m].mean(), "IQM": scipy.stats.trim_mean(population, 0.25)}
        for stat, value in truth.items():
            row = ie.loc[(m, "final_score", stat)]
            assert row["lo"] <= value <= row["hi"], (m, stat, value, row.to_dict())
        assert ie.loc[(m, "offline_score", "Mean"), "value"] == 50.0  # J0 is exactly 50 in every run


def test_probability_of_improvement(known):
    _, _, mats = known
    poi = aggregate.probability_of_improvement(mats, reps=200).set_index(["x", "y"])
    assert poi.loc[("good", "bad"), "value"] > 0.95
    assert np.isclose(poi.loc[("good", "bad"), "value"] + poi.loc[("bad", "good"), "value"], 1.0)


def test_check_score_matrix_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected \\(runs, 3 tasks"):
        aggregate.check_score_matrix(np.zeros((5, 2)), 3, "cql")
    with pytest.raises(ValueError, match="expected"):
        aggregate.check_score_matrix(np.zeros(5), 5, "cql")
    with pytest.raises(ValueError, match="non-finite"):
        aggregate.check_score_matrix(np.array([[1.0, np.nan]]), 2, "cql")


def test_unequal_seeds_subsample_to_lowest_seeds(tmp_path):
    finals = {("a", "t0"): [10, 20, 30, 40], ("a", "t1"): [50, 60], ("b", "t0"): [1, 2, 3],
              ("b", "t1"): [4, 5, 6], ("b", "t2"): [7, 8]}  # a has no run on t2
    root = synthetic.write_final_scores_store(tmp_path, finals)
    mats = aggregate.build_matrices(metrics.all_run_metrics(load.load_store(root)))
    assert mats.tasks == ["t0", "t1"]
    assert mats.metric("final_score")["a"].tolist() == [[10, 50], [20, 60]]
    assert mats.metric("final_score")["b"].shape == (3, 2)
    reasons = mats.excluded.set_index(["algorithm", "task", "seed"])["reason"]
    assert "lowest seeds" in reasons[("a", "t0", 2)] and "lowest seeds" in reasons[("a", "t0", 3)]
    assert "no completed run of a" in reasons[("b", "t2", 0)]


def test_probability_of_improvement_on_the_dip_prefers_the_smaller_dip(known):
    _, per_run, mats = known  # "bad" runs ramp down from J0 = 50, so they dip; "good" almost never do
    dips = per_run.groupby("algorithm")["dip"].mean()
    assert dips["good"] < 0.1 and dips["bad"] > 2.0
    poi = aggregate.probability_of_improvement(mats, reps=200, metric="dip", lower_is_better=True)
    poi = poi.set_index(["x", "y"])
    assert poi.loc[("good", "bad"), "value"] > 0.8 and poi.loc[("bad", "good"), "value"] < 0.2
    assert poi.loc[("good", "bad"), "lo"] > 0.5 and (poi["metric"] == "dip").all()


def test_sample_efficiency_gives_iqm_and_mean_curves_from_j0_to_the_final_score(known):
    finals, per_run, mats = known
    root = Path(per_run["path"].iloc[0]).parents[3]  # run dirs are root/suite/task/method/seedN
    curves = aggregate.all_run_curves(per_run, load.load_store(root).evals)
    eff = aggregate.sample_efficiency(mats, curves, reps=100).set_index(["algorithm", "statistic", "frac"])
    for m in MU:
        final = np.stack([finals[(m, t)] for t in TASKS], axis=1)
        assert np.isclose(eff.loc[(m, "Mean", 0.0), "score"], 50.0)  # J0 of every run
        assert np.isclose(eff.loc[(m, "Mean", 1.0), "score"], final.mean())
        assert np.isclose(eff.loc[(m, "IQM", 1.0), "score"], scipy.stats.trim_mean(final, 0.25, axis=None))
        assert eff.loc[(m, "Mean", 1.0), "lo"] <= final.mean() <= eff.loc[(m, "Mean", 1.0), "hi"]
