"""A job's numbers do not depend on how many other jobs run beside it: its torch thread count
is part of its config (`threads`, in its job id and config.yaml), every launcher runs it with
that count, and initial weights do not depend on the thread count at all."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import algorithms
from algorithms.base import ActionSpec, ObsSpec

ROOT = Path(__file__).resolve().parents[2]
TINY = ["algorithm=cql", "task=pointmaze-umaze-diverse", "algorithm.replay.batch_size=64",
        "algorithm.hparams.cql_n_actions=2", "algorithm.hparams.actor_hidden=[256,256]",
        "algorithm.hparams.critic_hidden=[256,256]", "protocol.offline_steps=60", "protocol.online_steps=60",
        "protocol.eval_every_offline=30", "protocol.eval_every=30", "protocol.eval_episodes=1",
        "protocol.log_every=10", "progress=false", "report=false"]


def compose_jobs(*overrides):
    from hydra import compose, initialize_config_dir

    from harness.config import CONF_DIR, CommandLine, expand

    cli = CommandLine.parse(list(overrides))  # as the front door: the command line wins
    overrides = cli.hydra_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return expand(compose("config", overrides=overrides), cli)


def flat_state(state, prefix=""):
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(flat_state(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + k] = v.clone()
    return out


@pytest.mark.parametrize("name", ["calql", "cql", "iql", "td3bc", "awac"])
def test_initial_weights_do_not_depend_on_the_thread_count(name):
    """At the paper's AntMaze sizes (MKL's QR inside orthogonal init rounds differently with 1
    and 2 threads when left threaded)."""
    from harness.config import load_group, resolve_algorithm

    hparams = dict(resolve_algorithm(load_group("algorithm", name), "antmaze").get("hparams", {}))
    threads = torch.get_num_threads()
    states = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            torch.manual_seed(0)
            algo = algorithms.make(name, ObsSpec((29,), None, 29), ActionSpec(8), hparams, torch.device("cpu"))
            states.append(flat_state(algo.state_dict()))
    finally:
        torch.set_num_threads(threads)
    assert states[0].keys() == states[1].keys() and len(states[0]) > 4
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_threads_is_part_of_the_job_id_and_recorded_in_its_config():
    (one,) = compose_jobs(*TINY, "seed=0")
    (two,) = compose_jobs(*TINY, "seed=0", "threads=2")
    assert one.threads == 1 and two.threads == 2  # 1 by default
    assert one.job_id != two.job_id


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_bad_thread_count_is_a_one_line_error_before_any_work(tmp_path, value):
    proc = subprocess.run([sys.executable, "-m", "harness.run", *TINY, "seed=0", f"threads={value}",
                           f"runs_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "threads must be a whole number >= 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "default").exists()


def read_run(d: Path):
    return (pd.read_csv(d / "evals.csv"), pd.read_csv(d / "episodes.csv"),
            pd.read_csv(d / "train.csv").drop(columns=["updates_per_s"]), yaml.safe_load((d / "config.yaml").read_text()))


@pytest.mark.slow
def test_a_job_gives_the_same_result_alone_and_in_a_suite(tmp_path):
    """Seed 0 alone in one process, and inside a 3-job suite on 2 worker processes: the local
    launcher used to give it 2 threads alone and 1 in the suite (cores / workers)."""
    def run(runs, *args):
        proc = subprocess.run([sys.executable, "-m", "harness.run", *TINY, *args, f"runs_dir={runs}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    run(tmp_path / "alone", "seed=0", "launcher.workers=1")
    # one seed per process: a seed trained in a group is another job (docs/many-seeds.md)
    run(tmp_path / "suite", "suite.seeds=[0,1,2]", "suite.seeds_per_process=1", "launcher.workers=2")
    run_dir = "default/pointmaze-umaze-diverse/cql/seed0"
    a_evals, a_eps, a_train, a_cfg = read_run(tmp_path / "alone" / run_dir)
    s_evals, s_eps, s_train, s_cfg = read_run(tmp_path / "suite" / run_dir)
    assert a_cfg["job_id"] == s_cfg["job_id"] and a_cfg["threads"] == s_cfg["threads"] == 1
    pd.testing.assert_frame_equal(a_evals, s_evals, check_exact=True)
    pd.testing.assert_frame_equal(a_eps, s_eps, check_exact=True)
    pd.testing.assert_frame_equal(a_train, s_train, check_exact=True)
    assert json.loads((tmp_path / "suite" / run_dir / "summary.json").read_text())["status"] == "done"
