"""One job, or a group of jobs (K seeds of one method and task trained in one process as one
batched model): offline pre-training, then online fine-tuning, evaluated, logged and checkpointed.

The runner knows methods and tasks only through `algorithms.make` and `tasks.get`. Each seed has
its own run directory, random stream (`SeedStreams`: initial weights, batches, sampled actions),
online env and evaluation env. Every online episode resets with a seed derived from (job seed,
episode index); checkpoints are taken between gradient steps offline and between env steps
online (a resumed run restores each env by replaying its unfinished episode's actions), so a
resumed run replays exactly what the uninterrupted run would have done.
"""
from __future__ import annotations

import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import algorithms
import tasks
from harness.compile import accelerate
from harness.evaluate import evaluate_seeds
from harness.jobs import Job
from harness.replay import Replay
from harness.store import CHECKPOINT_DIR, RunDirConflict, RunStore, atomic_write, check_run_dir, finished_summary, read_summary, remove_empty_checkpoint_dir, remove_orphans
from harness.trackers import Trackers
from scoring import early_min_score

EVAL_SEED_OFFSET = 10_000_019  # evaluation episodes never share seeds with training episodes


class Interrupted(BaseException):
    """Raised at a safe point after a stop was requested (e.g. SLURM's pre-emption signal) and a
    checkpoint was saved; the launcher requeues the job, which resumes exactly from there."""


class Diverged(FloatingPointError):
    """A loss, metric, parameter or action became NaN or infinite: the run has failed."""


