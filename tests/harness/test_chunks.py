"""Action chunks as a harness feature: a method's h = 1 runs exactly as before chunks existed; a
method with h > 1 acts open-loop (one policy call per h env steps, a new call at each episode
start), in evaluation and online, with the protocol's updates still per env step; a chunked run
killed mid-chunk resumes exactly. (The chunked batches themselves: test_replay.py.)"""
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).parent / "data" / "h1-reference"
H1_ARGS = ["algorithm=cql", "task=pointmaze-umaze-dense", "algorithm.replay.batch_size=32",
           "algorithm.hparams.cql_n_actions=2", "protocol.offline_steps=60", "protocol.online_steps=320",
           "protocol.eval_every_offline=30", "protocol.eval_every=80", "protocol.eval_episodes=1",
           "protocol.log_every=10", "protocol.checkpoint_every=50", "suite.seeds=[0,1]", "suite.seeds_per_process=2",
           "device=cpu", "progress=false", "report=false"]


def test_h1_runs_bit_identically_to_the_runner_before_chunks(tmp_path):
    """CQL (h = 1), two seeds in one process, offline then online with a dense reward (so every
    evaluation and episode return depends on every action): evals, episodes and train metrics
    equal, to the last bit, those of the code before chunking (commit 9d1e881, saved in
    data/h1-reference; regenerate there with `python -m harness.run <H1_ARGS> runs_dir=X` and
    copy each seed's CSVs, train.csv without its timing column). The reference was made on CPU
    with torch 2.13.0; another CPU's kernels may round differently."""
    proc = subprocess.run([sys.executable, "-m", "harness.run", *H1_ARGS, f"runs_dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for k in (0, 1):
        run = tmp_path / "default" / "pointmaze-umaze-dense" / "cql" / f"seed{k}"
        for name in ("evals", "episodes", "train"):
            got = pd.read_csv(run / f"{name}.csv")
            ref = pd.read_csv(REFERENCE / f"seed{k}" / f"{name}.csv")
            pd.testing.assert_frame_equal(got.drop(columns=["updates_per_s"], errors="ignore"), ref, check_exact=True)
