"""Precedence and one home per value: dataclass defaults < the method's yaml < its `domains:`
block < the suite's overrides < the command line, the job id following what is resolved; the
README's own override example, run as printed; and yamls that hold only what differs."""
from __future__ import annotations

import dataclasses
import json
import re
import runpy
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import algorithms
import tasks
from harness.config import CONF_DIR, CommandLine, expand, group_names, load_group, resolve_algorithm
from harness.job import ReplayConfig, RewardTransform
from tests.harness.test_run import default_suite

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = sorted({t.domain for t in tasks.TASKS.values()})


def jobs(*overrides):
    """The jobs `python -m harness.run OVERRIDES` would run (the front door's own steps)."""
    cli = CommandLine.parse(list(overrides))
    overrides = cli.hydra_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return expand(cfg, cli)


def front_door(argv, capsys):
    old, sys.argv = sys.argv, ["harness.run", *argv]
    try:
        runpy.run_module("harness.run", run_name="__main__", alter_sys=False)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_readme_override_example_takes_effect(tmp_path, capsys):
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if "algorithm.hparams.cql_alpha=1" in l and l.startswith("python -m harness.run"))
    args = line.split("#")[0].split()[3:]
    assert args == ["protocol.online_steps=20000", "algorithm.hparams.cql_alpha=1", "algorithm=cql"]
    code, out, err = front_door([*args, "dry_run=true", f"runs_dir={tmp_path}"], capsys)
    assert code == 0, err
    rows = [l for l in out.splitlines() if l.startswith("cql ")]  # the job table's (not the study's hash)
    printed = set(re.findall(r"\b[0-9a-f]{12}\b", "\n".join(rows)))
    # what it must resolve to: the same jobs without the overrides, with cql_alpha 1 and 20k online steps
    expected = set()
    plain = jobs("algorithm=cql")
    for job in plain:
        assert job.algorithm.hparams["cql_alpha"] == 5.0 and job.task.domain == "pointmaze"
        job = dataclasses.replace(
            job, algorithm=dataclasses.replace(job.algorithm, config=dataclasses.replace(job.algorithm.config, cql_alpha=1.0)),
            protocol=dataclasses.replace(job.protocol, online_steps=20000))
        expected.add(job.job_id)
    suite = default_suite()
    assert printed == expected and len(rows) == len(plain) == len(suite["tasks"]) * len(suite["seeds"])  # cql's jobs
    assert not printed & {j.job_id for j in plain}
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("task", ["pointmaze-umaze-diverse", "antmaze-umaze", "pen-binary", "kitchen-mixed"])
def test_command_line_wins_over_the_domain_block(task):
    base = jobs("algorithm=cql", f"task={task}", "seed=0")[0]
    job = jobs("algorithm=cql", f"task={task}", "seed=0", "algorithm.hparams.cql_alpha=1",
               "algorithm.reward.scale=2", "algorithm.reward.shift=0.5", "algorithm.replay.mixing_ratio=0.3",
               "algorithm.replay.batch_size=64", "task.protocol.utd=2")[0]
    algo = job.algorithm
    assert algo.hparams["cql_alpha"] == 1.0
    assert algo.reward == RewardTransform(scale=2.0, shift=0.5)
    assert algo.replay.mixing_ratio == 0.3 and algo.replay.batch_size == 64
    assert job.protocol.utd == 2
    assert job.job_id != base.job_id
    # everything not overridden is as resolved without the overrides
    assert {k: v for k, v in algo.hparams.items() if k != "cql_alpha"} == \
        {k: v for k, v in base.algorithm.hparams.items() if k != "cql_alpha"}


def test_precedence_layers():
    # dataclass default (tau 0.005) < suite override (dip: 0.05) < command line (0.01)
    assert jobs("suite=smoke", "algorithm=cql", "seed=0")[0].algorithm.hparams["tau"] == 0.005
    dip = jobs("suite=dip", "algorithm=cql", "seed=0")[0].algorithm
    assert dip.hparams["tau"] == 0.05
    # yaml (append) < suite (dip: mix) < command line (append)
    assert jobs("suite=smoke", "algorithm=cql", "seed=0")[0].algorithm.replay.mode == "append"
    assert dip.replay.mode == "mix"
    # domain block (pointmaze reward shift -5) < suite (dip: -1) < command line (-2)
    assert jobs("suite=smoke", "algorithm=cql", "seed=0")[0].algorithm.reward == RewardTransform(scale=10.0, shift=-5.0)
    assert dip.reward == RewardTransform(scale=1.0, shift=-1.0)
    cli = jobs("suite=dip", "algorithm=cql", "seed=0", "algorithm.hparams.tau=0.01", "algorithm.replay.mode=append",
               "algorithm.reward.shift=-2")[0].algorithm
    assert cli.hparams["tau"] == 0.01 and cli.replay.mode == "append" and cli.reward.shift == -2.0
    # the suite's overrides from the command line, for every method of the suite
    both = jobs("suite=smoke", "suite.algorithm_overrides.hparams.cql_alpha=2")
    assert {j.algorithm.name for j in both} == {"calql", "cql"}
    assert all(j.algorithm.hparams["cql_alpha"] == 2.0 for j in both)


