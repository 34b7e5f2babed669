"""Action chunks as a harness feature: a method's h = 1 runs exactly as before chunks existed; a
method with h > 1 acts open-loop (one policy call per h env steps, a new call at each episode
start), in evaluation and online, with the protocol's updates still per env step; a chunked run
killed mid-chunk resumes exactly. (The chunked batches themselves: test_replay.py.)"""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import algorithms
import tasks
from algorithms import ActionSpec, Algorithm, Batch, ObsSpec, SeedStreams
from algorithms.base import minimize
from algorithms.common.networks import SeedMLP
from harness.evaluate import run_episodes
from harness.openloop import OpenLoop

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).parent / "data" / "h1-reference"
H1_ARGS = ["algorithm=cql", "task=pointmaze-umaze-dense", "algorithm.replay.batch_size=32",
           "algorithm.hparams.cql_n_actions=2", "protocol.offline_steps=60", "protocol.online_steps=320",
           "protocol.eval_every_offline=30", "protocol.eval_every=80", "protocol.eval_episodes=1",
           "protocol.log_every=10", "protocol.checkpoint_every=50", "suite.seeds=[0,1]", "suite.seeds_per_process=2",
           "device=cpu", "progress=false", "report=false"]


def test_h1_runs_bit_identically_to_the_runner_before_chunks(tmp_path):
    """CQL (h = 1), two seeds in one process, offline then online with a dense reward (so every
    evaluation and episode return depends on every action): evals, episodes and train metrics
    equal, to the last bit, the saved ones (data/h1-reference). They were first made by the code
    before chunking (commit 9d1e881) and this test held against them; they were remade once when
    every source's actions became clipped to +-(1 - 1e-5) (tasks.base: the generated data's +-1
    actions moved by 1e-5). Regenerate there with `python -m harness.run <H1_ARGS> runs_dir=X` and
    copy each seed's CSVs, train.csv without its timing column). The reference was made on CPU
    with torch 2.13.0; another CPU's kernels may round differently."""
    proc = subprocess.run([sys.executable, "-m", "harness.run", *H1_ARGS, f"runs_dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for k in (0, 1):
        run = tmp_path / "default" / "pointmaze-umaze-dense" / "cql" / f"seed{k}"
        for name in ("evals", "episodes", "train"):
            got = pd.read_csv(run / f"{name}.csv")
            ref = pd.read_csv(REFERENCE / f"seed{k}" / f"{name}.csv")
            pd.testing.assert_frame_equal(got.drop(columns=["updates_per_s"], errors="ignore"), ref, check_exact=True)


@dataclass
class ChunkedConfig:
    chunk: int = 7  # 300- and 400-step episodes end mid-chunk
    gamma: float = 0.99
    lr: float = 1e-3


class Chunked(Algorithm):
    """A small chunked method: a per-seed MLP gives h actions (h*A), with Gaussian noise from the
    seed's stream in evaluation too (as QC's best-of-N samples there); its update regresses the
    chunk on the batch's valid steps. It records every policy call's observations and output."""

    multi_seed = True
    Config = ChunkedConfig

    def __init__(self, obs_spec, action_spec, config, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        self.net = SeedMLP(obs_spec.shape[0], (16,), self.chunk * action_spec.dim, self.rng)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.calls: list[tuple[bool, np.ndarray, np.ndarray]] = []  # (deterministic, obs, chunk)

    def policy(self, obs, deterministic):
        mean = torch.tanh(self.net(obs))
        noise = self.rng.each(lambda k, g: torch.randn(mean.shape[1:], generator=g, device=mean.device))
        chunk = (mean + (0.05 if deterministic else 0.3) * noise).clamp(-1, 1)
        self.calls.append((deterministic, obs.cpu().numpy().copy(), chunk.cpu().numpy().copy()))
        return chunk

    def update(self, batch: Batch):
        K, B = batch.obs.shape[:2]
        err = (torch.tanh(self.net(batch.obs)) - batch.action).reshape(K, B, self.chunk, -1).square().mean(-1)
        loss = (err * batch.valid).sum((1, 2)) / batch.valid.sum((1, 2))
        minimize(self.optimizer, loss)
        return {"bc_loss": loss.detach(), "chunk_reward": batch.reward.mean(1)}


@pytest.fixture(autouse=True, scope="module")
def chunked_registered():
    """Registered only while this module's tests run, so other modules' per-method tests never see it."""
    algorithms.register("test-chunked")(Chunked)
    yield
    algorithms.REGISTRY.pop("test-chunked", None)


def chunked(seeds, chunk=7):
    return algorithms.make("test-chunked", ObsSpec((4,)), ActionSpec(2), {"chunk": chunk}, "cpu",
                           SeedStreams.from_seeds(seeds))


def episodes_taken(algo, envs, seeds, episodes, deterministic=True):
    """Each env's actions, episode after episode, as `evaluate_seeds` runs them."""
    taken = [[] for _ in envs]

    def record(k, action):
        taken[k].append(action.copy())
        return True

    for i in range(episodes):
        run_episodes(envs, OpenLoop(algo, len(envs), deterministic), [s + i for s in seeds], [True] * len(envs), record)
    return [np.stack(t) for t in taken]


def test_evaluation_runs_each_chunk_open_loop_and_asks_again_at_each_episode():
    """One seed, h = 7, two 300-step episodes: the policy is asked at steps 0, 7, ..., 294 of each
    (43 calls), and the env runs exactly the chunks it gave, the last one cut at the episode's end."""
    algo = chunked([1])
    env = tasks.get("pointmaze-umaze-diverse").make_env(1)
    taken = episodes_taken(algo, [env], [5], episodes=2)[0]
    assert len(taken) == 600 and len(algo.calls) == 2 * 43
    assert all(det for det, _, _ in algo.calls)
    for e in range(2):
        chunks = np.concatenate([c[0].reshape(7, 2) for _, _, c in algo.calls[43 * e:43 * (e + 1)]])
        np.testing.assert_array_equal(taken[300 * e:300 * (e + 1)], chunks[:300])
    first = [o[0] for _, o, _ in algo.calls[:2]]  # the reset observation, then the one 7 steps later
    assert not np.array_equal(first[0], first[1])


def test_a_seed_in_a_group_acts_as_it_does_alone_when_its_episodes_end_at_other_steps():
    """Seeds 0 and 1 in one group, seed 0 on 400-step episodes, seed 1 on 300-step ones: after step
    300 only seed 0 asks for chunks, and seed 1's stream is set back at each of those calls, so its
    second episode draws what it draws alone."""
    medium, umaze = tasks.get("pointmaze-medium-diverse"), tasks.get("pointmaze-umaze-diverse")
    group = chunked([0, 1])
    both = episodes_taken(group, [medium.make_env(0), umaze.make_env(1)], [5, 5], episodes=2)
    assert len(group.calls) == 2 * 58  # ceil(400 / 7) per episode: the longer env's
    alone = chunked([1])
    seed1 = episodes_taken(alone, [umaze.make_env(1)], [5], episodes=2)[0]
    assert len(alone.calls) == 2 * 43 and len(both[1]) == len(seed1) == 600
    np.testing.assert_allclose(both[1], seed1, rtol=0, atol=1e-6)
    seed0 = episodes_taken(chunked([0]), [medium.make_env(0)], [5], episodes=2)[0]
    np.testing.assert_allclose(both[0], seed0, rtol=0, atol=1e-6)


def test_h1_asks_the_policy_at_every_step():
    algo = chunked([2], chunk=1)
    taken = episodes_taken(algo, [tasks.get("pointmaze-umaze-diverse").make_env(2)], [5], episodes=1)[0]
    assert len(taken) == len(algo.calls) == 300
    np.testing.assert_array_equal(taken, np.concatenate([c[0] for _, _, c in algo.calls]))


def chunked_job(seed=0, **protocol):
    from dataclasses import asdict

    from harness.job import Job, Protocol

    p = dict(offline_steps=20, online_steps=350, utd=2, eval_every_offline=20, eval_every=175, eval_episodes=1,
             log_every=10, checkpoint_every=0)
    p.update(protocol)
    algo = {"name": "test-chunked", "replay": {"mode": "mix", "batch_size": 16}, "hparams": {"chunk": 7}}
    return Job.from_dict({"suite": "t", "seed": seed, "algorithm": algo, "protocol": asdict(Protocol(**p)),
                          "task": {"name": "pointmaze-umaze-diverse", "domain": "pointmaze"}, "device": "cpu"})


def read(run_dir):
    train = pd.read_csv(run_dir / "train.csv").drop(columns=["updates_per_s"])  # timing only
    return pd.read_csv(run_dir / "evals.csv"), pd.read_csv(run_dir / "episodes.csv"), train


def test_online_fine_tuning_runs_each_chunk_open_loop_with_updates_per_env_step(tmp_path):
    """h = 7 online: one sampling policy call per 7 env steps, a new one at each episode start
    (300-step episodes: the 43rd chunk is cut after 6 steps), the env running exactly the chunks'
    actions; `protocol.utd` updates after every env step; the online batches hold chunks."""
    from harness.runner import Runner

    runner = Runner([chunked_job()], [tmp_path], progress_bar=False)
    runner.run()
    evals, episodes, train = read(tmp_path)
    online_calls = [c[0] for det, _, c in runner.algo.calls if not det]
    lengths = episodes["length"].tolist()
    assert sum(lengths) == 350 and len(online_calls) == sum(-(-n // 7) for n in lengths)
    taken, i = [], 0
    for n in lengths:  # each episode: its chunks in order, the last one cut at the episode's end
        calls = -(-n // 7)
        taken.append(np.concatenate([c.reshape(7, 2) for c in online_calls[i:i + calls]])[:n])
        i += calls
    replay = runner.replay
    stored = replay.storage["action"][replay.online_start(0):replay.online_start(0) + 350].numpy()
    np.testing.assert_array_equal(stored, np.concatenate(taken))
    online = evals[evals.phase == "online"].set_index("env_steps")
    assert online.loc[175, "step"] == 20 + 2 * 175 and online.loc[350, "step"] == 20 + 2 * 350
    assert train.chunk_reward.notna().all() and (train.phase == "online").sum() == 2 * 350 // 10


def test_a_chunked_run_stopped_mid_chunk_resumes_exactly(tmp_path):
    """Stopped (checkpoint, then Interrupted) at env step 150 = 21 chunks + 3 actions: the checkpoint
    holds the rest of the chunk, and the resumed run ends with the uninterrupted run's curves."""
    from harness.runner import Interrupted, Runner, run_job

    job = chunked_job(online_steps=320, eval_every=160, utd=1)
    run_job(job, tmp_path / "ref", progress_bar=False)
    cut = Runner([job], [tmp_path / "cut"], progress_bar=False,
                 stop_requested=lambda: cut.state.offline_done and cut.state.env_steps == 150)
    with pytest.raises(Interrupted):
        cut.run()
    saved = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=False)
    assert saved["progress"].env_steps == 150 and saved["open_loop"]["used"].tolist() == [150 % 7]
    summary = run_job(job, tmp_path / "cut", progress_bar=False)
    assert summary["resumes"] == 1 and summary["resumed_at"][0][1] == 150
    for ref, got in zip(read(tmp_path / "ref"), read(tmp_path / "cut")):
        pd.testing.assert_frame_equal(ref, got, check_exact=True)


QC_ARGS = ["algorithm=qc", "task=pointmaze-umaze-dense", "algorithm.replay.batch_size=32", "protocol.offline_steps=60",
           "protocol.online_steps=400", "protocol.warmup_steps=100", "protocol.eval_every_offline=30",
           "protocol.eval_every=200", "protocol.eval_episodes=1", "protocol.log_every=20", "protocol.checkpoint_every=33",
           "suite.seeds=[0,1]", "suite.seeds_per_process=2", "device=cpu", "progress=false", "report=false"]


@pytest.mark.slow
def test_qc_group_killed_mid_chunk_resumes_exactly(tmp_path):
    """QC (chunks of 5), two seeds in one process, killed with SIGKILL after a checkpoint taken in
    the middle of a chunk (env steps 33, 66, ...: the chunks start every 5 steps) and rerun: the
    same curves, bit for bit, as the run left alone."""
    from tests.harness.test_resume import finish, kill_when, read_run

    group = "default/pointmaze-umaze-dense/qc"
    finish(tmp_path / "ref", args=QC_ARGS)
    killed = kill_when(tmp_path / "cut", lambda p: p.offline_done and p.env_steps >= 130, args=QC_ARGS,
                       ckpt=group + "/seeds0-1/checkpoint/state.pt")
    assert killed.env_steps % 5
    finish(tmp_path / "cut", args=QC_ARGS)
    for k in (0, 1):
        ref, got = read_run(tmp_path / "ref" / group / f"seed{k}"), read_run(tmp_path / "cut" / group / f"seed{k}")
        for a, b in zip(ref[:3], got[:3]):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert got[3]["resumes"] == 1 and got[3]["final_score"] == ref[3]["final_score"]
