"""Bad input at the real front door, as a new user or a hostile one types it: every case stops
with its exit code and one line naming the field or path, before any work (exit 2: nothing is
written), or, when it only shows while training (exit 1), with a failed summary and nothing that
looks like a result. The front door runs in this process (`runpy`, as `python -m harness.run`)
to keep the table fast; tiny protocols on the PointMaze mini task."""
from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

TINY = ["suite=smoke", "report=false", "progress=false", "protocol.offline_steps=200", "protocol.online_steps=50",
        "protocol.eval_every_offline=100", "protocol.eval_every=50", "protocol.eval_episodes=1",
        "protocol.log_every=100"]
NO_CUDA = not torch.cuda.is_available()

# (command-line arguments, exit code, text of the one error line). {runs} is a fresh runs_dir;
# {file}, {readonly}, {full} and the dataset files of DATA are prepared on demand (below).
CASES = [
    # protocol fields: type, finiteness, range
    (["protocol.offline_steps=nan"], 2, "protocol.offline_steps must be an integer, got nan"),
    (["protocol.offline_steps=inf"], 2, "protocol.offline_steps must be an integer, got inf"),
    (["protocol.online_steps=-1"], 2, "protocol.online_steps must be >= 0, got -1"),
    (["protocol.online_steps=1e12"], 2, "protocol.online_steps must be <= 1,000,000,000"),
    (["protocol.utd=nan"], 2, "protocol.utd must be an integer, got nan"),
    (["protocol.utd=0"], 2, "protocol.utd must be > 0, got 0"),
    (["protocol.utd=2.5"], 2, "protocol.utd must be an integer, got 2.5"),
    (["protocol.eval_every=0"], 2, "protocol.eval_every must be > 0, got 0"),
    (["protocol.eval_every_offline=1.5"], 2, "protocol.eval_every_offline must be an integer, got 1.5"),
    (["protocol.eval_episodes=abc"], 2, "protocol.eval_episodes must be an integer, got 'abc'"),
    (["protocol.log_every=true"], 2, "protocol.log_every must be an integer, got True"),
    (["protocol.checkpoint_every=-5"], 2, "protocol.checkpoint_every must be >= 0, got -5"),
    (["protcol.utd=1"], 2, "unknown option 'protcol.utd'; valid:"),
    (["protocol.utdd=1"], 2, "unknown option 'protocol.utdd'; valid: protocol.checkpoint_every"),
    # seeds, retries, launcher
    (["seed=1.5"], 2, "seed must be an integer, got 1.5"),
    (["seed=abc"], 2, "seed must be an integer, got 'abc'"),
    (["seed=-1"], 2, "seed must be >= 0, got -1"),
    (["seed=99999999999"], 2, "seed must be <= 2,147,483,647"),
    (["suite.seeds=[0,1.5]"], 2, "suite.seeds must be an integer, got 1.5"),
    (["retries=-1"], 2, "retries must be >= 0, got -1"),
    (["retries=two"], 2, "retries must be an integer, got 'two'"),
    (["launcher.workers=-1"], 2, "launcher.workers must be >= 0, got -1"),
    (["launcher.workers=two"], 2, "launcher.workers must be an integer, got 'two'"),
    (["launcher.workers=1.5"], 2, "launcher.workers must be an integer, got 1.5"),
    (["launcher.threads=2"], 2, "unknown option 'launcher.threads'; valid: launcher.name"),
    (["threads=0"], 2, "threads must be a whole number from 1 to 4,096 (torch threads per job), got 0"),
    (["threads=1.5"], 2, "threads must be a whole number from 1 to 4,096 (torch threads per job), got 1.5"),
    (["launcher=slurm", "launcher.poll_s=0"], 2, "launcher.poll_s must be > 0, got 0.0"),
    (["launcher=slurm", "launcher.timeout_min=1.5"], 2, "launcher.timeout_min must be an integer, got 1.5"),
    (["suite.algorithm_seeds.sac=[0]"], 2, "suite.algorithm_seeds.sac: 'sac' is not in suite.algorithms"),
    (["suite.algorithm_seeds.cql=[0,-1]"], 2, "suite.algorithm_seeds.cql must be >= 0, got -1"),
    (["suite.seeds_per_process=0"], 2, "suite.seeds_per_process must be >= 1, got 0"),
    (["suite.seeds_per_process=2.5"], 2, "suite.seeds_per_process must be an integer, got 2.5"),
    (["suite.seeds_per_process=two"], 2, "suite.seeds_per_process must be an integer, got 'two'"),
    (["suite.seeds_per_process=99999"], 2, "suite.seeds_per_process must be <= 4,096, got 99,999"),
    (["task=visual-pick-place", "suite.seeds=[0,1]", "suite.seeds_per_process=2"], 2,
     "task 'visual-pick-place' has image observations, which train one seed per process"),
    (["logger=[csv,mlflow]"], 2, "unknown logger 'mlflow'; choose from"),
    (["launcher.workerz=2"], 2, "unknown option 'launcher.workerz'; valid: launcher.name"),
    # hyperparameters, replay and reward of the chosen method
    (["algorithm=cql", "algorithm.hparams.cql_alpha=-1"], 2, "algorithm.hparams.cql_alpha must be >= 0, got -1.0"),
    (["algorithm=cql", "algorithm.hparams.cql_alpha=nan"], 2, "algorithm.hparams.cql_alpha must be a finite number, got nan"),
    (["algorithm=cql", "algorithm.hparams.cql_alpha=inf"], 2, "algorithm.hparams.cql_alpha must be a finite number, got inf"),
    (["algorithm=cql", "algorithm.hparams.cql_alfa=1"], 2, "unknown option(s) algorithm.hparams.cql_alfa; valid:"),
    (["algorithm=cql", "algorithm.hparams.cql_lagrange=yes"], 2, "algorithm.hparams.cql_lagrange must be true or false, got 'yes'"),
    (["algorithm=cql", "algorithm.hparams.actor_lr=0"], 2, "algorithm.hparams.actor_lr must be > 0, got 0.0"),
    (["algorithm=iql", "algorithm.hparams.expectile=1.5"], 2, "algorithm.hparams.expectile must be in (0, 1), got 1.5"),
    (["algorithm=calql", "algorithm.hparams.critic_hidden=[256,0]"], 2,
     "algorithm.hparams.critic_hidden must be a list of positive integers, got [256, 0]"),
    (["algorithm=td3bc", "algorithm.hparams.policy_freq=2.5"], 2, "algorithm.hparams.policy_freq must be an integer, got 2.5"),
    (["algorithm=calql", "algorithm.replay.batch_size=2.5"], 2, "algorithm.replay.batch_size must be an integer, got 2.5"),
    (["algorithm=calql", "algorithm.replay.batch_size=1000000000000"], 2, "algorithm.replay.batch_size must be <= 1,048,576"),
    (["algorithm=calql", "algorithm.replay.mixing_ratio=nan"], 2, "algorithm.replay.mixing_ratio must be a finite number, got nan"),
    (["algorithm=calql", "algorithm.replay.mode=mixed"], 2,
     "algorithm.replay.mode must be 'mix', 'append' or 'online', got 'mixed'"),
    (["protocol.warmup_steps=-1"], 2, "protocol.warmup_steps must be >= 0, got -1"),
    (["protocol.warmup_policy=random"], 2, "protocol.warmup_policy must be 'policy' or 'uniform', got 'random'"),
    (["algorithm=rlpd", "algorithm.protocol.utd=0"], 2, "protocol.utd must be > 0, got 0"),
    (["algorithm=rlpd", "algorithm.protocol.utdd=1"], 2, "unknown option(s) algorithm.protocol.utdd; valid:"),
    (["algorithm=cql", "algorithm.reward.scale=nan"], 2, "algorithm.reward.scale must be a finite number, got nan"),
    (["algorithm=cql", "algorithm.reward.scale=0"], 2, "algorithm.reward.scale must be > 0, got 0.0"),
    (["algorithm=cql", "algorithm.reward.shift=inf"], 2, "algorithm.reward.shift must be a finite number, got inf"),
    (["+algorithm.hparams.cql_alpha=1"], 2, "algorithm.hparams.cql_alpha needs algorithm=NAME on the command line"),
    (["suite.algorithm_overrides.hparams.gamma=1.5"], 2, "algorithm.hparams.gamma must be in (0, 1), got 1.5"),
    # the image encoder (every method's; checked on vector tasks too, where it is unused)
    (["algorithm=cql", "algorithm.hparams.augment_pad=-1"], 2, "algorithm.hparams.augment_pad must be >= 0, got -1"),
    (["algorithm=iql", "algorithm.hparams.augment_pad=2.5"], 2, "algorithm.hparams.augment_pad must be an integer, got 2.5"),
    (["algorithm=awac", "algorithm.hparams.encoder_feature_dim=0"], 2,
     "algorithm.hparams.encoder_feature_dim must be >= 1, got 0"),
    (["algorithm=td3bc", "algorithm.hparams.encoder_feature_dim=1e12"], 2,
     "algorithm.hparams.encoder_feature_dim must be <= 65,536, got 1,000,000,000,000"),
    (["algorithm=calql", "algorithm.hparams.encoder_channels=[]"], 2,
     "algorithm.hparams.encoder_channels must be a non-empty list of integers in [1, 65,536], got []"),
    (["algorithm=rlpd", "algorithm.hparams.encoder_channels=[32,-1]"], 2,
     "algorithm.hparams.encoder_channels must be a list of positive integers, got [32, -1]"),
    (["task=visual-pick-place", "algorithm=cql", "seed=0", "algorithm.hparams.encoder_channels=[8," + "8," * 15 + "8]"], 2,
     "algorithm.hparams.encoder_channels has 17 conv layers, which leave no pixels of its 64x64 images; use at most 16"),
    (["task=visual-pick-place", "algorithm=iql", "seed=0", "algorithm.hparams.augment_pad=64"], 2,
     "algorithm.hparams.augment_pad must be below the images' 64x64 pixels, got 64"),
    # device
    (["device=gpu"], 2, "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    pytest.param(["device=cuda"], 2, "device=cuda but torch finds no CUDA device",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA is here")),
    (["device=cuda:7"], 2, "device=cuda:7 but torch finds"),
    # runs_dir: impossible, unwritable, full
    (["runs_dir={file}"], 2, "runs_dir {file}: {file} is a file, not a folder"),
    (["runs_dir={file}/runs"], 2, "runs_dir {file}/runs: {file} is a file, not a folder"),
    (["runs_dir={runs}/" + "x" * 300], 2, "is longer than 255 bytes"),
    (["runs_dir={readonly}/runs"], 2, "runs_dir {readonly}/runs is on a read-only file system"),
    (["runs_dir={full}/runs"], 2, "runs_dir {full}/runs: only"),
    # datasets: refused by the preflight, naming the file
    (["task=antmaze-umaze", "algorithm=calql", "seed=0"], 2, "{corrupt_d4rl} is corrupt"),
    (["task=antmaze-umaze-diverse", "algorithm=calql", "seed=0"], 2, "{no_timeouts} has no 'timeouts' key(s)"),
    (["task=door-binary", "algorithm=awac", "seed=0"], 2,
     "door-binary: dataset corrupt: {truncated_npy}: could not be read (UnpicklingError"),
    (["task=pen-binary", "algorithm=awac", "seed=0"], 2,
     "pen-binary: dataset corrupt: {nan_npy}: trajectory 1 has NaN or inf in 'observations'"),
    (["task=relocate-binary", "algorithm=awac", "seed=0"], 2,
     "relocate-binary: dataset corrupt: {misshapen_npy}: trajectory 0: observations have shape (30,) and actions (30,), "
     "the environment gives (39,)"),
    # ... or, read only when a job loads it, failed with a failed summary
    (["task=antmaze-medium-play", "algorithm=iql", "seed=0"], 1, "{nan_d4rl}: 'action' contains NaN or inf values"),
    # divergence: only seen while training; the run is failed, never done
    (["algorithm=iql", "seed=0", "algorithm.reward.scale=1e30"], 1,
     "diverged: non-finite critic_loss first at update"),
    (["algorithm=iql", "seed=0", "algorithm.hparams.actor_lr=1e30"], 2,  # a learning rate above 1: refused up front
     "algorithm.hparams.actor_lr must be <= 1 (a learning rate), got 1e+30"),
]


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"needs permission to mount a tmpfs ({proc.stderr.strip()})")


