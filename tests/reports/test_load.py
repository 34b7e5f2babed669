"""The loader reads a store into tidy frames and names every run it leaves out."""
import pytest

from reports import load


def test_tidy_frames(small_store):
    store = load.load_store(small_store)
    assert len(store.runs) == 3 * 3 * 5
    assert {"suite", "task", "algorithm", "seed", "phase", "env_steps", "normalized_score"} <= set(store.evals.columns)
    assert store.runs["included"].sum() == 45 - 3


def test_missing_failed_running_named(small_store):
    runs = load.load_store(small_store).runs.set_index(["task", "algorithm", "seed"])
    assert runs.loc[("pen", "iql", 4), "reason"].startswith("failed: RuntimeError: nan in critic")
    assert runs.loc[("maze-a", "cql", 3), "reason"] == "still running"
    assert runs.loc[("maze-b", "calql", 2), "reason"].startswith("missing")


def test_empty_store_errors(tmp_path):
    with pytest.raises(load.StoreError, match="no runs found under"):
        load.load_store(tmp_path)


def test_suite_dir_and_partial_runs(tmp_path):
    from tests.reports import synthetic
    synthetic.write_run(tmp_path / "s" / "maze" / "cql" / "seed0",
                        config=synthetic.make_config("s", "maze", "antmaze", "cql", 0, offline_steps=10,
                                                     online_steps=10, eval_every=5, offline_eval_every=5))
    store = load.load_store(tmp_path / "s")  # pointing at one suite works too
    row = store.runs.iloc[0]
    assert (row["suite"], row["task"], row["algorithm"], row["seed"]) == ("s", "maze", "cql", 0)
    assert not row["included"] and row["reason"].startswith("no summary.json")
