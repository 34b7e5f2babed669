"""Seeds trained together (`suite.seeds_per_process`): how a suite's seeds are grouped and named,
what is refused before any work, finished seeds never redone, and a group of K seeds statistically
equivalent to K single runs on a mini task."""
import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import algorithms
from harness.config import CONF_DIR, CommandLine, ConfigError, expand
from harness.job import group_jobs
from harness.store import run_dir
from harness.runner import run_jobs

TINY = ["algorithm=iql", "task=pointmaze-umaze-diverse", "algorithm.replay.batch_size=64",
        "protocol.offline_steps=300", "protocol.online_steps=200", "protocol.eval_every_offline=150",
        "protocol.eval_every=100", "protocol.eval_episodes=2", "protocol.log_every=50", "protocol.checkpoint_every=0",
        "device=cpu"]


def jobs_of(*overrides):
    """The jobs `python -m harness.run OVERRIDES` would run (the front door's own steps)."""
    cli = CommandLine.parse(list(overrides))
    overrides = cli.hydra_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return expand(compose("config", overrides=overrides), cli)


def test_seeds_are_grouped_in_order_and_the_job_id_says_how_a_seed_was_trained():
    alone = jobs_of(*TINY, "suite.seeds=[0,1,2,3,4]", "suite.seeds_per_process=1")
    grouped = jobs_of(*TINY, "suite.seeds=[0,1,2,3,4]", "suite.seeds_per_process=2")
    assert [j.seed_group for j in grouped] == [(0, 1), (0, 1), (2, 3), (2, 3), None]
    assert [[j.seed for j in g] for g in group_jobs(grouped)] == [[0, 1], [2, 3], [4]]
    assert [[j.seed for j in g] for g in group_jobs(alone)] == [[0], [1], [2], [3], [4]]
    assert all(j.seed_group is None and "seed_group" not in j.to_dict() for j in alone)
    ids = {j.seed: j.job_id for j in alone}
    assert [j.job_id != ids[j.seed] for j in grouped] == [True] * 4 + [False]  # seed 4 trains alone
    assert run_dir("runs", grouped[1]) == run_dir("runs", alone[1])  # each seed keeps its own run dir


@pytest.mark.parametrize("overrides, message", [
    (["suite.seeds_per_process=0"], "suite.seeds_per_process must be >= 1, got 0"),
    (["task=visual-pick-place"], "task 'visual-pick-place' has image observations, which train one seed per process"),
])
def test_impossible_groups_are_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jobs_of(*TINY, "suite.seeds=[0,1]", "suite.seeds_per_process=2", *overrides)


def test_a_method_written_for_one_seed_is_refused_a_group(monkeypatch):
    monkeypatch.setattr(algorithms.get("iql"), "multi_seed", False)
    with pytest.raises(ConfigError, match="algorithm 'iql' trains one seed per process.*seeds_per_process=1"):
        jobs_of(*TINY, "suite.seeds=[0,1]", "suite.seeds_per_process=2")
    assert len(jobs_of(*TINY, "suite.seeds=[0,1]", "suite.seeds_per_process=1")) == 2


def test_finished_seeds_of_a_group_are_never_redone(tmp_path):
    jobs = jobs_of(*TINY, "protocol.offline_steps=40", "protocol.online_steps=30", "protocol.eval_every_offline=40",
                   "protocol.eval_every=30", "protocol.eval_episodes=1", "suite.seeds=[0,1]", "suite.seeds_per_process=2")
    dirs = [run_dir(tmp_path, j) for j in jobs]
    first = run_jobs(jobs, dirs, progress_bar=False)
    assert [s["status"] for s in first] == ["done", "done"] and first[0]["seeds_in_process"] == 2
    kept = (dirs[0] / "summary.json").read_text(), (dirs[0] / "evals.csv").stat().st_mtime_ns
    for f in dirs[1].iterdir():  # seed 1's results lost: only seed 1 trains again
        f.unlink()
    again = run_jobs(jobs, dirs, progress_bar=False)
    assert ((dirs[0] / "summary.json").read_text(), (dirs[0] / "evals.csv").stat().st_mtime_ns) == kept
    assert again[0] == first[0] and again[1]["status"] == "done" and again[1]["seeds_in_process"] == 1
    assert again[1]["job_id"] == first[1]["job_id"]


