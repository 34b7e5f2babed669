"""The README's "Add your own method" example works as printed: its code blocks are written where
they say, in a copy of the repository, and its commands run (the study as a dry run, the single
run for real with a tiny protocol). An entry-point method is found with no edit to the repository."""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import algorithms

ROOT = Path(__file__).resolve().parents[2]
TINY = ["protocol.offline_steps=100", "protocol.online_steps=200", "protocol.eval_every_offline=100",
        "protocol.eval_every=200", "protocol.eval_episodes=1", "protocol.log_every=50",
        "protocol.checkpoint_every=0", "report=false", "progress=false"]


def example_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Add your own method", 1)[1].split("\n## ", 1)[0]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


@pytest.fixture
def repo_copy(tmp_path):
    dst = tmp_path / "repo"
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info", "outputs"))
    return dst


@pytest.mark.slow
def test_readme_example_method_runs_as_printed(repo_copy):
    section = example_section()
    for block in blocks(section, "python") + blocks(section, "yaml"):
        path = block.splitlines()[0].lstrip("# ").strip()  # each block names its file first
        (repo_copy / path).write_text(block)
    commands = [c for c in blocks(section, "bash")[0].splitlines() if c.strip()]
    env = {**os.environ, "PYTHONPATH": str(repo_copy)}

    def run(cmd, *extra):
        argv = [a.strip("'") for a in cmd.split()[1:]]  # drop "python", unquote like a shell
        out = subprocess.run([sys.executable, *argv, *extra], cwd=repo_copy, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    table = run(commands[0], "dry_run=true")
    for name in ("calql", "cql", "iql", "td3bc", "awac", "bc"):
        assert re.search(rf"^{name}\s", table, re.M), table
    run(commands[1], *TINY, f"runs_dir={repo_copy / 'runs'}")
    summary = (repo_copy / "runs" / "default" / "pointmaze-umaze-diverse" / "bc" / "seed0" / "summary.json").read_text()
    assert '"status": "done"' in summary


def test_entry_point_method_is_found_without_editing_the_repository(tmp_path, monkeypatch):
    pkg = tmp_path / "my_o2o_method"
    (pkg / "conf" / "algorithm").mkdir(parents=True)
    (pkg / "conf" / "algorithm" / "mine_ep.yaml").write_text(
        "name: mine_ep\nreplay: {mode: append}\nreward: {scale: 1.0, shift: 0.0}\nhparams: {alpha: 2.0}\n")
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from algorithms.base import Algorithm
        from algorithms.td3bc import TD3BCConfig


        class Mine(Algorithm):
            Config = TD3BCConfig

            def update(self, batch):
                return {}

            def policy(self, obs, deterministic):
                return obs[:, :1]
        '''))
    dist = tmp_path / "my_o2o_method-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-o2o-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[o2o_bench.algorithms]\nmine_ep = my_o2o_method:Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "mine_ep" in algorithms.available()
        assert algorithms.get("mine_ep").name == "mine_ep"
    finally:
        algorithms.REGISTRY.pop("mine_ep", None)
    # its yaml, shipped in the package's conf/algorithm/, is found by the front door
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    door = [sys.executable, "-m", "harness.run", "suite.algorithms=[cql,mine_ep]", "dry_run=true"]
    out = subprocess.run([*door, "suite.seeds_per_process=1"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^mine_ep\s", out.stdout, re.M), out.stdout
    # written for one seed (multi_seed = False): refused in a suite that trains 2 seeds per process
    out = subprocess.run(door, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "algorithm 'mine_ep' trains one seed per process" in out.stderr, out.stderr
