"""Nothing reported that did not happen: a damaged finished run is refused, not retrained; data
out of the action space is clipped by one stated rule or refused; environment variables and
paths are checked before any work; reports and `harness.status` stay whole. Through the real
front door (`python -m harness.run`, in this process) and real files; tiny protocols."""
from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.algorithms.test_conformance import BC
from tests.harness.test_bad_input import TINY, files_under, front_door

ROOT = Path(__file__).resolve().parents[2]


def python_m(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or ROOT, timeout=600)


# -- finished results -------------------------------------------------------------------------
def test_truncated_summary_of_a_finished_run_is_refused_then_rebuilt(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = [*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}"]
    code, out, err = front_door(args, capsys)
    assert code == 0, err
    (d,) = runs.glob("smoke/*/td3bc/seed0")
    original = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text((d / "summary.json").read_text()[:60])  # a copy cut short
    before = files_under(runs)
    code, out, err = front_door(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{d}/summary.json is unreadable (JSONDecodeError)" in err
    assert f"python -m harness.store rebuild {d}" in err and f"mv {d} {d}.damaged" in err
    assert files_under(runs) == before  # nothing retrained, no curve overwritten
    (runs / "smoke" / "jobs.json").write_text('{"jobs": [')  # the manifest cut short too: runs on disk listed
    status = python_m("harness.status", str(runs))
    (line,) = [line for line in status.stdout.splitlines() if "td3bc" in line]
    assert status.returncode == 1 and line.startswith("damaged     td3bc      pointmaze-umaze-diverse") and (
        f"python -m harness.store rebuild {d}" in line), status.stdout  # never "missing": it would be retrained
    proc = python_m("harness.store", "rebuild", str(d))
    assert proc.returncode == 0, proc.stderr
    rebuilt = json.loads((d / "summary.json").read_text())
    for key in ("status", "job_id", "offline_score", "final_score", "early_min_score", "seed"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["rebuilt"] is True
    code, out, err = front_door(args, capsys)
    assert code == 0 and "1/1 done" in out, err


# -- data out of contract ---------------------------------------------------------------------
def test_zero_row_d4rl_file_is_corrupt_in_the_list_and_refused(tmp_path, capsys, monkeypatch):
    import tasks
    from tasks.__main__ import main as tasks_main

    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path / "data"))
    path = tasks.get("antmaze-umaze").d4rl_path
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for key, shape in (("observations", (0, 29)), ("actions", (0, 8)), ("rewards", (0,)), ("terminals", (0,)),
                           ("timeouts", (0,))):
            f.create_dataset(key, data=np.zeros(shape, np.float32))
    assert tasks_main(["list"]) == 0
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("antmaze-umaze ")]
    assert line.split()[2] == "corrupt", line
    code, out, err = front_door([*TINY, "task=antmaze-umaze", "algorithm=iql", "seed=0", f"runs_dir={tmp_path / 'runs'}"],
                                capsys)
    assert code == 2 and err.strip() == f"error: before any job starts: antmaze-umaze: dataset corrupt: {path} has 0 rows; " \
                                        f"the file is empty or was cut short, download it again", err
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def antmaze_minari(tmp_path, monkeypatch):
    """Writes antmaze-umaze's Minari fallback (its real id) with actions scaled by a factor, and
    the same episodes as a D4RL file; O2O_DATA_DIR points at an empty folder until `d4rl=True`."""
    import gymnasium as gym

    import tasks
    from tasks.sources import minari_root
    from tests.tasks.conftest import save_minari
    from tests.tasks.test_antmaze import rollouts, write_d4rl

    task = tasks.get("antmaze-umaze")
    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path / "data"))

    def write(scale: float, d4rl: bool = False):
        env = task.make_env(0, source="minari")
        eps = rollouts(env, [30, 20, 25])
        for ep in eps:
            ep["action"] = [a * scale for a in ep["action"]]
        if d4rl:
            write_d4rl(task.d4rl_path, eps, next_observations=np.concatenate([np.asarray(ep["obs"][1:]) for ep in eps]))
            return task.load_dataset()
        goal = env.goal_xy.astype(np.float64)
        for ep in eps:
            ep["obs"] = [{"observation": o[2:].astype(np.float64), "achieved_goal": o[:2].astype(np.float64),
                          "desired_goal": goal} for o in ep["obs"]]
        space = gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, (n,), np.float64)
                                 for k, n in (("observation", 27), ("achieved_goal", 2), ("desired_goal", 2))})
        save_minari(task.minari_id, eps, "AntMaze_UMaze-v4", space, env.action_space)
        return None

    yield write
    import shutil

    shutil.rmtree(minari_root() / task.minari_id, ignore_errors=True)


