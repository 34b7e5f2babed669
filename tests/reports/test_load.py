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
