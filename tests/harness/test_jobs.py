"""A job is a `Job`: its id is the hash of its config, and that config is what config.yaml holds,
byte for byte as the runs already on disk wrote it, so their jobs keep their ids and finished
runs are never redone."""
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from harness.config import CONF_DIR, CommandLine, expand
from harness.job import Job, job_id
from harness.launch import is_done
from harness.runner import run_job
from harness.store import RunDirConflict, RunStore, atomic_write, check_run_dir, run_dir

DATA = Path(__file__).parent / "data"
WRITTEN = sorted(DATA.glob("config_*.yaml"))  # config.yaml files of runs written when a job was a dict


def jobs_of(*overrides):
    cli = CommandLine.parse(list(overrides))
    overrides = cli.hydra_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return expand(compose("config", overrides=overrides), cli)


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_a_config_yaml_on_disk_reads_back_as_the_job_it_was_written_for(path, tmp_path):
    text = path.read_text()
    config = yaml.safe_load(text)
    job = Job.from_dict(config)
    assert job.job_id == config["job_id"] == job_id(config)
    RunStore(tmp_path).write_config(job.to_dict())  # as the runner writes it
    assert (tmp_path / "config.yaml").read_text() == text
    check_run_dir(tmp_path, job)  # the runner's check: the same job
    with pytest.raises(RunDirConflict, match="this config resolves to job"):
        check_run_dir(tmp_path, dataclasses.replace(job, seed=job.seed + 100))


def test_a_finished_run_written_before_is_reused_not_redone(tmp_path):
    config = yaml.safe_load(WRITTEN[0].read_text())
    job = Job.from_dict(config)
    d = run_dir(tmp_path, job)
    assert d.relative_to(tmp_path).parts == (config["suite"], config["task"]["name"], config["algorithm"]["name"],
                                             f"seed{config['seed']}")
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(WRITTEN[0].read_text())
    done = {"status": "done", "job_id": config["job_id"], "final_score": 12.5}
    atomic_write(d / "summary.json", json.dumps(done))
    assert is_done(job, tmp_path)
    assert run_job(job, d, progress_bar=False) == done  # skipped: no dataset, env or training needed


@pytest.mark.parametrize("overrides", [("suite=full",), ("suite=dip", "suite.seeds_per_process=3"),
                                       ("suite=default", "logger=[csv,tensorboard]", "threads=2", "device=cpu")])
def test_every_job_is_the_hash_of_its_config_and_round_trips(overrides):
    jobs = jobs_of(*overrides)
    assert len({j.job_id for j in jobs}) == len(jobs)
    for job in jobs:
        config = job.to_dict()
        assert job.job_id == config["job_id"] == job_id(config)
        assert list(config) == ["suite", "seed", "algorithm", "task", "protocol", "threads", "device", "logger",
                                *(["seed_group"] if job.seed_group else []), "job_id"]  # config.yaml's order
        again = Job.from_dict(yaml.safe_load(yaml.safe_dump(config, sort_keys=False)))
        assert again == job and again.to_dict() == config


def test_a_config_that_does_not_hash_to_its_id_is_refused():
    config = yaml.safe_load(WRITTEN[0].read_text())
    config["algorithm"]["hparams"]["cql_alpha"] = 1.0
    with pytest.raises(ValueError, match=f"job {config['job_id']}: its config hashes to job id [0-9a-f]{{12}}"):
        Job.from_dict(config)
    config.pop("job_id")
    assert Job.from_dict(config).job_id != yaml.safe_load(WRITTEN[0].read_text())["job_id"]


def test_where_a_job_runs_and_is_watched_is_not_part_of_its_id():
    (job,) = jobs_of("algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0")
    assert dataclasses.replace(job, device="cpu", logger=["csv", "wandb"]).job_id == job.job_id
    assert dataclasses.replace(job, threads=2).job_id != job.job_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.seed = 1


def test_a_slurm_task_pickles_its_jobs_as_config_data_and_requeues_the_same_jobs():
    import pickle

    from harness.launch import SlurmJob

    jobs = jobs_of("algorithm=cql", "task=pointmaze-umaze-diverse", "suite.seeds=[0,1]", "suite.seeds_per_process=2")
    assert pickle.loads(pickle.dumps(jobs)) == jobs  # as the local launcher's worker processes get them
    task = pickle.loads(pickle.dumps(SlurmJob(jobs, "runs", 5.0)))  # as submitit sends it to the node
    assert task.jobs == [j.to_dict() for j in jobs] and {type(d) for d in task.jobs} == {dict}
    requeued = task.checkpoint().function  # what submitit runs after a pre-emption
    assert [Job.from_dict(d) for d in requeued.jobs] == jobs and requeued.grace_s == 5.0


@pytest.mark.parametrize("name,utd", [("rlpd", 20), ("wsrl", 4)])
def test_the_actor_steps_once_per_env_step_at_whatever_utd_is_asked_for(name, utd):
    """actor_every has one home, protocol.utd: a UTD set alone moves it, and one set explicitly wins."""
    task = "task=pointmaze-umaze-diverse"  # 2k online env steps: room for the method's 1k-step warm-up
    (default,) = jobs_of(f"algorithm={name}", "suite=pointmaze-mini", task, "seed=0")
    assert (default.protocol.utd, default.algorithm.hparams["actor_every"]) == (utd, utd)
    (faster,) = jobs_of(f"algorithm={name}", "suite=pointmaze-mini", task, "seed=0", "protocol.utd=3")
    assert (faster.protocol.utd, faster.algorithm.hparams["actor_every"]) == (3, 3)
    (explicit,) = jobs_of(f"algorithm={name}", "suite=pointmaze-mini", task, "seed=0", "protocol.utd=3",
                          "algorithm.hparams.actor_every=6")
    assert (explicit.protocol.utd, explicit.algorithm.hparams["actor_every"]) == (3, 6)