def test_actions_out_of_space_one_rule_for_every_source_and_far_outside_refused(antmaze_minari, tmp_path, capsys):
    import tasks
    from tasks.base import ACTION_CLIP

    task = tasks.get("antmaze-umaze")
    antmaze_minari(1.5)  # a controller's overshoot: clipped, counted on stderr
    capsys.readouterr()
    minari_data = task.load_dataset()
    assert task.active_source() == "minari"
    assert np.abs(minari_data.action).max() == pytest.approx(ACTION_CLIP)
    assert minari_data.notes["actions_clipped"] > 0
    err = capsys.readouterr().err
    assert f"{minari_data.notes['actions_clipped']:,} of {minari_data.action.size:,} action components lie outside" in err
    d4rl_data = antmaze_minari(1.5, d4rl=True)  # the same episodes from a D4RL file: the same actions
    assert task.active_source() == "d4rl"
    np.testing.assert_array_equal(d4rl_data.action, minari_data.action)
    (tmp_path / "data" / "d4rl" / task.d4rl_path.name).unlink()
    antmaze_minari(5.0)  # data of another scale: the job fails on load, naming the dataset; nothing is scored
    code, out, err = front_door([*TINY, "task=antmaze-umaze", "algorithm=iql", "seed=0", f"runs_dir={tmp_path / 'runs'}"],
                                capsys)
    assert code == 1 and "0/1 done" in out, err
    (failed,) = [l for l in err.splitlines() if l.startswith("FAILED")]
    assert f"Minari dataset '{task.minari_id}'" in failed and "lies far outside the env's action space [-1, 1]" in failed
    (summary,) = (tmp_path / "runs").glob("smoke/antmaze-umaze/iql/seed0/summary.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "failed" and s["final_score"] is None


# -- environment and paths --------------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty", "file", "read-only HOME"])
def test_minari_datasets_path_is_checked_before_generating(case, tmp_path, capsys, monkeypatch):
    from tests.harness.test_bad_input import mount_tmpfs

    if case == "empty":
        monkeypatch.setenv("MINARI_DATASETS_PATH", "")
        message = None
    elif case == "file":
        (tmp_path / "afile").write_text("x")
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "afile" / "datasets"))
        message = f"MINARI_DATASETS_PATH={tmp_path}/afile/datasets: {tmp_path}/afile is a file, not a folder"
    else:
        home = tmp_path / "home"
        mount_tmpfs(home, "ro,size=1m")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("MINARI_DATASETS_PATH")
        message = f"MINARI_DATASETS_PATH (unset: default {home}/.minari/datasets): {home} is not writable"
    try:
        code, out, err = front_door([*TINY, "algorithm=iql", "seed=0", f"runs_dir={tmp_path / 'runs'}"], capsys)
    finally:
        subprocess.run(["umount", "-l", str(tmp_path / "home")], capture_output=True)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    if message is None:  # refused whether or not the default folder holds the data
        assert err.startswith("error: before any job starts: pointmaze-umaze-diverse: MINARI_DATASETS_PATH is set but "
                              "empty; unset it"), err
    else:
        assert err.startswith("error: before any job starts: pointmaze-umaze-diverse: its dataset is generated on first "
                              f"use, but {message}"), err
    assert not (tmp_path / "runs").exists()


