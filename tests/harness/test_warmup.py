"""The protocol's warm-up (the first `warmup_steps` online env steps only fill the buffer, with the
frozen pre-trained policy or uniform actions), replay mode "online" in a real run, a run
interrupted during the warm-up resuming exactly, and a method's own protocol (its yaml's
`protocol:`) taking precedence over the task's and the suite's, under the command line's."""
from dataclasses import asdict, replace

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harness.config import CONF_DIR, ConfigError, expand, load_group, resolve_algorithm
from harness.job import Job, Protocol, job_id
from harness.runner import Interrupted, Runner, run_job, run_jobs

TASK = "pointmaze-umaze-diverse"  # episodes of up to 300 steps
TINY = {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "n_critics": 4}


def make_job(algo_name, hparams, replay=None, **protocol):
    algo = resolve_algorithm(load_group("algorithm", algo_name), "pointmaze")
    algo.pop("protocol", None)
    algo["hparams"].update(hparams)
    algo["replay"].update(replay or {})
    p = dict(offline_steps=0, online_steps=700, utd=1, eval_every_offline=100, eval_every=100, eval_episodes=1,
             log_every=25, checkpoint_every=0)
    p.update(protocol)
    return Job.from_dict({"suite": "t", "seed": 0, "algorithm": algo, "task": {"name": TASK, "domain": "pointmaze"},
                          "protocol": asdict(Protocol(**p)), "device": "cpu"})


def read(run_dir):
    train = pd.read_csv(run_dir / "train.csv").drop(columns=["updates_per_s"])  # timing only
    return pd.read_csv(run_dir / "evals.csv"), pd.read_csv(run_dir / "episodes.csv"), train


def test_uniform_warmup_makes_no_updates_then_updates_at_the_utd(tmp_path):
    job = make_job("rlpd", {**TINY, "actor_every": 2}, online_steps=600, warmup_steps=400, utd=2,
                   warmup_policy="uniform")
    run_job(job, tmp_path, progress_bar=False)
    evals, episodes, train = read(tmp_path)
    online = evals[evals.phase == "online"].set_index("env_steps")
    assert (online.loc[[100, 200, 300, 400], "step"] == 0).all()  # warm-up: buffer only
    assert online.loc[600, "step"] == (600 - 400) * 2
    assert train.step.min() > 0 and (train.env_steps > 400).all()


def test_policy_warmup_keeps_the_pretrained_policy_frozen_and_online_mode_runs(tmp_path):
    job = make_job("calql", {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "cql_n_actions": 2},
                   replay={"mode": "online", "batch_size": 32}, offline_steps=60, eval_every_offline=60,
                   online_steps=500, warmup_steps=350)
    run_job(job, tmp_path, progress_bar=False)
    evals, _, _ = read(tmp_path)
    offline = evals[evals.phase == "offline"].iloc[-1]
    warm = evals[(evals.phase == "online") & (evals.env_steps <= 350)]
    # the same deterministic policy on the same evaluation seeds: the same return at every warm-up eval
    assert len(warm) == 3 and (warm["return"] == offline["return"]).all() and (warm.step == 60).all()
    assert evals.iloc[-1].step == 60 + 500 - 350


def test_run_interrupted_during_the_warmup_resumes_exactly(tmp_path):
    job = make_job("rlpd", {**TINY, "actor_every": 1}, online_steps=700, warmup_steps=650,
                   warmup_policy="uniform", checkpoint_every=1)
    run_job(job, tmp_path / "ref", progress_bar=False)
    stopped = []

    def stop_once():  # polled at episode ends: the first one is at 300 env steps, in the warm-up
        stopped.append(True)
        return len(stopped) == 1

    with pytest.raises(Interrupted):
        Runner([job], [tmp_path / "cut"], progress_bar=False, stop_requested=stop_once).run()
    summary = run_job(job, tmp_path / "cut", progress_bar=False)
    assert summary["resumes"] == 1 and summary["resumed_at"][0][1] < 650
    for ref, cut in zip(read(tmp_path / "ref"), read(tmp_path / "cut")):
        pd.testing.assert_frame_equal(ref, cut)


def test_a_group_warms_up_as_its_seeds_alone_then_updates_at_the_utd(tmp_path):
    """Two RLPD seeds in one process: each seed's uniform warm-up actions come from its own
    stream, so its warm-up episodes are those it has alone, bit for bit; then every seed updates."""
    base = make_job("rlpd", {**TINY, "actor_every": 2}, online_steps=450, warmup_steps=320, utd=2,
                    warmup_policy="uniform")
    alone, group = [], []
    for seed in (0, 1):
        alone.append(replace(base, seed=seed))
        group.append(replace(base, seed=seed, seed_group=[0, 1]))
    for job in alone:
        run_job(job, tmp_path / "alone" / f"seed{job.seed}", progress_bar=False)
    run_jobs(group, [tmp_path / "group" / f"seed{j.seed}" for j in group], progress_bar=False)
    for seed in (0, 1):
        _, ep_alone, _ = read(tmp_path / "alone" / f"seed{seed}")
        evals, ep_group, train = read(tmp_path / "group" / f"seed{seed}")
        warm = lambda ep: ep[ep.env_steps <= 320]  # noqa: E731
        assert len(warm(ep_group)) >= 1
        pd.testing.assert_frame_equal(warm(ep_alone), warm(ep_group))
        assert evals.iloc[-1].step == (450 - 320) * 2 and (train.env_steps > 320).all()
    train0, train1 = (read(tmp_path / "group" / f"seed{k}")[2] for k in (0, 1))
    assert not train0.critic_loss.equals(train1.critic_loss)  # two seeds, two streams, two sets of data


def compose_jobs(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return expand(compose("config", overrides=list(overrides)))


def test_the_methods_protocol_beats_task_and_suite_and_the_command_line_beats_it():
    (job,) = compose_jobs("suite=dip", "algorithm=rlpd", "seed=0")
    p = job.protocol
    assert p.offline_steps == 0 and p.utd == 20 and p.warmup_policy == "uniform"  # rlpd.yaml
    assert p.online_steps == load_group("suite", "dip").protocol.online_steps  # the suite's
    assert "protocol" not in job.to_dict()["algorithm"]
    (job,) = compose_jobs("suite=dip", "algorithm=rlpd", "seed=0", "protocol.utd=3", "protocol.warmup_steps=7")
    assert job.protocol.utd == 3 and job.protocol.warmup_steps == 7
    with pytest.raises(ConfigError, match="warmup_steps .* must be below protocol.online_steps"):
        compose_jobs("suite=dip", "algorithm=rlpd", "seed=0", "protocol.warmup_steps=99999")
    with pytest.raises(ConfigError, match="warmup_policy must be 'policy' or 'uniform'"):
        compose_jobs("suite=dip", "algorithm=rlpd", "seed=0", "protocol.warmup_policy=random")


def test_jobs_without_a_warmup_keep_their_ids():
    job = make_job("calql", {}).to_dict()
    old = {**job, "protocol": {k: v for k, v in job["protocol"].items() if k not in ("warmup_steps", "warmup_policy")}}
    assert job_id(job) == job_id(old)  # finished runs written before the warm-up existed stay valid
    assert make_job("calql", {}, warmup_steps=5).job_id != job_id(job)
