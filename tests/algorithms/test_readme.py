"""The method example of docs/adding-a-method.md (linked from the README) works as printed: its code
blocks are written where they say, in a copy of the repository, and its commands run (the study as
a dry run, the single run for real with a tiny protocol). An entry-point method is found with no
edit to the repository, and a real wheel of one, laid out as docs/plugins.md says, runs from the
front door."""
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
    assert "docs/adding-a-method.md" in (ROOT / "README.md").read_text()  # the README's door to it
    return (ROOT / "docs" / "adding-a-method.md").read_text()


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_readme_excerpt_is_from_the_example():
    """The README's excerpt cannot drift from the example the tests run: every line of it (but the
    elided `...` ones) is in the example's code, in the same order."""
    readme = (ROOT / "README.md").read_text().split("## Add your own method", 1)[1].split("\n## ", 1)[0]
    (excerpt,) = blocks(readme, "python")
    (code,) = blocks(example_section(), "python")
    lines, at = code.splitlines(), 0
    for line in (l for l in excerpt.splitlines() if l.strip() and not l.strip().startswith("...")):
        assert line in lines[at:], f"README excerpt line not in docs/adding-a-method.md's example: {line!r}"
        at = lines.index(line, at) + 1


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
    for name in ("calql", "cql", "bc"):
        assert re.search(rf"^{name}\s", table, re.M), table
    run(commands[1], *TINY, f"runs_dir={repo_copy / 'runs'}")
    summary = (repo_copy / "runs" / "default" / "pointmaze-umaze-diverse" / "bc" / "seed0" / "summary.json").read_text()
    assert '"status": "done"' in summary


def test_entry_point_method_is_found_without_editing_the_repository(tmp_path, monkeypatch):
    pkg = tmp_path / "my_o2o_method"
    (pkg / "conf" / "algorithm").mkdir(parents=True)
    (pkg / "conf" / "algorithm" / "mine_ep.yaml").write_text(
        "name: mine_ep\nreplay: {mode: append}\nreward: {scale: 1.0, shift: 0.0}\nhparams: {alpha: 2.0}\n")
    (pkg / "__init__.py").write_text(PLUGIN_INIT)
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
    door = [sys.executable, "-m", "harness.run", "suite=smoke", "suite.algorithms=[cql,mine_ep]", "dry_run=true"]
    out = subprocess.run([*door, "suite.seeds_per_process=1"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^mine_ep\s", out.stdout, re.M), out.stdout
    # written for one seed (multi_seed = False): refused in a suite that trains 2 seeds per process
    out = subprocess.run([*door, "suite.seeds=[0,1]", "suite.seeds_per_process=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "algorithm 'mine_ep' trains one seed per process" in out.stderr, out.stderr
    # `algorithm=mine_ep` needs Hydra's search path: without it, one line saying what to add
    out = subprocess.run([sys.executable, "-m", "harness.run", "algorithm=mine_ep", "dry_run=true"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-2000:]
    assert "'hydra.searchpath=[pkg://my_o2o_method.conf]'" in errors[0], errors


PLUGIN_INIT = '''
from algorithms.base import Algorithm
from algorithms.td3bc import TD3BCConfig


class Mine(Algorithm):
    Config = TD3BCConfig

    def update(self, batch):
        return {}

    def policy(self, obs, deterministic):
        return obs[:, :1]
'''


def build_plugin_wheel(root: Path, package_data: bool) -> Path:
    """A wheel of a one-method package laid out as docs/plugins.md says (with or without the
    package-data table), built by setuptools offline."""
    pkg = root / "src" / "my_plug"
    (pkg / "conf" / "algorithm").mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN_INIT)
    (pkg / "conf" / "__init__.py").write_text("")
    (pkg / "conf" / "algorithm" / "mine_whl.yaml").write_text(
        "name: mine_whl\nreplay: {mode: append}\nreward: {scale: 1.0, shift: 0.0}\nhparams: {alpha: 2.0}\n")
    (root / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "my-plug"
        version = "0.1"

        [project.entry-points."o2o_bench.algorithms"]
        mine_whl = "my_plug:Mine"

        [tool.setuptools.packages.find]
        where = ["src"]
        ''') + ('\n[tool.setuptools.package-data]\nmy_plug = ["conf/algorithm/*.yaml"]\n' if package_data else ""))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w",
                    str(root / "dist"), str(root)], check=True, capture_output=True, timeout=120)
    (wheel,) = (root / "dist").glob("*.whl")
    return wheel


@pytest.mark.slow
def test_plugin_wheel_needs_package_data_and_runs_with_the_search_path(tmp_path):
    import zipfile

    yaml_in = lambda wheel: "my_plug/conf/algorithm/mine_whl.yaml" in zipfile.ZipFile(wheel).namelist()  # noqa: E731
    assert not yaml_in(build_plugin_wheel(tmp_path / "bare", package_data=False))  # docs/plugins.md's warning
    wheel = build_plugin_wheel(tmp_path / "pkg", package_data=True)
    assert yaml_in(wheel)
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "harness.run", "algorithm=mine_whl", "hydra.searchpath=[pkg://my_plug.conf]",
                          "task=pointmaze-umaze-diverse", "seed=0", "dry_run=true", f"runs_dir={tmp_path / 'runs'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^mine_whl\s", out.stdout, re.M), out.stdout