def test_a_finished_run_is_not_reused_after_an_override(tmp_path, capsys):
    tiny = ["algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0", f"runs_dir={tmp_path}", "report=false",
            "progress=false", "protocol.offline_steps=20", "protocol.online_steps=20", "protocol.eval_every_offline=20",
            "protocol.eval_every=20", "protocol.eval_episodes=1", "protocol.log_every=10"]
    config = tmp_path / "default" / "pointmaze-umaze-diverse" / "cql" / "seed0" / "config.yaml"
    code, _, err = front_door(tiny, capsys)
    assert code == 0, err
    first = yaml.safe_load(config.read_text())
    assert first["algorithm"]["hparams"]["cql_alpha"] == 5.0
    code, _, err = front_door([*tiny, "algorithm.hparams.cql_alpha=1"], capsys)
    assert code == 2 and "this config resolves to job" in err  # the old run is refused, not reused
    code, _, err = front_door([*tiny, "algorithm.hparams.cql_alpha=1", f"runs_dir={tmp_path / 'b'}"], capsys)
    assert code == 0, err
    second = yaml.safe_load((tmp_path / "b" / config.relative_to(tmp_path)).read_text())
    assert second["algorithm"]["hparams"]["cql_alpha"] == 1.0 and second["job_id"] != first["job_id"]
    summary = json.loads((tmp_path / "b" / config.relative_to(tmp_path)).with_name("summary.json").read_text())
    assert summary["status"] == "done" and summary["job_id"] == second["job_id"]


def test_calql_inherits_cql():
    raw = yaml.safe_load((CONF_DIR / "algorithm" / "calql.yaml").read_text())
    assert raw["defaults"] == ["cql", "_self_"] and "domains" not in raw and "hparams" not in raw
    for domain in DOMAINS:
        cql, calql = (resolve_algorithm(load_group("algorithm", n), domain) for n in ("cql", "calql"))
        assert calql["replay"]["mode"] == "mix" and cql["replay"]["mode"] == "append"
        calql_only = {"calibrate_online"}  # CalQLConfig's own field
        assert set(calql["hparams"]) - set(cql["hparams"]) == calql_only
        assert {k: v for k, v in calql["hparams"].items() if k not in calql_only} == cql["hparams"]
        assert calql["reward"] == cql["reward"]
    # Hydra composes the same inheritance
    assert jobs("algorithm=calql", "task=antmaze-umaze", "seed=0")[0].algorithm.to_dict() == \
        resolve_algorithm(load_group("algorithm", "calql"), "antmaze")


@pytest.mark.parametrize("name", algorithms.available())
def test_yamls_hold_only_what_differs(name):
    """Top level: only values that differ from what it inherits (the dataclass defaults, or the
    yaml its `defaults:` names); each domain block: only values that differ from the top level."""
    own = yaml.safe_load((CONF_DIR / "algorithm" / f"{name}.yaml").read_text())
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    inherited = {"hparams": {f.name: norm(f.default) for f in dataclasses.fields(algorithms.get(name).Config)},
                 "replay": dataclasses.asdict(ReplayConfig()), "reward": dataclasses.asdict(RewardTransform())}
    for parent in [d for d in own.get("defaults", []) if d != "_self_"]:
        parent_cfg = OmegaConf.to_container(load_group("algorithm", parent))
        for section in inherited:
            inherited[section].update(parent_cfg.get(section) or {})
    top = {"protocol": own.get("protocol") or {}}  # the method's protocol: over the task's, whatever it holds
    for section, values in inherited.items():
        for key, value in (own.get(section) or {}).items():
            assert values[key] != value, f"{name}.yaml restates {section}.{key} = {value}"
        top[section] = {**values, **(own.get(section) or {})}
    for domain, block in (own.get("domains") or {}).items():
        assert block, f"{name}.yaml: empty domain block {domain}"
        for section, values in block.items():
            assert values, f"{name}.yaml: empty {domain}.{section}"
            for key, value in values.items():
                assert top[section].get(key) != value, f"{name}.yaml: domains.{domain}.{section}.{key} restates {value}"


def test_resolved_config_is_complete_and_typed():
    job = jobs("algorithm=td3bc", "task=pointmaze-umaze-diverse", "seed=0", "algorithm.hparams.alpha=3")[0]
    fields = {f.name for f in dataclasses.fields(algorithms.get("td3bc").Config)}
    assert set(job.algorithm.hparams) == fields  # every value, wherever it was set
    assert job.algorithm.hparams["alpha"] == 3.0 and isinstance(job.algorithm.hparams["alpha"], float)
    # 1e3 is an integer written as a float: normalized, so the job id does not depend on the spelling
    assert jobs("algorithm=td3bc", "seed=0", "protocol.online_steps=1e3")[0].job_id == \
        jobs("algorithm=td3bc", "seed=0", "protocol.online_steps=1000")[0].job_id
    assert set(group_names("algorithm")) >= {"awac", "calql", "cql", "iql", "td3bc"}


def test_a_suites_algorithm_overrides_stay_on_its_own_tasks():
    """suite=dip's overrides (r - 1, 50/50 batches, tau 0.05) are its study's design: narrowed to
    a task outside the suite, a method runs with its own settings."""
    own = jobs("suite=dip", "algorithm=cql", "seed=0")[0].algorithm
    outside = jobs("suite=dip", "algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0")[0].algorithm
    plain = jobs("suite=smoke", "algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0")[0].algorithm
    assert own.hparams["tau"] == 0.05 and own.reward.shift == -1.0
    assert outside.hparams["tau"] == plain.hparams["tau"] != 0.05
    assert (outside.reward, outside.replay) == (plain.reward, plain.replay)