# Damaged dataset files under O2O_DATA_DIR (each task's own file name, see tasks/*.py).
DATA = {"corrupt_d4rl": "d4rl/antmaze-umaze-v2.hdf5", "no_timeouts": "d4rl/antmaze-umaze-diverse-v2.hdf5",
        "nan_d4rl": "d4rl/antmaze-medium-play-v2.hdf5", "truncated_npy": "awac/door2_sparse.npy",
        "nan_npy": "awac/pen2_sparse.npy", "misshapen_npy": "awac/relocate2_sparse.npy"}


def write_d4rl(path: Path, keys=("observations", "actions", "rewards", "terminals", "timeouts"), n: int = 50) -> None:
    shapes = {"observations": (n, 29), "actions": (n, 8)}
    with h5py.File(path, "w") as f:
        for key in keys:
            data = np.zeros(shapes.get(key, (n,)), np.float32)
            if key == "timeouts":
                data[n // 2 - 1::n // 2] = 1
            f.create_dataset(key, data=data)


def write_awac(path: Path, obs_dim: int, act_dim: int, trajectories: int = 2, T: int = 10) -> None:
    g = np.random.default_rng(0)
    paths = [{"observations": g.standard_normal((T, obs_dim)), "actions": g.uniform(-1, 1, (T, act_dim)),
              "next_observations": g.standard_normal((T, obs_dim)), "rewards": -np.ones(T),
              "env_infos": {"goal_achieved": np.arange(T) == T // 2}} for _ in range(trajectories)]
    np.save(path, np.array(paths, dtype=object), allow_pickle=True)


def write_damaged(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "corrupt_d4rl":  # an interrupted download
        write_d4rl(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif name == "no_timeouts":
        write_d4rl(path, keys=("observations", "actions", "rewards", "terminals"))
    elif name == "nan_d4rl":
        write_d4rl(path)
        with h5py.File(path, "r+") as f:
            f["actions"][7, 3] = np.nan
    elif name == "truncated_npy":
        write_awac(path, 39, 28)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif name == "nan_npy":
        write_awac(path, 45, 24)
        paths = np.load(path, allow_pickle=True)
        paths[1]["observations"][4, 2] = np.nan
        np.save(path, paths, allow_pickle=True)
    elif name == "misshapen_npy":
        write_awac(path, 30, 30)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Paths the cases name, made on first use: a file, a read-only and a full file system, and
    the damaged dataset files of DATA (under root/data, the O2O_DATA_DIR of the cases)."""
    root = tmp_path_factory.mktemp("places")
    mounts: list[Path] = []

    def make(name: str) -> str:
        path = root / name
        if name == "file":
            path.write_text("not a folder\n")
        elif name == "readonly":
            mount_tmpfs(path, "ro,size=1m")
            mounts.append(path)
        elif name == "full":
            mount_tmpfs(path, "size=1m")
            mounts.append(path)
        elif name == "data":
            for key, rel in DATA.items():
                write_damaged(path / rel, key)
        return str(path)

    made: dict[str, str] = {}
    yield lambda name: made.setdefault(name, make(name))
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def front_door(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m harness.run ARGV` in this process; (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["harness.run", *argv]
    try:
        runpy.run_module("harness.run", run_name="__main__", alter_sys=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def files_under(*roots: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for r in roots if r.exists() for p in r.rglob("*") if p.is_file()}


@pytest.mark.parametrize("args, code, message", CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_bad_input(args, code, message, places, tmp_path, capsys, monkeypatch):
    runs, cwd = tmp_path / "runs", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # anything written "here" (e.g. MUJOCO_LOG.TXT) is caught below
    fill = {"runs": str(runs)}
    for name in ("file", "readonly", "full"):
        if any("{" + name + "}" in a for a in [*args, message]):
            fill[name] = places(name)
    if any(a.startswith("task=") for a in args):  # every dataset a case reads is one of DATA
        data = Path(places("data"))
        monkeypatch.setenv("O2O_DATA_DIR", str(data))
        fill.update({key: str(data / rel) for key, rel in DATA.items()})
    args = [a.format(**fill) for a in args]
    message = message.format(**fill)
    if not any(a.startswith("runs_dir=") for a in args):
        args.append(f"runs_dir={runs}")
    watched = [tmp_path, *[Path(fill[k]) for k in ("readonly", "full") if k in fill]]
    before = files_under(*watched)

    got, out, err = front_door([*TINY, *args], capsys)

    assert got == code, f"exit {got}:\n{out[-1500:]}\n{err[-1500:]}"
    if code == 2:  # refused before any work: one error line, nothing written anywhere
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], err
        assert len(err.strip().splitlines()) == 1, err
        assert files_under(*watched) == before
        assert not runs.exists()
    else:  # failed while training: a failed summary, no results, no stray files
        failed = [line for line in err.splitlines() if line.startswith("FAILED") and message in line]
        assert len(failed) == 1, err
        import json

        new = {p: n for p, n in files_under(*watched).items() if p not in before}
        summaries = [p for p in new if p.name == "summary.json"]
        assert len(summaries) == 1 and json.loads(summaries[0].read_text())["status"] == "failed"
        assert message in json.loads(summaries[0].read_text())["error"]
        run_dir = summaries[0].parent
        allowed = {run_dir / f for f in ("summary.json", "config.yaml", "evals.csv", "train.csv", "episodes.csv")}
        assert set(new) <= allowed | {runs / "smoke" / "jobs.json"}, sorted(new)
        assert all(n > 0 for n in new.values())  # no 0-byte file
        assert not (run_dir / "checkpoint").exists() and not any(cwd.iterdir())


def test_table_covers_every_class_with_40_inputs():
    assert len(CASES) >= 40
    text = " ".join(" ".join(c.values[0] if hasattr(c, "values") else c[0]) for c in CASES)
    for field in ("protocol.", "seed=", "retries=", "launcher.workers=", "algorithm.hparams.", "algorithm.replay.",
                  "algorithm.reward.", "device=", "runs_dir=", "task=antmaze", "-binary", "augment_pad=",
                  "encoder_feature_dim=", "encoder_channels=", "task=visual-pick-place"):
        assert field in text


# -- the report and the store -----------------------------------------------------------------
def small_store(root: Path) -> Path:
    from tests.reports import synthetic

    synthetic.write_store(root, methods=["calql", "cql"], tasks=[("maze-a", "antmaze", 2_000, 100)], seeds=range(2),
                          online_every=500, offline_steps=1_000, offline_every=500)
    return root


def report(argv, capsys) -> tuple[int, str]:
    from reports.__main__ import main

    code = main([*argv, "--reps", "100"])
    return code, capsys.readouterr().err


def test_report_of_a_missing_folder_creates_nothing(tmp_path, capsys):
    code, err = report([str(tmp_path / "nope")], capsys)
    assert code == 1 and err.strip() == f"error: runs directory {tmp_path / 'nope'} does not exist; run python -m harness.run first"
    assert not any(tmp_path.iterdir())


def test_report_on_a_read_only_store_suggests_out(tmp_path, capsys):
    store = tmp_path / "store"
    mount_tmpfs(store, "size=64m")
    try:
        small_store(store)
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
        before = files_under(store)
        code, err = report([str(store)], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert f"cannot write the report into {store / 'report'}" in err and "--out DIR" in err
        assert files_under(store) == before
        code, err = report([str(store), "--out", str(tmp_path / "elsewhere")], capsys)
        assert code == 0, err
        assert (tmp_path / "elsewhere" / "index.html").exists()
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


def test_report_on_a_full_disk_leaves_no_partial_file(tmp_path, capsys):
    store = small_store(tmp_path / "store")
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=96k")  # room for some tables, not for the figures
    out = disk / "report"
    try:
        code, err = report([str(store), "--out", str(out)], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "free space or write it elsewhere" in err, err
        assert files_under(disk) == {}  # the report is swapped in whole: no part of it, no temporary
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_truncated_summary_is_listed_as_unreadable_and_the_rest_builds(tmp_path, capsys):
    store = small_store(tmp_path / "store")
    broken = next(store.glob("*/maze-a/cql/seed1")) / "summary.json"
    broken.write_text(broken.read_text()[:40])
    code, err = report([str(store)], capsys)
    assert code == 0, err
    html = next(store.glob("report/index.html")).read_text()
    assert f"unreadable: {broken} (JSONDecodeError)" in html
    import pandas as pd

    runs = pd.read_csv(store / "report" / "runs.csv")
    assert runs["included"].sum() == 3 and (runs["status"] == "unreadable").sum() == 1


def test_finished_study_reruns_on_a_read_only_mount(tmp_path, capsys):
    runs = tmp_path / "runs"
    mount_tmpfs(runs, "size=128m")
    try:
        args = [*TINY, "algorithm=td3bc", "seed=0", f"runs_dir={runs}", "report=true"]
        code, out, err = front_door(args, capsys)
        assert code == 0, err
        subprocess.run(["mount", "-o", "remount,ro", str(runs)], check=True)
        before = files_under(runs)
        code, out, err = front_door(args, capsys)
        assert code == 0, err
        assert "1/1 done" in out and "report not rebuilt" in out and "--out DIR" in out
        assert files_under(runs) == before
        # with work left to do, the read-only mount is refused before any work, in one line
        code, out, err = front_door([*args, "seed=1"], capsys)
        assert code == 2 and err.strip() == f"error: runs_dir {runs} is on a read-only file system; choose another runs_dir"
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)


def test_a_nan_policy_fails_before_env_step(tmp_path, monkeypatch):
    """A policy that gives NaN actions while its losses stay finite: refused before env.step
    (MuJoCo would warn and write MUJOCO_LOG.TXT), the run failed, never done."""
    import json

    import algorithms
    from algorithms.td3bc import TD3BC
    from harness.runner import Diverged, run_job

    from tests.harness.test_overrides import jobs

    class NaNPolicy(TD3BC):
        def policy(self, obs, deterministic):
            return torch.full((*obs.shape[:-1], self.action_spec.dim), float("nan"), device=obs.device)

    monkeypatch.setitem(algorithms.base.REGISTRY, "td3bc", NaNPolicy)
    monkeypatch.chdir(tmp_path)
    job = jobs(*TINY, "algorithm=td3bc", "seed=0", "protocol.offline_steps=20", "protocol.eval_every_offline=20",
               "protocol.log_every=10")[0]
    with pytest.raises(Diverged, match=r"the policy gave a non-finite action at update 20 \(offline evaluation"):
        run_job(job, tmp_path / "run", progress_bar=False)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