def test_relative_minari_datasets_path_is_resolved_once(tmp_path, monkeypatch):
    """A relative MINARI_DATASETS_PATH names a folder of the working directory, once: saving a
    dataset puts it there (not under a doubled path) and it is found again from elsewhere."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from tasks.generated import save_minari
    from tasks.sources import minari_present, minari_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "rel/data")
    root = minari_root()
    assert root == tmp_path / "rel" / "data"
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    buffers = [EpisodeBuffer(observations=np.zeros((4, 2), np.float32), actions=[np.zeros(2, np.float32)] * 3,
                             rewards=[0.0] * 3, terminations=[False] * 3, truncations=[False, False, True])]
    save_minari("o2o/reltest/generated-v0", buffers, env=None, observation_space=space, action_space=space,
                algorithm_name="test", author="o2o", author_email="o2o@example.org", code_permalink="tests")
    assert (tmp_path / "rel" / "data" / "o2o" / "reltest" / "generated-v0" / "data" / "metadata.json").exists()
    assert not list(root.glob(".tmp-*")) and not (tmp_path / "rel" / "data" / "rel").exists()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert minari_present("o2o/reltest/generated-v0")


# -- harness.status ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    ([], None),  # the truncated manifest: a note, then the runs found on disk
    (["algorithm=cqll"], "error: unknown algorithm 'cqll'; choose one of:"),
    (["protocol.utd=0"], "error: protocol.utd must be > 0, got 0"),
    (["protocol.utd=[1"], "error: "),  # Hydra's own parse error, in one line
])
def test_status_never_prints_a_traceback(args, message, tmp_path, capsys):
    from harness.status import main as status_main
    from harness.store import RunStore

    runs = tmp_path / "runs"
    RunStore(runs / "smoke" / "pointmaze-umaze-diverse" / "cql" / "seed0").write_summary(
        {"status": "done", "job_id": "abc", "algorithm": "cql", "task": "pointmaze-umaze-diverse", "seed": 0,
         "final_score": 50.0})
    (runs / "smoke" / "jobs.json").write_text('{"suite": "smoke", "jobs": [{"run_dir": "smoke/pointm')
    code = status_main([str(runs), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if message is None:
        assert code == 0 and "jobs.json is unreadable (JSONDecodeError)" in err
        assert "done" in out and "1 done" in out
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(message), err


# -- reports as a whole -----------------------------------------------------------------------
def test_a_report_killed_half_way_leaves_the_old_report_whole(tmp_path):
    """`kill -9` of `python -m reports` once its new runs.csv is written: the report folder is
    still the old one, file for file; the next build replaces it whole and removes the leftover."""
    import signal
    import time

    from tests.harness.test_bad_input import small_store

    store = small_store(tmp_path / "store")
    proc = python_m("reports", str(store), "--reps", "100")
    assert proc.returncode == 0, proc.stderr
    report = store / "report"
    old = {p: p.read_bytes() for p in report.rglob("*") if p.is_file()}
    run = next(store.glob("*/maze-a/cql/seed1"))  # the store changes: the new report would differ
    (run / "summary.json").write_text((run / "summary.json").read_text().replace('"done"', '"failed"'))
    child = subprocess.Popen([sys.executable, "-m", "reports", str(store), "--reps", "100"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(store.glob(".report.tmp-*/runs.csv")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the build ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list(store.glob(".report.tmp-*/runs.csv"))  # it was killed mid-build...
    assert {p: p.read_bytes() for p in report.rglob("*") if p.is_file()} == old  # ...and the old report is whole
    proc = python_m("reports", str(store), "--reps", "100")
    assert proc.returncode == 0, proc.stderr
    assert (report / "runs.csv").read_bytes() != old[report / "runs.csv"]
    assert (report / "index.html").exists() and not list(store.glob(".report*"))


# -- the plug-in contract ---------------------------------------------------------------------
def failed_line_as_td3bc(method, tmp_path, capsys, monkeypatch) -> str:
    """The one FAILED line of a tiny td3bc run trained by the plug-in class `method` instead."""
    import algorithms

    monkeypatch.setitem(algorithms.base.REGISTRY, "td3bc", method)
    monkeypatch.setattr(method, "name", "td3bc")
    code, out, err = front_door([*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={tmp_path / 'runs'}"], capsys)
    assert code == 1 and "Traceback" not in err, err
    (failed,) = [line for line in err.splitlines() if line.startswith("FAILED")]
    return failed


def test_an_update_returning_floats_fails_the_run_in_one_line_naming_the_contract(tmp_path, capsys, monkeypatch):
    from algorithms.td3bc import TD3BC

    class FloatMetrics(TD3BC):  # a plug-in that reads its metrics on the host
        def update(self, batch):
            return {k: float(v) for k, v in super().update(batch).items()}

    failed = failed_line_as_td3bc(FloatMetrics, tmp_path, capsys, monkeypatch)
    assert "TypeError: algorithm 'td3bc': update() must return a dict of metric name -> detached torch tensor" in failed
    assert "as a float" in failed and "Algorithm.update in algorithms/base.py" in failed


@pytest.mark.parametrize("returns, got", [("one action dim", "a tensor of shape (1, 1, 1)"), ("numpy", "a ndarray")])
def test_a_policy_breaking_the_contract_fails_the_run_in_one_line_naming_it(returns, got, tmp_path, capsys, monkeypatch):
    from algorithms.td3bc import TD3BC

    class BadActions(TD3BC):  # a plug-in whose actions miss a dimension, or leave torch
        def policy(self, obs, deterministic):
            a = super().policy(obs, deterministic)
            return a[..., :1] if returns == "one action dim" else a.cpu().numpy()

    failed = failed_line_as_td3bc(BadActions, tmp_path, capsys, monkeypatch)
    assert "TypeError: algorithm 'td3bc': policy() must return a torch tensor of shape (1, 1, 2) for these observations" in failed
    assert f"got {got} (the contract: Algorithm.policy in algorithms/base.py)" in failed, failed


# -- an explicit setting of a tool's own variable wins ----------------------------------------
def test_wandb_files_go_to_wandb_dir_when_it_is_set(tmp_path):
    runs, wandb_dir = tmp_path / "runs", tmp_path / "wandb-files"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
           "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}
    args = [*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}", "logger=[csv,wandb]"]
    (tmp_path / "afile").write_text("x")
    proc = python_m("harness.run", *args, env={**env, "WANDB_DIR": str(tmp_path / "afile")})
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: logger=wandb: WANDB_DIR={tmp_path}/afile: {tmp_path}/afile is a file, not a folder; "
        f"set WANDB_DIR to a writable folder"), proc.stderr
    proc = python_m("harness.run", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (d,) = runs.glob("smoke/*/td3bc/seed0")
    assert [p.name for p in (d / "wandb").iterdir()] == ["run_id"]  # only the id the harness keeps
    run_id = (d / "wandb" / "run_id").read_text().strip()
    (attempt,) = wandb_dir.glob(f"wandb/offline-run-*-{run_id}")
    assert (attempt / f"run-{run_id}.wandb").stat().st_size > 0


# -- "done" only when the protocol ran ---------------------------------------------------------
def test_a_run_that_could_not_make_its_updates_is_failed_not_done(tmp_path, capsys):
    """WSRL fine-tunes on online data only (replay mode 'online': ended trajectories): with a
    50-step warm-up, no episode of the 300-step PointMaze ends in time for its updates."""
    runs = tmp_path / "runs"
    args = [*TINY, "algorithm=wsrl", "seed=0", f"runs_dir={runs}", "protocol.warmup_steps=50",
            "protocol.online_steps=200", "protocol.eval_every=200", "algorithm.hparams.actor_hidden=[16,16]",
            "algorithm.hparams.critic_hidden=[16,16]"]
    code, out, err = front_door(args, capsys)
    assert code == 1 and "0/1 done" in out, out + err
    (failed,) = [l for l in err.splitlines() if l.startswith("FAILED")]
    assert "ProtocolShortfall: the protocol did not run: no online update possible at env step 51" in failed
    assert "raise protocol.warmup_steps" in failed
    (summary,) = runs.glob("smoke/*/wsrl/seed0/summary.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "failed" and s["protocol_asked"]["online_updates"] == 150 * 4
    assert s["protocol_made"]["online_updates"] == 0 and s["protocol_made"]["offline_updates"] == 200


def test_a_done_run_records_what_each_phase_made(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, err = front_door([*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}"], capsys)
    assert code == 0, err
    (summary,) = runs.glob("smoke/*/td3bc/seed0/summary.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "done"
    assert s["protocol_made"] == s["protocol_asked"] == {"offline_updates": 200, "online_env_steps": 50,
                                                         "online_updates": 50}


# -- two launchers on one store ----------------------------------------------------------------
LAUNCH = [*TINY, "algorithm=td3bc", "launcher.workers=1", "suite.seeds_per_process=1"]


def launcher(runs: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.run", *LAUNCH, f"runs_dir={runs}", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def kill_after_checkpoint(proc: subprocess.Popen, runs: Path) -> None:
    """kill -9 the launcher once its seed-0 run has a checkpoint."""
    import signal
    import time

    deadline = time.monotonic() + 300
    while not list(runs.glob("smoke/*/td3bc/seed0/checkpoint/state.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_two_launchers_on_one_store_train_every_job_once(tmp_path):
    runs = tmp_path / "runs"
    seeds = "suite.seeds=[0,1,2,3]"
    a, b = launcher(runs, seeds), launcher(runs, seeds)
    out_a, _ = a.communicate(timeout=900)
    out_b, _ = b.communicate(timeout=900)
    assert a.returncode == 0 and b.returncode == 0, out_a[-2000:] + out_b[-2000:]
    summaries = {d.parent.name: json.loads(d.read_text()) for d in runs.glob("smoke/*/td3bc/seed*/summary.json")}
    assert sorted(summaries) == ["seed0", "seed1", "seed2", "seed3"]
    for name, s in summaries.items():
        assert s["status"] == "done" and s["resumes"] == 0 and "took_over" not in s, (name, s)
        assert s["pid"] in (a.pid, b.pid)
        steps = [int(line.split(",")[1]) for line in
                 (runs / "smoke" / s["task"] / "td3bc" / name / "train.csv").read_text().splitlines()[1:]]
        assert steps == sorted(set(steps)), name  # one writer: no row twice
    assert {s["pid"] for s in summaries.values()} == {a.pid, b.pid}  # the two shared the queue
    assert not list(runs.glob("smoke/*/td3bc/seed*/.owner"))  # released


def test_a_dead_launchers_run_is_taken_over_and_the_summary_says_so(tmp_path):
    runs = tmp_path / "runs"
    slow = ["seed=0", "protocol.offline_steps=4000", "protocol.eval_every_offline=4000", "protocol.checkpoint_every=100"]
    a = launcher(runs, *slow)
    kill_after_checkpoint(a, runs)
    (d,) = runs.glob("smoke/*/td3bc/seed0")
    assert json.loads((d / ".owner").read_text())["pid"] == a.pid  # left behind by the dead owner
    b = launcher(runs, *slow)
    out, _ = b.communicate(timeout=900)
    assert b.returncode == 0, out[-2000:]
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "done" and s["resumes"] == 1 and s["pid"] == b.pid
    assert s["took_over"].startswith(f"process {a.pid} on ") and s["took_over"].endswith(" is gone")


def test_a_paused_launcher_whose_run_was_taken_over_stops_without_writing(tmp_path):
    """A launcher paused (SIGSTOP: a suspended node, a partition) past the stale time is judged
    dead and its run taken over; woken, it finds before its next write (here: its final summary)
    that the run is no longer its own and stops: the taker's done run is the only one written.
    (A is paused while it trains, between writes: a write already under way when a process is
    paused lands when it wakes, which no lock can prevent.)"""
    import signal
    import time

    runs = tmp_path / "runs"
    fast = {"O2O_LOCK_STALE_S": "3", "O2O_LOCK_BEAT_S": "0.5"}
    slow = ["seed=0", "protocol.offline_steps=4000", "protocol.eval_every_offline=4000"]  # no write until the end
    a = launcher(runs, *slow, env=fast)
    deadline = time.monotonic() + 300
    while not list(runs.glob("smoke/*/td3bc/seed0/summary.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # past the summary's write: training
    a.send_signal(signal.SIGSTOP)
    try:
        time.sleep(4)  # no heartbeat for longer than O2O_LOCK_STALE_S
        b = launcher(runs, *slow, env=fast)
        out_b, _ = b.communicate(timeout=900)
        assert b.returncode == 0, out_b[-2000:]
    finally:
        a.send_signal(signal.SIGCONT)
    out_a, _ = a.communicate(timeout=900)
    (d,) = runs.glob("smoke/*/td3bc/seed0")
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "done" and s["pid"] == b.pid and "sent no heartbeat" in s["took_over"], s
    assert s["resumes"] == 0  # no checkpoint of a's to resume: b trained it from the start
    stopped = [line for line in out_a.splitlines() if "stopped, " in line]
    assert len(stopped) == 1 and f"{d} was taken over by " in stopped[0], out_a[-2000:]  # (b has finished)
    assert "Traceback" not in out_a
    steps = [int(line.split(",")[1]) for line in (d / "train.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] >= 3900, steps[-5:]  # one writer after the takeover
    assert not (d / ".owner").exists() and not (d / "checkpoint" / "state.pt").exists()


def test_a_live_owner_in_another_container_of_the_same_host_name_is_not_judged_by_its_pid(tmp_path):
    """Containers share a host name, not their pids: an owner with this host name but another
    machine (boot and pid namespace) and a fresh heartbeat is live, though its pid is not here."""
    import socket

    runs = tmp_path / "runs"
    d = runs / "smoke" / "pointmaze-umaze-diverse" / "td3bc" / "seed0"
    d.mkdir(parents=True)
    owner = {"host": socket.gethostname(), "pid": 2 ** 22 + 1, "token": "c0ffee", "started": 0.0,
             "machine": "another-boot/0:1"}
    (d / ".owner").write_text(json.dumps(owner))
    out, _ = launcher(runs, "seed=0").communicate(timeout=600)
    assert f"skipped, process {owner['pid']} on {owner['host']} (another launcher) runs it" in out, out[-2000:]
    assert json.loads((d / ".owner").read_text()) == owner and not (d / "summary.json").exists()
    door = ("harness.status", str(runs), "suite=smoke", "algorithm=td3bc", "seed=0", *TINY[1:])
    job_id = python_m(*door).stdout.splitlines()[1].split()[4]  # missing: no summary yet
    (d / "summary.json").write_text(json.dumps({"status": "running", "job_id": job_id, **owner}))
    status = python_m(*door)  # what a second launcher would judge: live
    assert "running     td3bc" in status.stdout and f"process {owner['pid']} on {owner['host']}; " in status.stdout, status


# -- data that changed under a run -------------------------------------------------------------
def test_a_dataset_changed_between_a_kill_and_a_resume_is_refused(tmp_path):
    """antmaze-umaze from a D4RL file: a run killed after a checkpoint, the file edited, the resume
    refused in one line naming the file; restored, it resumes. A new run of the task into the same
    store with other data is refused too. The hash is in config.yaml and in the report."""
    import tasks
    from tests.tasks.test_antmaze import rollouts, write_d4rl

    data_dir = tmp_path / "data"
    env = {"O2O_DATA_DIR": str(data_dir)}
    task = tasks.get("antmaze-umaze")
    eps = rollouts(task.make_env(0, source="d4rl"), [40, 30, 30])
    path = data_dir / "d4rl" / task.d4rl_path.name
    write_d4rl(path, eps)
    original = path.read_bytes()
    runs = tmp_path / "runs"
    args = ["task=antmaze-umaze", "seed=0", "protocol.offline_steps=3000", "protocol.eval_every_offline=3000",
            "protocol.checkpoint_every=100", "protocol.online_steps=0"]
    a = launcher(runs, *args, env=env)
    kill_after_checkpoint(a, runs)
    (d,) = runs.glob("smoke/antmaze-umaze/td3bc/seed0")
    import yaml

    recorded = yaml.safe_load((d / "config.yaml").read_text())["dataset"]
    assert recorded["path" if "path" in recorded else "where"] == str(path) and len(recorded["sha256"]) == 64
    with h5py.File(path, "r+") as f:  # the edit: rewards shifted
        f["rewards"][...] = f["rewards"][()] + 1.0
    out, _ = launcher(runs, *args, env=env).communicate(timeout=600)
    (failed,) = [l for l in out.splitlines() if l.startswith("FAILED")]
    assert f"DataChanged: {path} changed since this run started (sha256 {recorded['sha256'][:16]}... then" in failed
    assert json.loads((d / "summary.json").read_text())["status"] == "failed"
    assert (d / "checkpoint" / "state.pt").exists()  # the run is kept to resume
    b = launcher(runs, *args, "seed=1", env=env)  # a new run of the task into this store, on the edited data
    out_b, _ = b.communicate(timeout=600)
    assert b.returncode == 1 and f"{path} holds other data" in out_b and "than this store's runs of antmaze-umaze" in out_b
    path.write_bytes(original)
    p = launcher(runs, *args, env=env)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-2000:]
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "done" and s["resumes"] == 1
    proc = python_m("reports", str(runs / "smoke"), "--reps", "100")
    assert proc.returncode == 0, proc.stderr
    runs_csv = (runs / "smoke" / "report" / "runs.csv").read_text()
    assert recorded["sha256"] in runs_csv
    assert recorded["sha256"][:16] in (runs / "smoke" / "report" / "index.html").read_text()


# -- a disk that fills mid-run -----------------------------------------------------------------
def test_a_full_disk_mid_run_fails_the_run_in_one_line_naming_the_file(tmp_path, capsys):
    import threading
    import time

    from tests.harness.test_bad_input import mount_tmpfs

    runs = tmp_path / "disk"
    mount_tmpfs(runs, "size=80m")

    def fill():  # once the run has started, fill what is left
        deadline = time.monotonic() + 120
        while not list(runs.glob("smoke/*/td3bc/seed0/summary.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(runs / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 2**20)
                    f.flush()
            except OSError:
                pass

    filler = threading.Thread(target=fill)
    filler.start()
    try:
        code, out, err = front_door([*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}", "protocol.offline_steps=3000",
                                     "protocol.eval_every_offline=500", "protocol.checkpoint_every=500"], capsys)
        filler.join()
        assert code == 1 and "Traceback" not in err, err
        (failed,) = [l for l in err.splitlines() if l.startswith("FAILED")]
        (d,) = runs.glob("smoke/*/td3bc/seed0")
        assert f"DiskFull: no space left writing {d}/" in failed and "rerun the same command" in failed, failed
        s = json.loads((d / "summary.json").read_text())
        assert s["status"] == "failed" and "no space left writing" in s["error"]
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)


# -- Ctrl-C ------------------------------------------------------------------------------------
def test_ctrl_c_on_a_local_suite_prints_one_line_and_rerunning_resumes(tmp_path):
    import signal
    import time

    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "harness.run", *TINY, "algorithm=td3bc", "suite.seeds=[0,1]", "suite.seeds_per_process=1",
            "launcher.workers=2", "protocol.offline_steps=4000", "protocol.eval_every_offline=4000",
            "protocol.checkpoint_every=100", f"runs_dir={runs}"]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(runs.glob("smoke/*/td3bc/seed*/checkpoint/state.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on the terminal sends: the whole process group
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert err.strip() == ("interrupted: rerun the same command to resume (finished runs are kept; the others "
                           "continue from their last checkpoints)"), err
    proc = subprocess.run(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0 and "2/2 done" in proc.stdout, proc.stderr[-2000:]
    assert any(json.loads(p.read_text())["resumes"] == 1 for p in runs.glob("smoke/*/td3bc/seed*/summary.json"))


# -- refused before any work: repeats, unused fields, bounds, memory, limits ------------------
@pytest.mark.parametrize("args, message", [
    (["suite.seeds=[0,0]"], "suite.seeds lists 0 more than once, got [0, 0]; list each once"),
    (["suite.algorithms=[cql,cql]"], "suite.algorithms lists 'cql' more than once"),
    (["suite.tasks=[pointmaze-umaze-diverse,pointmaze-umaze-diverse]"],
     "suite.tasks lists 'pointmaze-umaze-diverse' more than once"),
    (["suite.algorithm_seeds.cql=[1,1]"], "suite.algorithm_seeds.cql lists 1 more than once"),
    (["algorithm=rlpd", "seed=0", "protocol.offline_steps=100", "protocol.warmup_steps=10"],
     "protocol.offline_steps=100: algorithm 'rlpd' has no such phase (its yaml sets protocol.offline_steps: 0)"),
    (["algorithm=cql", "algorithm.hparams.actor_lr=1e6"], "algorithm.hparams.actor_lr must be <= 1 (a learning rate), got 1000000.0"),
    (["algorithm=iql", "algorithm.hparams.tau=2"], "algorithm.hparams.tau must be in (0, 1] (a soft target update rate), got 2.0"),
    (["protocol.online_steps=1000000000"], "protocol.online_steps=1,000,000,000 needs an online replay of ~"),
    (["algorithm=calql", "algorithm.hparams.critic_hidden=[100000,100000]"],
     "algorithm.hparams.critic_hidden=[100000, 100000] needs at least ~149.0 GiB of calql's network weights"),
    (["threads=100000"], "threads must be a whole number from 1 to 4,096 (torch threads per job), got 100000"),
    (["protocol.eval_episodes=2e9"], "protocol.eval_episodes must be <= 100,000, got 2,000,000,000"),
])
def test_refused_in_one_line_before_any_work(args, message, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, err = front_door([*TINY, *args, f"runs_dir={runs}"], capsys)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not runs.exists()


def test_runs_dir_with_a_tilde_is_the_home_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    code, out, err = front_door([*TINY, "algorithm=td3bc", "seed=0", "runs_dir='~/x'", "protocol.online_steps=0"], capsys)
    assert code == 0, err
    assert list((tmp_path / "home" / "x").glob("smoke/*/td3bc/seed0/summary.json")) and not (tmp_path / "~").exists()
    # no online phase: the closing sentence reports the offline score, not a dip of "0 env steps"
    assert "td3bc, trained offline only" in out and "This run: td3bc's mean offline score" in out, out


def test_a_tilde_the_shell_left_is_the_home_folder_and_bad_syntax_is_one_line(tmp_path):
    """sh and zsh leave `~` in `runs_dir=~/x`; Hydra's grammar has no unquoted `~`."""
    env = {"HOME": str(tmp_path / "home")}
    tiny = " ".join([*TINY, "algorithm=td3bc", "seed=0", "protocol.online_steps=0"])
    out = python_m("harness.run", *TINY, "dry_run=true", "runs_dir=~/x", env=env, cwd=tmp_path)  # 'runs_dir=~/x'
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    shell = subprocess.run(["sh", "-c", f"{sys.executable} -m harness.run {tiny} runs_dir=~/x"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=600)
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert list((tmp_path / "home" / "x").glob("smoke/*/td3bc/seed0/summary.json")) and not (tmp_path / "~").exists()
    status = python_m("harness.status", "~/x", env=env, cwd=tmp_path)
    assert status.returncode == 0 and "1 done" in status.stdout, status.stdout + status.stderr
    report = python_m("reports", "~/x", "--out=~/rep", "--reps=100", env=env, cwd=tmp_path)
    assert report.returncode == 0 and (tmp_path / "home" / "rep" / "index.html").exists(), report.stderr[-2000:]
    assert not (tmp_path / "~").exists()
    for arg in ("runs_dir=[a", "protocol.utd=f(1)"):
        out = python_m("harness.run", *TINY, "dry_run=true", arg, env=env, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith(f"error: argument {arg!r} is not in Hydra's override syntax ("), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "quote a value" in out.stderr


# -- a plug-in, from the folder that holds its source ---------------------------------------------


@pytest.mark.parametrize("register", ["", "@algorithms.register('mine_src')\n"], ids=["entry-point", "also-register"])
def test_a_plugin_is_found_from_the_folder_of_its_source(register, tmp_path):
    """An installed plug-in (docs/plugins.md's layout: `mine_src = my_plug.mine:Mine`), and its
    source checked out beside: from the source's folder the front door runs it, and the
    conformance suite given the file checks that method (its relative import works; with an
    `@register` of its own the file is imported once, not as `mine` and again as `my_plug.mine`)."""
    source = tmp_path / "src" / "my_plug"
    (source / "conf" / "algorithm").mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "helpers.py").write_text("LR = 1e-3\n")
    method = textwrap.dedent(inspect.getsource(BC)).replace("class BC", register + "class Mine")
    (source / "mine.py").write_text("from . import helpers\nimport algorithms\nimport torch\n\n\n" +
                                    method.replace("lr=1e-3", "lr=helpers.LR"))
    (source / "conf" / "__init__.py").write_text("")
    (source / "conf" / "algorithm" / "mine_src.yaml").write_text("name: mine_src\nreplay: {mode: append}\n")
    site = tmp_path / "site"
    site.mkdir()
    subprocess.run(["cp", "-r", str(source), str(site)], check=True)
    dist = site / "my_plug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[o2o_bench.algorithms]\nmine_src = my_plug.mine:Mine\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    for cwd in (source.parent, source):
        out = python_m("harness.run", "algorithm=mine_src", "hydra.searchpath=[pkg://my_plug.conf]", "suite=smoke",
                       "seed=0", "dry_run=true", f"runs_dir={tmp_path / 'runs'}", env=env, cwd=cwd)
        assert out.returncode == 0 and re.search(r"^mine_src\s", out.stdout, re.M), out.stderr[-2000:]
    out = python_m("algorithms.conformance", "mine.py", env=env, cwd=source)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    checked = {line.split()[1] for line in out.stdout.splitlines()[:-1]}
    assert checked == {"mine_src"} and out.stdout.strip().endswith("checks passed"), out.stdout
    out = python_m("algorithms.conformance", "helpers.py", env=env, cwd=source)  # no method in it: one line
    assert out.returncode == 2 and out.stderr.startswith("error: helpers.py defines no method: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- a user's hydra.searchpath -----------------------------------------------------------------
def test_yamls_on_a_users_searchpath_are_never_silently_shadowed(tmp_path, capsys):
    conf = tmp_path / "myconf"
    (conf / "algorithm").mkdir(parents=True)
    search = f"hydra.searchpath=[file://{conf}]"
    door = lambda *args: front_door([*TINY, "dry_run=true", f"runs_dir={tmp_path / 'runs'}", search, *args], capsys)  # noqa: E731
    (conf / "algorithm" / "cql.yaml").write_text("name: cql\nhparams: {cql_alpha: 3.0}\n")  # a built-in's name
    code, out, err = door()
    assert code == 2 and err.strip() == (
        f"error: hydra.searchpath: {conf}/algorithm/cql.yaml has the name of the built-in "
        f"{ROOT}/harness/conf/algorithm/cql.yaml, which Hydra reads first, so yours would be ignored; rename yours "
        f"(e.g. cql_mine.yaml) and choose it by that name"), err
    (conf / "algorithm" / "cql.yaml").unlink()
    (conf / "algorithm" / "cql_mine.yaml").write_text("name: cql\nhparams: {cql_alpha: [3.0\n")  # a syntax error
    code, out, err = door()
    assert code == 2 and err.startswith(f"error: hydra.searchpath: {conf}/algorithm/cql_mine.yaml is not valid YAML ("), err
    (conf / "algorithm" / "cql_mine.yaml").write_text("defaults: [cql, _self_]\nname: cql\nhparams: {cql_alpha: 3.0}\n")
    code, out, err = door("algorithm=cql_mine", "seed=0")  # renamed: a choice of its own, its values used
    assert code == 0, err
    code, out_builtin, err = door("algorithm=cql", "seed=0")
    job_ids = [line.split()[-5] for line in (out, out_builtin) for line in line.splitlines() if line.startswith("cql ")]
    assert len(job_ids) == 2 and job_ids[0] != job_ids[1]  # cql_alpha 3.0 is another config than the built-in's
