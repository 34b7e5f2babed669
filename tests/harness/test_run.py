"""The front door end to end: a real (tiny) study through `python -m harness.run`, the files it
writes and their contents, skipping finished runs, and one-line errors for bad input."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import algorithms

ROOT = Path(__file__).resolve().parents[2]
TINY = ["protocol.offline_steps=200", "protocol.online_steps=400", "protocol.eval_every_offline=100",
        "protocol.eval_every=200", "protocol.eval_episodes=2", "protocol.log_every=50"]


def default_suite() -> dict:
    """The suite `python -m harness.run` runs with no suite= (composed as the front door composes it)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("config").suite, resolve=True)


def harness(*args, env_extra=None, timeout=600):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    proc = harness("suite=smoke", f"runs_dir={runs}", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return runs, proc


@pytest.mark.slow
def test_run_ends_with_a_report_on_disk(smoke_run):
    runs, proc = smoke_run
    index = runs / "smoke" / "report" / "index.html"
    assert index.exists() and f"report: {index}" in proc.stdout
    html = index.read_text()
    assert "calql" in html and "cql" in html and "pointmaze-umaze-diverse" in html


@pytest.mark.slow
def test_smoke_suite_writes_complete_runs(smoke_run):
    runs, proc = smoke_run
    for algo in ("calql", "cql"):
        d = runs / "smoke" / "pointmaze-umaze-diverse" / algo / "seed0"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "done" and summary["algorithm"] == algo and summary["seed"] == 0
        config = yaml.safe_load((d / "config.yaml").read_text())
        assert config["job_id"] == summary["job_id"] and config["protocol"]["online_steps"] == 400
        evals = pd.read_csv(d / "evals.csv")
        assert list(evals.columns) == ["phase", "step", "env_steps", "return", "normalized_score", "success"]
        offline, online = evals[evals.phase == "offline"], evals[evals.phase == "online"]
        assert list(offline.step) == [100, 200] and (offline.env_steps == 0).all()
        assert list(online.env_steps) == [200, 400] and list(online.step) == [400, 600]
        assert evals.normalized_score.between(0, 100).all() and evals.success.between(0, 1).all()
        assert summary["offline_score"] == offline.normalized_score.iloc[-1]
        assert summary["final_score"] == online.normalized_score.iloc[-1]
        train = pd.read_csv(d / "train.csv")
        assert len(train) == 600 // 50 and train["critic_loss"].notna().all()
        assert ("bound_rate" in train.columns) == (algo == "calql")
        # calibration, logged by the harness for every method: Q(s, pi(s)) and the batch's MC return,
        # on this task's 10r - 5 reward (-5 per step, -500 for a trajectory that never succeeds)
        assert train["policy_value"].notna().all() and train["mc_return"].between(-500, 10).all()
        assert (train["mc_return"] < -100).any()
        episodes = pd.read_csv(d / "episodes.csv")
        assert episodes.length.sum() == 400  # every online step belongs to a logged episode
        assert not (d / "checkpoint" / "state.pt").exists()  # a finished run keeps only results
        assert not list(d.glob(".*"))  # no temporary files left behind
    assert "offline" in proc.stdout and "calql" in proc.stdout and str(runs) in proc.stdout


@pytest.mark.slow
def test_rerun_skips_finished_jobs(smoke_run):
    runs, _ = smoke_run
    summary = runs / "smoke" / "pointmaze-umaze-diverse" / "cql" / "seed0" / "summary.json"
    before = summary.read_text()
    proc = harness("suite=smoke", f"runs_dir={runs}", *TINY, "report=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary.read_text() == before


@pytest.mark.parametrize("args, message", [
    (["algorithm=cqll"], f"unknown algorithm 'cqll'; choose one of: {', '.join(algorithms.available())}"),
    (["suite=nope"], "unknown suite 'nope'; choose one of:"),
    (["task=nope"], "unknown task 'nope'; choose one of:"),
    (["protocol.offline_steps=-5"], "protocol.offline_steps must be >= 0, got -5"),
    (["protocol.eval_episodes=0"], "protocol.eval_episodes must be > 0, got 0"),
    (["algorithm=calql", "algorithm.replay.mixing_ratio=1.5"], "replay.mixing_ratio must be in [0, 1], got 1.5"),
])
def test_bad_input_is_one_line_error_before_any_work(args, message, tmp_path):
    proc = harness(*args, f"runs_dir={tmp_path / 'runs'}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_algorithm_seeds_give_some_methods_more_seeds(tmp_path):
    suite = yaml.safe_load((ROOT / "harness" / "conf" / "suite" / "dip.yaml").read_text())
    proc = harness("suite=dip", "dry_run=true", f"runs_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    rows = [l.split() for l in proc.stdout.splitlines() if l.split() and l.split()[0] in suite["algorithms"]]
    for algo in suite["algorithms"]:
        seeds = [int(r[2]) for r in rows if r[0] == algo]
        assert seeds == suite.get("algorithm_seeds", {}).get(algo, suite["seeds"]), algo
    assert len({int(r[2]) for r in rows if r[0] == "cql"}) > len({int(r[2]) for r in rows if r[0] == "iql"})
    proc = harness("suite=dip", "dry_run=true", "seed=15", f"runs_dir={tmp_path}")  # the command line wins
    rows = [l.split() for l in proc.stdout.splitlines() if l.split() and l.split()[0] in suite["algorithms"]]
    assert proc.returncode == 0 and len(rows) == len(suite["algorithms"]) and {r[2] for r in rows} == {"15"}


def test_dry_run_prints_the_job_table(tmp_path):
    """What a new user's first command would run: the default suite's jobs (every method x task x
    seed at its protocol), and the study it registers, with each of its hypotheses."""
    proc = harness("dry_run=true", f"runs_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    suite = default_suite()
    rows = [l.split() for l in proc.stdout.splitlines() if l.split() and l.split()[0] in suite["algorithms"]]
    assert len(rows) == len(suite["algorithms"]) * len(suite["tasks"]) * len(suite["seeds"])
    assert {r[1] for r in rows} == set(suite["tasks"])
    for algo in suite["algorithms"]:
        assert sorted({int(r[2]) for r in rows if r[0] == algo}) == sorted(suite["seeds"]), algo
    p = suite["protocol"]
    assert {(r[3], r[4]) for r in rows} == {(f"{p['offline_steps']:,}", f"{p['online_steps']:,}")}
    assert re.search(rf"^study '{suite['name']}': design [0-9a-f]{{12}}, not yet registered in ", proc.stdout, re.M)
    for h in suite["study"]["hypotheses"]:
        assert re.search(rf"^  {h['name']}: ", proc.stdout, re.M), h["name"]
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_hydra_multirun_sweep_runs_every_point_into_runs_dir(tmp_path):
    proc = harness("-m", "algorithm=calql,cql", "seed=0,1", "suite=smoke", f"runs_dir={tmp_path}", *TINY,
                   "protocol.offline_steps=50", "protocol.online_steps=100", "protocol.eval_every_offline=50",
                   "protocol.eval_every=100", "report=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for algo in ("calql", "cql"):
        for seed in (0, 1):
            summary = json.loads((tmp_path / "smoke" / "pointmaze-umaze-diverse" / algo / f"seed{seed}" / "summary.json").read_text())
            assert summary["status"] == "done" and summary["seed"] == seed
    manifest = json.loads((tmp_path / "smoke" / "jobs.json").read_text())
    assert len(manifest["jobs"]) == 4  # every point of the sweep is listed for `harness.status`
    assert not (ROOT / "multirun").exists() and not (ROOT / "outputs").exists()


def _worker_pids(parent: int) -> set[int]:
    pids = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return {p for p in pids if "multiprocessing-fork" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore")}


def _alive(pid: int) -> bool:
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
def test_sigterm_stops_the_worker_processes_too(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "suite=smoke", f"runs_dir={tmp_path}",
                             "launcher.workers=2", "protocol.offline_steps=200000", "progress=false"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers: set[int] = set()
        for _ in range(600):  # until both workers have started a run
            workers = _worker_pids(proc.pid) if proc.poll() is None else workers
            if len(workers) == 2 and len(list(tmp_path.glob("smoke/*/*/seed0/config.yaml"))) == 2:
                break
            time.sleep(0.1)
        assert len(workers) == 2, proc.communicate(timeout=60)
        proc.terminate()
        proc.wait(timeout=60)
        deadline = time.time() + 20
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "worker processes outlived the front door"
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
