"""A reduced `suite=dip` (issue 8, docs/dip-study.md): Cal-QL and CQL, two seeds, short budgets.

The full study does not show the unlearning dip on the CPU mini task (see the doc), so this test
checks the part of the paper's mechanism that the study does show, loosely enough to be
reliable: at the end of pre-training CQL's Q-values of policy actions are lower than Cal-QL's
(conservative underestimation that the calibrated bound limits), for every seed; and the
report computes a dip for every run."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_reduced_dip_study_shows_cql_underestimating_against_calql(tmp_path):
    args = ["suite=dip", "suite.algorithms=[calql,cql]", "suite.seeds=[0,1]", f"runs_dir={tmp_path}",
            "protocol.offline_steps=3000", "protocol.online_steps=500", "protocol.eval_every=250",
            "protocol.eval_episodes=5", "progress=false"]
    proc = subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = tmp_path / "dip" / "pointmaze-umaze-play"
    for seed in (0, 1):
        q_end = {}
        for algo in ("calql", "cql"):
            train = pd.read_csv(runs / algo / f"seed{seed}" / "train.csv")
            offline = train[train.phase == "offline"]
            q_end[algo] = offline.q_pi.tail(4).mean()  # the last 1k pre-training updates
            if algo == "calql":  # the reference returns are on the same scale (-1 per step)
                assert -100.0 <= offline.mc_return.tail(4).mean() <= -1.0
        assert q_end["cql"] < q_end["calql"] - 5.0, q_end
    metrics = pd.read_csv(tmp_path / "dip" / "report" / "runs.csv")
    assert len(metrics) == 4 and metrics["dip"].notna().all() and (metrics["dip"] >= 0).all()
    assert json.loads((runs / "cql" / "seed0" / "summary.json").read_text())["status"] == "done"
