"""Shared fixtures for the reports tests: small synthetic stores written to tmp_path."""
import numpy as np
import pandas as pd
import pytest

from tests.reports import synthetic

SMALL_TASKS = [("maze-a", "antmaze", 20_000, 100), ("maze-b", "antmaze", 20_000, 100),
               ("pen", "adroit", 10_000, 50)]


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """3 methods x 3 tasks x 5 seeds, plus one failed, one running and one missing run."""
    root = tmp_path_factory.mktemp("store")
    synthetic.write_store(root, methods=["calql", "cql", "iql"], tasks=SMALL_TASKS, seeds=range(5),
                          online_every=1000, offline_steps=10_000, offline_every=2000)
    base = root / "calql"
    failed = base / "pen" / "iql" / "seed4"
    synthetic.write_run(failed, summary={"status": "failed", "error": "Traceback...\nRuntimeError: nan in critic"})
    (failed / "evals.csv").unlink()
    running = base / "maze-a" / "cql" / "seed3"
    synthetic.write_run(running, summary={"status": "running"})
    import shutil
    shutil.rmtree(base / "maze-b" / "calql" / "seed2")
    return root


@pytest.fixture(scope="session")
def small_report(small_store, tmp_path_factory):
    """index.html of the small store's report (200 bootstrap reps to stay fast)."""
    from reports import build_report
    return build_report(small_store, tmp_path_factory.mktemp("report"), reps=200)
