"""TensorBoard and W&B (offline) next to the CSV files, read back with their own readers: the same
rows, steps and values as train.csv / evals.csv / episodes.csv; after a kill -9 and a resume, every
step exactly once; a missing package or an unknown tracker stops the front door with one line."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RUN = "default/pointmaze-umaze-diverse/iql/seed0"
OFFLINE_STEPS, ONLINE_STEPS = 200, 300
FAST = ["algorithm=iql", "task=pointmaze-umaze-diverse", "seed=0", "algorithm.replay.batch_size=32",
        f"protocol.offline_steps={OFFLINE_STEPS}", f"protocol.online_steps={ONLINE_STEPS}",
        "protocol.eval_every_offline=100", "protocol.eval_every=100", "protocol.eval_episodes=1",
        "protocol.log_every=20", "protocol.checkpoint_every=50", "progress=false", "report=false",
        "threads=1", "logger=[csv,tensorboard,wandb]"]


def env(tmp: Path) -> dict:
    """No network here: W&B offline, its config and cache in the test's directory."""
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
            "WANDB_CACHE_DIR": str(tmp / "wandb-cache"), "WANDB_DATA_DIR": str(tmp / "wandb-data")}


def start(runs: Path, *extra):
    return subprocess.Popen([sys.executable, "-m", "harness.run", *FAST, f"runs_dir={runs}", *extra], cwd=ROOT,
                            env=env(runs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(runs: Path, *extra) -> str:
    proc = start(runs, *extra)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return out


def csv_curves(d: Path) -> dict[str, pd.DataFrame]:
    """The store's rows per tracker kind, indexed by the trackers' step (gradient updates)."""
    train = pd.read_csv(d / "train.csv", float_precision="round_trip").set_index("step").drop(columns=["phase"])
    evals = pd.read_csv(d / "evals.csv", float_precision="round_trip").set_index("step").drop(columns=["phase"])
    episodes = pd.read_csv(d / "episodes.csv", float_precision="round_trip")
    episodes.index = OFFLINE_STEPS + episodes.env_steps  # utd 1: the update count at the episode's end
    return {"train": train, "eval": evals, "episode": episodes}


def tensorboard_scalars(d: Path):
    """{tag: [(step, value)]} as TensorBoard's reader resolves the event files, and the reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(d / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def wandb_records(d: Path) -> list[list]:
    """Every `.wandb` file of the run (one per attempt, oldest first), read with wandb's own reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    files = []
    for path in sorted(d.glob("wandb/offline-run-*/run-*.wandb")):
        store, records = DataStore(), []
        store.open_for_scan(str(path))
        try:
            while (data := store.scan_data()) is not None:
                record = wandb_internal_pb2.Record()
                record.ParseFromString(data)
                records.append(record)
        except Exception:  # the file of a killed attempt may end in half a block
            pass
        files.append(records)
    return files


def wandb_history(records) -> dict[int, dict[str, float]]:
    rows = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.nested_key[0] if i.nested_key else i.key: json.loads(i.value_json) for i in r.history.item}
            assert r.history.step.num not in rows, f"step {r.history.step.num} twice in one file"
            rows[r.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
    return rows


def check_against_csv(d: Path, tb: dict, history: dict[int, dict]) -> None:
    """Each CSV column is a tracker series with the same steps (each once) and values."""
    for kind, frame in csv_curves(d).items():
        for column in frame.columns:
            series = frame[column].dropna()
            tag = f"{kind}/{column}"
            steps = [s for s, _ in tb[tag]]
            assert steps == list(series.index), tag  # in order, none twice, none missing
            assert [v for _, v in tb[tag]] == pytest.approx(list(series.astype(float)), rel=1e-6), tag  # float32
            logged = {s: row[tag] for s, row in history.items() if tag in row}
            assert sorted(logged) == list(series.index), tag
            assert [logged[s] for s in series.index] == list(series.astype(float)), tag  # exact


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    runs = tmp_path_factory.mktemp("tracked")
    out = finish(runs)
    return runs / RUN, out


@pytest.mark.slow
def test_tensorboard_events_hold_the_csv_rows(tracked):
    d, _ = tracked
    tb, acc = tensorboard_scalars(d)
    for tag in ("train/critic_loss", "train/updates_per_s", "eval/normalized_score", "eval/return",
                "episode/return", "episode/length"):
        assert tag in tb
    assert [s for s, _ in tb["train/critic_loss"]] == list(range(20, OFFLINE_STEPS + ONLINE_STEPS + 1, 20))
    assert [s for s, _ in tb["eval/normalized_score"]] == [100, 200, 300, 400, 500]
    assert {"config", "summary"} <= {t.split("/")[0] for t in acc.Tags()["tensors"]}
    check_against_csv(d, tb, wandb_history(wandb_records(d)[0]))


@pytest.mark.slow
def test_wandb_offline_run_holds_the_csv_rows_config_and_summary(tracked):
    d, out = tracked
    (records,) = wandb_records(d)  # one attempt, one file
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = yaml_config(d)
    assert run.project == "o2o-bench-default" and run.run_group == "pointmaze-umaze-diverse/iql"
    assert run.display_name == "seed0" and run.run_id.startswith(config["job_id"])
    updates = [*run.config.update, *(u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update)]
    logged_config = {u.key: json.loads(u.value_json) for u in updates}
    assert logged_config["job_id"] == config["job_id"] and logged_config["protocol"] == config["protocol"]
    summary = {u.key: json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update}
    stored = json.loads((d / "summary.json").read_text())
    assert summary["final_score"] == stored["final_score"] and summary["status"] == "done"
    check_against_csv(d, tensorboard_scalars(d)[0], wandb_history(records))
    assert f"wandb sync {d.parents[3]}/default/*/*/seed*/wandb/offline-run-*" in out


def yaml_config(d: Path) -> dict:
    import yaml

    return yaml.safe_load((d / "config.yaml").read_text())


@pytest.mark.slow
def test_killed_and_resumed_run_logs_every_step_once(tmp_path):
    proc = start(tmp_path)
    ckpt = tmp_path / RUN / "checkpoint" / "state.pt"
    end, killed_at = time.monotonic() + 600, None
    while time.monotonic() < end and proc.poll() is None and killed_at is None:
        try:
            progress = torch.load(ckpt, weights_only=False)["progress"] if ckpt.exists() else None
        except Exception:  # replaced while reading
            progress = None
        if progress is not None and progress.offline_done and progress.env_steps > 0:  # online checkpoints: at episode ends
            time.sleep(0.3)  # let it log past the checkpoint (not to its end): those steps come again after the resume
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = progress
        time.sleep(0.05)
    assert killed_at is not None, f"the run ended before a checkpoint in its online phase:\n{proc.stdout.read()[-2000:]}"
    finish(tmp_path)
    d = tmp_path / RUN
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "done" and summary["resumes"] == 1
    files = wandb_records(d)
    assert len(files) == 2  # one W&B file per attempt, of one run id
    ids = {r.run.run_id for records in files for r in records if r.WhichOneof("record_type") == "run"}
    assert len(ids) == 1
    histories = [wandb_history(records) for records in files]
    assert not set(histories[0]) & set(histories[1])  # no step in both attempts
    tb, _ = tensorboard_scalars(d)
    check_against_csv(d, tb, {**histories[0], **histories[1]})


@pytest.mark.parametrize("args, needle, missing", [
    (["logger=[csv,neptune]"], "unknown logger 'neptune'", False),
    (["logger=[csv,wandb]"], "needs the wandb package", True),
    (["logger=[csv,wandb]"], "wandb login", False)])  # online, no API key anywhere
def test_bad_or_missing_tracker_is_one_line_before_any_work(tmp_path, args, needle, missing):
    # a missing package, as Python sees one: the import fails (sys.modules entry None)
    code = ("import runpy, sys; " + ("sys.modules['wandb'] = None; " if missing else "")
            + "runpy.run_module('harness.run', run_name='__main__', alter_sys=True)")
    environ = env(tmp_path)
    if needle == "wandb login":
        environ = {k: v for k, v in environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
        environ.update(HOME=str(tmp_path), NETRC=str(tmp_path / "netrc"))
    proc = subprocess.run([sys.executable, "-c", code, *FAST[:-1], *args, f"runs_dir={tmp_path}"], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and needle in errors[0], proc.stderr
    assert "pip install" in errors[0] or "choose from" in errors[0] or "WANDB_MODE=offline" in errors[0]
    assert not (tmp_path / "default").exists()  # no job started


def test_slurm_jobs_get_the_wandb_settings_but_not_the_key(monkeypatch):
    from harness.trackers import slurm_env_exports

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_ENTITY", "my team")
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    lines = slurm_env_exports()
    assert "export WANDB_MODE=offline" in lines and "export WANDB_ENTITY='my team'" in lines
    assert not any("secret" in l or "API_KEY" in l for l in lines)


def test_a_resume_behind_what_the_trackers_hold_repeats_no_step(tmp_path, monkeypatch):
    """The first attempt's trackers got to step 100, its checkpoint only to 60: W&B goes on after
    100 (it keeps what it has), TensorBoard after 60 (its reader drops the first attempt's 80 and
    100 for the new ones); nothing twice, nothing missing."""
    from harness.job import Job
    from harness.trackers import Trackers

    for k, v in env(tmp_path).items():
        if k.startswith("WANDB_"):
            monkeypatch.setenv(k, v)
    job = Job.from_dict({"suite": "default", "seed": 0, "algorithm": {"name": "iql"},
                         "task": {"name": "pointmaze-umaze-diverse", "domain": "pointmaze"},
                         "protocol": {"offline_steps": 1000, "online_steps": 0, "utd": 1},
                         "logger": ["csv", "tensorboard", "wandb"]})
    row = lambda step, attempt: {"phase": "offline", "step": step, "env_steps": 0, "loss": step + attempt / 10}  # noqa: E731
    first = Trackers(job, tmp_path)
    first.start(None, {"train": [], "eval": [], "episode": []})
    for step in range(20, 101, 20):
        first.log("train", row(step, 1), step)
    first.finish(error=True)  # the attempt ends; its files hold steps 20-100
    second = Trackers(job, tmp_path)
    second.start(60, {"train": [row(s, 1) for s in (20, 40, 60)], "eval": [], "episode": []})
    for step in range(80, 141, 20):
        second.log("train", row(step, 2), step)
    second.finish({"status": "done"})
    histories = [wandb_history(records) for records in wandb_records(tmp_path)]
    assert [sorted(h) for h in histories] == [[20, 40, 60, 80, 100], [120, 140]]
    merged = {**histories[0], **histories[1]}
    assert [merged[s]["train/loss"] for s in sorted(merged)] == [20.1, 40.1, 60.1, 80.1, 100.1, 120.2, 140.2]
    tb, _ = tensorboard_scalars(tmp_path)
    assert [s for s, _ in tb["train/loss"]] == [20, 40, 60, 80, 100, 120, 140]
    assert [v for _, v in tb["train/loss"]] == pytest.approx([20.1, 40.1, 60.1, 80.2, 100.2, 120.2, 140.2])
