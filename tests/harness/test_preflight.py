"""The paper's suite without any dataset here: the dry run prints the job table; a real run
stops in seconds, before any job, with one line per missing dataset and how to get it. And the
`python -m tasks` command line."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALGOS = "suite.algorithms=[calql,cql]"  # iql, td3bc, awac come from another issue


def run(*args, tmp_path):
    env = {**os.environ, "O2O_DATA_DIR": str(tmp_path / "data"), "MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_full_suite_dry_run_needs_no_data(tmp_path):
    proc = run("-m", "harness.run", "suite=full", ALGOS, "dry_run=true", f"runs_dir={tmp_path / 'runs'}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [l for l in proc.stdout.splitlines() if l.startswith(("calql", "cql"))]
    assert len(rows) == 2 * 11 * 4  # the 10 state-based tasks and OGBench's visual-cube-single
    assert any("visual-cube-single-play-singletask-task1" in r and "500,000" in r for r in rows)
    assert any("antmaze-large-diverse" in r and "1,000,000" in r for r in rows)
    assert any("pen-binary" in r and "20,000" in r and "200,000" in r for r in rows)
    assert not (tmp_path / "runs").exists()


def test_full_suite_preflight_lists_what_is_missing(tmp_path):
    proc = run("-m", "harness.run", "suite=full", ALGOS, f"runs_dir={tmp_path / 'runs'}", tmp_path=tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.splitlines()
    assert any(l.startswith("error: 10 problem(s) before any job starts") for l in err), proc.stderr[-2000:]
    missing = [l for l in err if "dataset missing" in l]
    assert len(missing) == 10 and all("To get it:" in l for l in missing)
    assert not any("environment does not run" in l for l in err)  # every env of the suite runs
    assert not (tmp_path / "runs").exists()


def test_tasks_cli(tmp_path):
    proc = run("-m", "tasks", "list", tmp_path=tmp_path)
    assert proc.returncode == 0
    lines = {l.split()[0]: l.split() for l in proc.stdout.splitlines()[1:]}
    assert lines["kitchen-mixed"][1:3] == ["kitchen", "no"] and "pen-binary" in lines
    assert lines["cube-double-play-singletask"][1:] == ["alias", "of", "cube-double-play-singletask-post"]
    proc = run("-m", "tasks", "info", "cube-double-play-singletask", tmp_path=tmp_path)  # an alias: its task
    assert proc.returncode == 0 and "task:      cube-double-play-singletask-post" in proc.stdout
    proc = run("-m", "tasks", "info", "door-binary", tmp_path=tmp_path)
    assert proc.returncode == 0 and "door2_sparse.npy" in proc.stdout and "39 / 28" in proc.stdout
    proc = run("-m", "tasks", "generate", "kitchen-partial", tmp_path=tmp_path)
    assert proc.returncode == 2 and "is not generated" in proc.stderr
    proc = run("-m", "tasks", "info", "nope", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr


def test_download_without_network_fails_at_once(monkeypatch):
    import time

    import pytest

    import tasks
    import tasks.sources as sources
    from tasks.base import DatasetError

    monkeypatch.setattr(sources, "_reachable", lambda host, port=443, timeout=3.0: False)
    t0 = time.monotonic()
    with pytest.raises(DatasetError, match=r"cannot reach huggingface.co to download 'D4RL/kitchen/mixed-v2'; .*minari download"):
        tasks.get("kitchen-mixed").download()
    assert time.monotonic() - t0 < 1.0


def test_the_preflight_sizes_convs_as_the_pixel_encoder_stacks_them():
    """The preflight's arithmetic (which encoders fit a task's images) against the real encoder."""
    import pytest
    import torch

    from algorithms.common.encoder import PixelEncoder
    from harness.preflight import conv_sizes

    for image in ((3, 64, 64), (3, 84, 84), (1, 9, 12)):
        for layers in range(1, 25):
            size = conv_sizes(image, layers)
            if min(size) >= 1:
                encoder = PixelEncoder(image, 0, (2,) * layers, 4, 0)
                assert tuple(encoder.convs(torch.zeros(1, *image)).shape[-2:]) == size
            else:
                with pytest.raises(RuntimeError):
                    PixelEncoder(image, 0, (2,) * layers, 4, 0)