@pytest.mark.slow
def test_a_group_of_seeds_is_statistically_equivalent_to_single_runs(tmp_path):
    """Mean evaluation curve of 4 seeds trained together within the 95% CI of the same 4 seeds
    trained alone at every evaluation, and back; the seeds themselves differ."""
    seeds = "suite.seeds=[0,1,2,3]"
    group = jobs_of(*TINY, seeds, "suite.seeds_per_process=4")
    alone = jobs_of(*TINY, seeds, "suite.seeds_per_process=1")
    run_jobs(group, [run_dir(tmp_path / "group", j) for j in group], progress_bar=False)
    for j in alone:
        run_jobs([j], [run_dir(tmp_path / "alone", j)], progress_bar=False)

    def scores(root, jobs):
        curves = [pd.read_csv(run_dir(root, j) / "evals.csv") for j in jobs]
        assert all(json.loads((run_dir(root, j) / "summary.json").read_text())["status"] == "done" for j in jobs)
        return np.stack([c["return"].to_numpy() for c in curves]), curves[0]["step"].tolist()

    g, steps = scores(tmp_path / "group", group)
    a, steps_alone = scores(tmp_path / "alone", alone)
    assert steps == steps_alone and g.shape == a.shape == (4, len(steps))
    assert len({tuple(row) for row in a}) > 1  # the seeds differ from one another

    def ci(x):  # 95% t-interval of the mean over seeds (t_{0.975, 3} = 3.18)
        half = 3.18 * x.std(0, ddof=1) / np.sqrt(len(x)) + 1e-9
        return x.mean(0) - half, x.mean(0) + half

    for mine, other in ((g, a), (a, g)):
        lo, hi = ci(other)
        assert ((mine.mean(0) >= lo - 1e-6) & (mine.mean(0) <= hi + 1e-6)).all(), (mine.mean(0), lo, hi)


def test_auto_groups_every_seed_on_a_gpu_and_none_on_the_cpu():
    """`seeds_per_process: auto` (the default of a suite that sets none; suite=pointmaze-mini sets 2, the default suite 1): one
    seed per process on the CPU, as before; with device=cuda every seed of a (method, task) in one process, up to the memory bound
    (config.GPU_GROUP_BYTES of online buffers); image tasks and one-seed methods stay alone."""
    cpu = jobs_of(*TINY, "suite.seeds=[0,1,2]", "suite.seeds_per_process=auto")
    gpu = jobs_of(*TINY[:-1], "device=cuda", "suite.seeds=[0,1,2]", "suite.seeds_per_process=auto")
    assert [j.seed_group for j in cpu] == [None] * 3
    assert [j.seed_group for j in gpu] == [(0, 1, 2)] * 3
    assert [j.job_id for j in cpu] == [j.job_id for j in jobs_of(*TINY, "suite.seeds=[0,1,2]", "suite.seeds_per_process=1")]
    long = jobs_of(*TINY[:-1], "device=cuda", "suite.seeds=[0,1,2]", "suite.seeds_per_process=auto",
                   "protocol.online_steps=100000000")
    # 100M steps of (4 + 4 + 2 + 4) fp32 per seed + 256 MiB: 5.9 GB a seed, two fit in 16 GiB
    assert [j.seed_group for j in long] == [(0, 1), (0, 1), None]
    images = jobs_of(*TINY[:-1], "device=cuda", "suite.seeds=[0,1]", "suite.seeds_per_process=auto",
                     "task=visual-pick-place", "protocol.online_steps=200")
    assert [j.seed_group for j in images] == [None] * 2