class EnvReplayMismatch(RuntimeError):
    """An env did not reproduce its unfinished episode from the checkpoint's actions."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Progress:
    """Counters a checkpoint restores (the seeds of a group step together; per-seed lists)."""

    step: int = 0  # gradient updates so far (offline + online)
    env_steps: int = 0  # online environment steps so far (of each seed)
    episodes: list = field(default_factory=lambda: [0])  # finished online episodes, per seed
    wall_time: float = 0.0  # seconds spent in earlier attempts
    offline_done: bool = False
    resumes: int = 0  # how many times this run was resumed from a checkpoint
    resumed_at: list = field(default_factory=list)  # (updates, env steps) at each resume
    failed: list = field(default_factory=lambda: [None])  # per seed: None, or why it stopped
    rows: list = field(default_factory=lambda: [{"evals": [], "train": [], "episodes": []}])


class Runner:
    """Runs the jobs of one group: the same method, task and protocol, one seed each."""

    def __init__(self, jobs: list[Job], run_dirs: list[Path], progress_bar: bool = True,
                 stop_requested=lambda: False, checkpoint_dir: Path | None = None):
        self.jobs, self.dirs, self.progress_bar = jobs, [Path(d) for d in run_dirs], progress_bar
        self.K = len(jobs)
        self.stop_requested = stop_requested  # polled at safe points (between updates and env steps)
        job = jobs[0]
        self.protocol = job.protocol
        self.replay_cfg = job.algorithm.replay
        self.reward = job.algorithm.reward
        self.task = tasks.get(job.task.name)
        self.device = pick_device(job.device)
        self.stores = [RunStore(d) for d in self.dirs]
        # TensorBoard / W&B next to each seed's CSV files (logger=...)
        self.trackers = [Trackers(j, d) for j, d in zip(jobs, self.dirs)]
        self.ckpt_path = Path(checkpoint_dir or self.dirs[0] / CHECKPOINT_DIR) / "state.pt"
        self.state = Progress(episodes=[0] * self.K, failed=[None] * self.K,
                              rows=[{"evals": [], "train": [], "episodes": []} for _ in range(self.K)])
        self.t0, self.started_at = time.monotonic(), time.time()
        self.attempt_wall_before = 0.0  # wall time of earlier attempts, when this one started
        self.ckpt_seconds, self.ckpt_count = 0.0, 0  # this attempt's checkpoints
        self.episode = [(0.0, False, 0)] * self.K  # per seed: return, success, length so far
        # Every update is watched on the device, without a host sync: `finite_prefix[k]` counts
        # seed k's updates since the last check before its first one with a non-finite metric,
        # `finite_keys[k]` which of its metrics stayed finite. They are read when logging,
        # evaluating, checkpointing and finishing.
        self.finite_prefix = torch.zeros(self.K, dtype=torch.int64, device=self.device)
        self.finite_keys = torch.ones(self.K, 0, dtype=torch.bool, device=self.device)
        self.watched_keys: tuple[str, ...] = ()
        self.checked_step = 0  # updates up to here are known to be finite
        self.phase = "offline"

    @property
    def active(self) -> list[bool]:
        return [f is None for f in self.state.failed]

    # -- set-up ----------------------------------------------------------------------------
    def build(self) -> None:
        seeds = [j.seed for j in self.jobs]
        seed_everything(seeds[0])
        task = self.task
        data = task.load_dataset()
        data.validate(f"task '{task.name}' dataset", task.obs_dim, task.act_dim)
        hparams = dict(self.jobs[0].algorithm.hparams)
        name = self.jobs[0].algorithm.name
        # one random stream per seed; a method written for one seed draws from torch's global
        # generators, seeded above
        rng = algorithms.SeedStreams.from_seeds(seeds, self.device) if algorithms.get(name).multi_seed else None
        self.algo = algorithms.make(name, algorithms.ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim),
                                    algorithms.ActionSpec(task.act_dim), hparams, self.device, rng)
        self.rng = self.algo.rng
        self.algo.observe_dataset(torch.as_tensor(data.obs, device=self.device))  # dataset dtype (uint8: images)
        accelerate(self.algo, self.jobs[0].compile)  # compiled update and actions, CUDA graphs (harness.compile)
        gamma = getattr(self.algo.config, "gamma", 0.99)
        self.replay = Replay.from_dataset(data, self.protocol.online_steps, self.device, gamma, task.fail_reward,
                                          self.K, self.reward)
        self.with_mc = "mc_return" in self.algo.needs
        self.train_envs = [task.make_env(s) for s in seeds]
        self.eval_envs = [task.make_env(s + EVAL_SEED_OFFSET) for s in seeds]

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Everything the group needs to continue: networks, optimizers and learned scalars (via
        the algorithm's state_dict), the online buffers (with each seed's unfinished episode),
        all RNG states, counters and curves. Written atomically: a group killed while saving
        keeps the previous checkpoint."""
        self.check_finite("checkpoint")  # a diverged seed is never saved to be resumed
        t = time.monotonic()
        self.state.rows = [{"evals": st.evals, "train": st.train, "episodes": st.episodes} for st in self.stores]
        payload = {"job_ids": [j.job_id for j in self.jobs], "progress": self.state,
                   "algorithm": self.algo.state_dict(), "replay": self.replay.online_state(),
                   "seed_streams": self.rng.state(), "torch_rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                   "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                   "wall_time": self.state.wall_time + time.monotonic() - self.t0}
        import io
        for trackers in self.trackers:
            trackers.flush()  # a resume continues the trackers after this checkpoint's step
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(self.ckpt_path, buf.getvalue())
        for store in self.stores:
            store.flush()
        self.ckpt_seconds += time.monotonic() - t
        self.ckpt_count += 1

    def try_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        payload = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        ids = [j.job_id for j in self.jobs]
        if payload.get("job_ids") != ids:
            raise RunDirConflict(f"{self.ckpt_path} holds a checkpoint of jobs {payload.get('job_ids')}, not {ids}; "
                                 f"use another runs_dir or delete that checkpoint")
        self.state = payload["progress"]
        self.state.resumes += 1
        self.state.resumed_at.append([self.state.step, self.state.env_steps])
        self.state.wall_time = payload["wall_time"]
        self.algo.load_state_dict(payload["algorithm"])
        self.replay.load_online_state(payload["replay"])
        self.rng.load_state(payload["seed_streams"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        np.random.set_state(payload["numpy_rng"])
        random.setstate(payload["python_rng"])
        for store, rows in zip(self.stores, self.state.rows):
            store.evals, store.train, store.episodes = rows["evals"], rows["train"], rows["episodes"]
        self.checked_step = self.state.step  # checked before it was saved
        return True

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        self.t0, self.started_at = time.monotonic(), time.time()
        for d, job in zip(self.dirs, self.jobs):
            check_run_dir(d, job)
        for d in {*self.dirs, self.ckpt_path.parent.parent}:
            remove_orphans(d)  # of an earlier attempt killed during a write
        previous = [read_summary(d) for d in self.dirs]
        for store, job in zip(self.stores, self.jobs):
            store.write_config(job.to_dict())
        self.build()
        resumed = self.try_resume()
        self.state.wall_time = max(self.state.wall_time, *(self.time_until_last_write(prev) for prev in previous))
        self.attempt_wall_before = self.state.wall_time
        for k in range(self.K):
            self.write_summary(k, "running" if self.active[k] else "failed")
        for trackers, store in zip(self.trackers, self.stores):
            trackers.start(self.state.step if resumed else None,
                           {"train": store.train, "eval": store.evals, "episode": store.episodes})
        p = self.protocol
        from tqdm.auto import tqdm

        total = p.offline_steps + p.online_steps
        done_so_far = self.state.step if not self.state.offline_done else p.offline_steps + self.state.env_steps
        seeds = ",".join(str(j.seed) for j in self.jobs)
        self.bar = tqdm(total=total, initial=done_so_far, disable=not self.progress_bar, leave=False,
                        desc=f"{self.jobs[0].algorithm.name}/{self.task.name}/s{seeds}",
                        dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
        self.last_score = float("nan")
        self.rate_t, self.rate_n = time.monotonic(), self.state.step
        try:
            if not self.state.offline_done:
                self.offline_phase()
            self.online_phase()
            self.check_finite("online" if self.protocol.online_steps else "offline")
        except BaseException:
            for trackers in self.trackers:
                trackers.finish(error=True)
            raise
        finally:
            self.bar.close()
        summaries = []
        for k, store in enumerate(self.stores):
            store.flush()
            summary = self.write_summary(k, "done" if self.active[k] else "failed")
            self.trackers[k].finish(summary, error=not self.active[k])
            summaries.append(summary)
        self.ckpt_path.unlink(missing_ok=True)  # a finished run needs only its results
        if self.K > 1:
            shutil.rmtree(self.ckpt_path.parent.parent, ignore_errors=True)  # the group's own directory
        else:
            remove_empty_checkpoint_dir(self.dirs[0])
        return summaries

    def train_step(self, phase: str) -> None:
        """One gradient update of every seed, each on its own batch."""
        mode, ratio = ("mix", 1.0) if phase == "offline" else (self.replay_cfg.mode, self.replay_cfg.mixing_ratio)
        batch = self.replay.sample(self.replay_cfg.batch_size, mode, ratio, self.with_mc or self.logs_next(),
                                   self.rng, self.active)
        metrics = self.watch(self.algo.update_seeds(batch))
        self.state.step += 1
        if self.state.step % self.protocol.log_every == 0:
            self.log(metrics, phase, batch)

    def offline_phase(self) -> None:
        p, s = self.protocol, self.state
        self.phase = "offline"
        if p.offline_steps == 0 and not any(r["phase"] == "offline" for r in self.stores[0].evals):
            self.evaluate("offline")
        while s.step < p.offline_steps:
            self.train_step("offline")
            self.bar.update(1)
            if s.step % p.eval_every_offline == 0 or s.step == p.offline_steps:
                self.evaluate("offline")
            if p.checkpoint_every and s.step % p.checkpoint_every == 0 and s.step < p.offline_steps:
                self.save_checkpoint()
            if s.step < p.offline_steps and self.stop_requested():
                self.stop()
        s.offline_done = True
        self.algo.on_finetune_start()
        if p.checkpoint_every and p.online_steps:
            self.save_checkpoint()

    def online_phase(self) -> None:
        p, s = self.protocol, self.state
        if p.online_steps == 0:
            return
        self.phase = "online"
        obs = [self.start_episode(k) for k in range(self.K)]
        while s.env_steps < p.online_steps:
            if s.env_steps < p.warmup_steps and p.warmup_policy == "uniform":
                actions = self.uniform_actions()
            else:  # during a "policy" warm-up the policy is frozen: no updates yet
                actions = self.algo.act(np.stack(obs), deterministic=False)
            s.env_steps += 1
            last = s.env_steps == p.online_steps
            ended = []
            for k in np.flatnonzero(self.active):
                if not self.finite_action(k, actions[k], "online"):
                    continue
                next_obs, reward, terminated, truncated, info = self.train_envs[k].step(actions[k])
                ret, success, length = self.episode[k]
                self.episode[k] = (ret + reward, success or bool(info.get("success", False)), length + 1)
                end = terminated or truncated or last
                self.replay.add(obs[k], actions[k], self.reward(reward), next_obs, terminated, end, k)
                obs[k] = next_obs
                if end:
                    ret, success, length = self.episode[k]
                    self.stores[k].episodes.append({"env_steps": s.env_steps, "return": ret,
                                                    "normalized_score": self.task.episode_score(ret, info),
                                                    "success": int(success), "length": length})
                    ended.append(k)
                    s.episodes[k] += 1
                    if not last:
                        obs[k] = self.start_episode(k)
            # Updates start after the warm-up, and in replay mode "online" once there is online data.
            updating = s.env_steps > p.warmup_steps and self.replay.can_sample(self.replay_cfg.mode, self.active)
            for _ in range(p.utd if updating else 0):
                self.train_step("online")
            for k in ended:  # at the step after this env step's updates
                self.trackers[k].log("episode", self.stores[k].episodes[-1], s.step)
            self.bar.update(1)
            if s.env_steps % p.eval_every == 0 or last:
                self.evaluate("online")
            if not last:
                if p.checkpoint_every and s.env_steps % p.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.stop_requested():
                    self.stop()

    def start_episode(self, k: int):
        """Seed k's env at the start of its current episode, or, after a resume, back where its
        unfinished episode stood: reset with the episode's seed, then the pending steps' actions
        replayed (the env is deterministic given both; every observation is checked)."""
        obs, _ = self.train_envs[k].reset(seed=self.episode_seed(k))
        self.episode[k] = (0.0, False, 0)
        for i, (p_obs, action, _, p_next, _) in enumerate(self.replay.pending[k]):
            if not np.array_equal(np.asarray(obs, p_obs.dtype), p_obs):
                raise EnvReplayMismatch(f"seed {self.jobs[k]['seed']}: the env's observation at step {i} of its "
                                        f"unfinished episode differs from the checkpoint's; the env is not "
                                        f"deterministic, so this run cannot resume exactly")
            obs, reward, _, _, info = self.train_envs[k].step(action)
            ret, success, length = self.episode[k]
            self.episode[k] = (ret + reward, success or bool(info.get("success", False)), length + 1)
        return obs

    def uniform_actions(self) -> np.ndarray:
        """A uniform random action per seed (K, A), seed k's from its stream (a checkpoint restores it)."""
        spec = self.algo.action_spec
        u = self.rng.each(lambda k, g: torch.rand(spec.dim, dtype=torch.float64, generator=g, device=self.device))
        return (u.cpu() * (spec.high - spec.low) + spec.low).numpy().astype(np.float32)

    def time_until_last_write(self, previous: dict[str, Any] | None) -> float:
        """Wall time of the earlier attempts up to the interrupted one's last write, so that work
        lost since its last checkpoint still counts (0 when there was none)."""
        if not previous or previous.get("status") != "running" or "attempt_started_at" not in previous:
            return 0.0
        files = [d / n for d in self.dirs for n in ("summary.json", "evals.csv", "train.csv", "episodes.csv")]
        files.append(self.ckpt_path)
        last_write = max((p.stat().st_mtime for p in files if p.exists()), default=previous["attempt_started_at"])
        return previous["attempt_wall_before_s"] + max(0.0, last_write - previous["attempt_started_at"])

    def stop(self) -> None:
        """At a safe point after a stop request: checkpoint, then hand control to the launcher."""
        self.save_checkpoint()
        for k in range(self.K):
            self.write_summary(k, "running" if self.active[k] else "failed")
        raise Interrupted(f"stopped at update {self.state.step}, env step {self.state.env_steps}")

    def episode_seed(self, k: int) -> int:
        return self.jobs[k].seed * 1_000_003 + self.state.episodes[k]

    # -- divergence ------------------------------------------------------------------------
    def watch(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Records on the device whether this update's metrics (K,) are all finite, per seed (no
        host sync)."""
        if tuple(metrics) != self.watched_keys:  # another set of metrics (e.g. fine-tuning's)
            self.check_finite(self.phase, self.state.step)
            self.watched_keys = tuple(metrics)
            self.finite_keys = torch.ones(self.K, len(metrics), dtype=torch.bool, device=self.device)
        if metrics:
            self.finite_keys.logical_and_(torch.isfinite(torch.stack(list(metrics.values()), 1)))
            self.finite_prefix.add_(self.finite_keys.all(1))
        return metrics

    def check_finite(self, phase: str, step: int | None = None) -> None:
        """Fail each seed (raise Diverged for the last one) whose updates since the last check had
        a non-finite metric or whose parameters are non-finite, naming the first non-finite update
        and advice fitting the cause."""
        s = self.state
        step = s.step if step is None else step  # updates watched so far
        finite = self.finite_prefix.tolist()  # one host sync per check
        keys_ok = self.finite_keys.tolist()
        for k in np.flatnonzero(self.active):
            if self.watched_keys and finite[k] < step - self.checked_step:
                bad = [name for name, ok in zip(self.watched_keys, keys_ok[k]) if not ok]
                self.fail_seed(k, Diverged(
                    f"diverged: non-finite {', '.join(bad)} first at update {self.checked_step + finite[k] + 1} "
                    f"({phase} phase; the run is failed, not done); {self.divergence_advice(bad)}"))
        params = [(name, p) for name, m in self.algo.modules().items()
                  for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m] if isinstance(m, torch.Tensor) else [])]
        if params:
            # per seed: a multi-seed method's parameters and learned scalars carry the seed dim
            # first; a tensor without it (e.g. a step counter) is every seed's
            per_seed = [torch.isfinite(p).reshape(self.K, -1).all(1) if self.K > 1 and p.dim() and len(p) == self.K
                        else torch.isfinite(p).all().expand(self.K) for _, p in params]
            ok = torch.stack(per_seed).tolist()  # (tensors, K)
            for k in np.flatnonzero(self.active):
                names = sorted({name for (name, _), row in zip(params, ok) if not row[k]})
                if names:
                    self.fail_seed(k, Diverged(
                        f"diverged: non-finite parameters in {', '.join(names)} by update {s.step} ({phase} phase; "
                        f"the run is failed, not done); {self.divergence_advice(names)}"))
        self.finite_prefix.zero_()
        self.checked_step = step

    def divergence_advice(self, names: list[str]) -> str:
        """Which option to lower: the learning rate named like the diverged quantity (critic_loss ->
        hparams.critic_lr), else every learning rate; and a large reward scale or raw rewards."""
        hp = self.jobs[0].algorithm.hparams
        lrs = [k for k in hp if k.endswith("_lr")]
        named = [f"{n.split('_')[0]}_lr" for n in names if f"{n.split('_')[0]}_lr" in hp]
        chosen = list(dict.fromkeys(named)) or lrs
        advice = "lower " + ", ".join(f"algorithm.hparams.{k} (now {hp[k]:g})" for k in chosen) if chosen else \
            "lower the learning rates"
        scale = abs(self.reward.scale)
        advice += (f", or the reward scale (algorithm.reward.scale = {self.reward.scale:g})" if scale > 100 else
                   "; or check the dataset's rewards and observations for extreme values")
        return advice

    def finite_action(self, k: int, action: np.ndarray, phase: str) -> bool:
        """Refuse seed k's NaN/inf action before env.step (MuJoCo would warn and write
        MUJOCO_LOG.TXT): the seed fails (the last active one raises Diverged)."""
        if np.isfinite(action).all():
            return True
        self.fail_seed(k, Diverged(f"diverged: the policy gave a non-finite action at update {self.state.step} "
                                   f"({phase} phase; the run is failed, not done); "
                                   f"{self.divergence_advice(['actor'])}"))
        return False

    def logs_next(self) -> bool:
        """Whether the next update is logged (its batch then carries Monte-Carlo returns)."""
        return (self.state.step + 1) % self.protocol.log_every == 0

    def log(self, metrics: dict[str, torch.Tensor], phase: str, batch) -> None:
        """One train.csv row per seed: the update's metrics, and the calibration of the learned
        values on its batch for every method that has a Q-function: mean Q(s, pi(s))
        (`policy_value`) next to the mean Monte-Carlo return of the batch's trajectories."""
        self.check_finite(phase)
        value = self.algo.policy_value_seeds(batch.obs)
        if value is not None:
            metrics = {**metrics, "policy_value": value.mean(-1), "mc_return": batch.mc_return.mean(-1)}
        values = {k: v.tolist() for k, v in metrics.items()}  # the only host sync of the update loop
        now = time.monotonic()
        rate = (self.state.step - self.rate_n) / max(now - self.rate_t, 1e-9)
        self.rate_t, self.rate_n = now, self.state.step
        for k in np.flatnonzero(self.active):
            row = {name: v[k] for name, v in values.items()}
            bad = [name for name, v in row.items() if not math.isfinite(v)]  # the calibration values, not watched
            if bad:
                self.fail_seed(k, Diverged(f"diverged: non-finite {', '.join(bad)} at update {self.state.step} "
                                           f"({phase} phase; the run is failed, not done); "
                                           f"{self.divergence_advice(bad)}"))
                continue
            self.stores[k].train.append({"phase": phase, "step": self.state.step, "env_steps": self.state.env_steps,
                                         "updates_per_s": rate, **row})
            self.trackers[k].log("train", self.stores[k].train[-1], self.state.step)
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", upd_s=f"{rate:.0f}", refresh=False)

    def fail_seed(self, k: int, exc: Exception) -> None:
        """Seed k stops (its run is marked failed); the group's other seeds go on, since no seed's
        numbers depend on another's. The last seed's failure raises."""
        if sum(self.active) == 1:
            raise exc
        self.state.failed[k] = f"{type(exc).__name__}: {exc}"
        self.stores[k].flush()
        self.trackers[k].finish(self.write_summary(k, "failed", error=self.state.failed[k]), error=True)

    def evaluate(self, phase: str) -> None:
        s = self.state
        self.check_finite(phase)
        seeds = [j.seed + EVAL_SEED_OFFSET for j in self.jobs]
        results = evaluate_seeds(self.algo, self.eval_envs, self.task, self.protocol.eval_episodes, seeds, self.active,
                                 check_action=lambda k, a: self.finite_action(k, a, f"{phase} evaluation"))
        for store, trackers, result in zip(self.stores, self.trackers, results):
            if result is not None:
                store.evals.append({"phase": phase, "step": s.step, "env_steps": s.env_steps, **result})
                trackers.log("eval", store.evals[-1], s.step)
                store.flush()
        self.last_score = float(np.mean([r["normalized_score"] for r in results if r is not None]))
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", refresh=True)

    def write_summary(self, k: int, status: str, error: str | None = None,
                      traceback_tail: str | None = None) -> dict[str, Any]:
        evals = self.stores[k].evals
        job = self.jobs[k]
        offline = [r["normalized_score"] for r in evals if r["phase"] == "offline"]
        online = [r for r in evals if r["phase"] == "online"]
        early_min = early_min_score([r["env_steps"] for r in online], [r["normalized_score"] for r in online],
                                    self.protocol.online_steps)
        wall = self.state.wall_time + time.monotonic() - self.t0
        error = error or self.state.failed[k]
        summary = {
            "status": status, "job_id": job.job_id, "suite": job.suite,
            "task": self.task.name, "domain": self.task.domain, "goal": self.task.goal_reaching,
            "algorithm": job.algorithm.name,
            "seed": job.seed,
            "offline_score": offline[-1] if offline else None,
            "final_score": online[-1]["normalized_score"] if online else (offline[-1] if offline else None),
            "early_min_score": early_min if not math.isnan(early_min) else None,
            "wall_time_s": round(wall, 2),  # of the group, when the seed trained in one
            "updates_per_s": round(self.state.step / wall, 2) if wall > 0 else None,
            "seeds_in_process": self.K,
            "resumed": self.state.resumes > 0,
            "resumes": self.state.resumes,
            "resumed_at": self.state.resumed_at,  # [updates, env steps]
            "checkpoints": self.ckpt_count,  # taken in this attempt
            "checkpoint_s": round(self.ckpt_seconds, 3),  # spent saving them, this attempt
        }
        if status == "running":  # lets `harness.status` tell a live run from an abandoned one
            import os
            import socket

            summary.update(host=socket.gethostname(), pid=os.getpid(), slurm_job_id=slurm_job_id(),
                           attempt_started_at=self.started_at, attempt_wall_before_s=round(self.attempt_wall_before, 2))
            if self.K > 1:
                summary["checkpoint"] = str(self.ckpt_path)
        elif status == "failed" and slurm_job_id():
            summary["slurm_job_id"] = slurm_job_id()
        if error:
            summary["error"] = error
        if traceback_tail:
            summary["traceback"] = traceback_tail
        self.stores[k].write_summary(summary)
        return summary


def slurm_job_id() -> str | None:
    """This process's SLURM job as squeue names it: `<array id>_<task>` in an array, else the id."""
    import os

    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")




def run_jobs(jobs: list[Job], run_dirs: list[Path], progress_bar: bool = True,
             stop_requested=lambda: False) -> list[dict[str, Any]]:
    """Run (or resume) a group of jobs (one seed each, same method, task and protocol) in this
    process; finished runs with the same job id are skipped, never redone: the group trains
    the others. Several seeds keep one checkpoint, in `seeds<s1>-<s2>-.../checkpoint/` next to
    their run directories; one seed keeps it in its run directory. Failures are recorded in
    each run's summary.json with their error; a failure of the whole group is re-raised."""
    summaries: list = [None] * len(jobs)
    todo = []
    for i, (job, d) in enumerate(zip(jobs, run_dirs)):
        previous = finished_summary(d, job.job_id)
        if previous is not None:
            remove_orphans(d)
            summaries[i] = previous
        else:
            todo.append(i)
    if not todo:
        return summaries
    dirs = [Path(run_dirs[i]) for i in todo]
    checkpoint_dir = None
    if len(todo) > 1:
        checkpoint_dir = dirs[0].parent / ("seeds" + "-".join(str(jobs[i].seed) for i in todo)) / "checkpoint"
    runner = Runner([jobs[i] for i in todo], dirs, progress_bar, stop_requested, checkpoint_dir)
    try:
        for i, summary in zip(todo, runner.run()):
            summaries[i] = summary
        return summaries
    except (Interrupted, RunDirConflict):
        raise
    except Exception as exc:
        import traceback

        for k in range(runner.K):
            try:
                if runner.active[k]:
                    runner.write_summary(k, "failed", error=f"{type(exc).__name__}: {exc}",
                                         traceback_tail="".join(traceback.format_exc().splitlines(True)[-12:]))
            except Exception:
                pass
        raise


def run_job(job: Job, run_dir: Path, progress_bar: bool = True,
            stop_requested=lambda: False) -> dict[str, Any]:
    """Run (or resume) one job: a group of one."""
    return run_jobs([job], [run_dir], progress_bar, stop_requested)[0]
