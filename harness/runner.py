"""One job: offline pre-training, then online fine-tuning, evaluated, logged and checkpointed.

The runner knows methods and tasks only through `algorithms.make` and `tasks.get`. Every online
episode resets with a seed derived from (job seed, episode index) and checkpoints are taken
between gradient steps offline and at episode ends online, so a resumed run replays exactly
what the uninterrupted run would have done.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import algorithms
import tasks
from harness.evaluate import evaluate
from harness.jobs import Protocol, ReplayConfig, RewardTransform
from harness.replay import Replay, mc_returns
from harness.store import CHECKPOINT_DIR, RunStore, atomic_write, read_summary, remove_empty_checkpoint_dir, remove_orphans
from harness.trackers import Trackers
from scoring import early_min_score

EVAL_SEED_OFFSET = 10_000_019  # evaluation episodes never share seeds with training episodes


class Interrupted(BaseException):
    """Raised at a safe point after a stop was requested (e.g. SLURM's pre-emption signal) and a
    checkpoint was saved; the launcher requeues the job, which resumes exactly from there."""


class RunDirConflict(RuntimeError):
    """The run directory holds a run of a different resolved config (another job id)."""


class Diverged(FloatingPointError):
    """A loss, metric, parameter or action became NaN or infinite: the run has failed."""


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
    """Counters a checkpoint restores."""

    step: int = 0  # gradient updates so far (offline + online)
    env_steps: int = 0  # online environment steps so far
    episodes: int = 0  # finished online episodes
    wall_time: float = 0.0  # seconds spent in earlier attempts
    offline_done: bool = False
    resumes: int = 0  # how many times this run was resumed from a checkpoint
    resumed_at: list = field(default_factory=list)  # (updates, env steps) at each resume
    last_ckpt_env_steps: int = 0  # env steps at the last online checkpoint (sets the next one)
    rows: dict[str, list] = field(default_factory=lambda: {"evals": [], "train": [], "episodes": []})


class Runner:
    def __init__(self, job: dict[str, Any], run_dir: Path, progress_bar: bool = True,
                 stop_requested=lambda: False):
        self.job, self.dir, self.progress_bar = job, Path(run_dir), progress_bar
        self.stop_requested = stop_requested  # polled at safe points (between updates, at episode ends)
        self.protocol = Protocol(**job["protocol"])
        algo_cfg = job["algorithm"]
        self.replay_cfg = ReplayConfig(**algo_cfg.get("replay", {}))
        self.reward = RewardTransform(**algo_cfg.get("reward", {}))
        self.task = tasks.get(job["task"]["name"])
        self.device = pick_device(job["device"])
        self.store = RunStore(self.dir)
        self.trackers = Trackers(job, self.dir)  # TensorBoard / W&B next to the CSV files (logger=...)
        self.ckpt_path = self.dir / CHECKPOINT_DIR / "state.pt"
        self.state = Progress()  # replaced by a checkpoint's on resume
        self.t0, self.started_at = time.monotonic(), time.time()
        self.attempt_wall_before = 0.0  # wall time of earlier attempts, when this one started
        self.ckpt_seconds, self.ckpt_count = 0.0, 0  # this attempt's checkpoints
        # Every update is watched on the device, without a host sync: `finite_prefix` counts the
        # updates since the last check before the first one with a non-finite metric, `finite_keys`
        # which metrics stayed finite. They are read when logging, evaluating, checkpointing and
        # finishing.
        self.finite_prefix = torch.zeros((), dtype=torch.int64, device=self.device)
        self.finite_keys = torch.ones(0, dtype=torch.bool, device=self.device)
        self.watched_keys: tuple[str, ...] = ()
        self.checked_step = 0  # updates up to here are known to be finite
        self.phase = "offline"

    # -- set-up ----------------------------------------------------------------------------
    def build(self) -> None:
        seed_everything(self.job["seed"])
        task = self.task
        data = task.load_dataset()
        data.validate(f"task '{task.name}' dataset", task.obs_dim, task.act_dim)
        hparams = dict(self.job["algorithm"].get("hparams", {}))
        self.algo = algorithms.make(self.job["algorithm"]["name"], algorithms.ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim),
                                    algorithms.ActionSpec(task.act_dim), hparams, self.device)
        self.algo.observe_dataset(torch.as_tensor(data.obs, device=self.device))  # dataset dtype (uint8: images)
        gamma = getattr(self.algo.config, "gamma", 0.99)
        fail = None if task.fail_reward is None else self.reward(task.fail_reward)
        reward = self.reward(data.reward)
        offline = {"obs": data.obs, "action": data.action, "reward": reward, "next_obs": data.next_obs,
                   "done": data.terminal.astype(np.float32),
                   "mc_return": mc_returns(reward, data.episode_end, gamma, fail)}
        self.replay = Replay(offline, self.protocol.online_steps, self.device, gamma, fail)
        self.with_mc = "mc_return" in self.algo.needs
        self.train_env = task.make_env(self.job["seed"])
        self.eval_env = task.make_env(self.job["seed"] + EVAL_SEED_OFFSET)

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Everything the run needs to continue: networks, optimizers and learned scalars (via
        the algorithm's state_dict), the online buffer, all RNG states, counters and curves.
        Written atomically: a run killed while saving keeps the previous checkpoint."""
        self.check_finite("checkpoint")  # a diverged run is never saved to be resumed
        t = time.monotonic()
        self.state.rows = {"evals": self.store.evals, "train": self.store.train, "episodes": self.store.episodes}
        payload = {"job_id": self.job["job_id"], "progress": self.state, "algorithm": self.algo.state_dict(),
                   "replay": self.replay.online_state(), "torch_rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                   "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                   "wall_time": self.state.wall_time + time.monotonic() - self.t0}
        import io
        self.trackers.flush()  # a resume continues the trackers after this checkpoint's step
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(self.ckpt_path, buf.getvalue())
        self.store.flush()
        self.ckpt_seconds += time.monotonic() - t
        self.ckpt_count += 1

    def try_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        payload = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        if payload["job_id"] != self.job["job_id"]:
            raise RunDirConflict(f"{self.dir} holds a checkpoint of job {payload['job_id']}, not {self.job['job_id']}; "
                                 f"use another runs_dir or delete that directory")
        self.state = payload["progress"]
        self.state.resumes += 1
        self.state.resumed_at.append([self.state.step, self.state.env_steps])
        self.state.wall_time = payload["wall_time"]
        self.algo.load_state_dict(payload["algorithm"])
        self.replay.load_online_state(payload["replay"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        np.random.set_state(payload["numpy_rng"])
        random.setstate(payload["python_rng"])
        self.store.evals, self.store.train, self.store.episodes = (
            self.state.rows["evals"], self.state.rows["train"], self.state.rows["episodes"])
        self.checked_step = self.state.step  # checked before it was saved
        return True

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.t0, self.started_at = time.monotonic(), time.time()
        check_run_dir(self.dir, self.job)
        remove_orphans(self.dir)  # of an earlier attempt killed during a write
        previous = read_summary(self.dir)
        self.store.write_config(self.job)
        self.build()
        resumed = self.try_resume()
        self.state.wall_time = max(self.state.wall_time, self.time_until_last_write(previous))
        self.attempt_wall_before = self.state.wall_time
        self.write_summary("running")
        self.trackers.start(self.state.step if resumed else None,
                            {"train": self.store.train, "eval": self.store.evals, "episode": self.store.episodes})
        p = self.protocol
        from tqdm.auto import tqdm

        total = p.offline_steps + p.online_steps
        done_so_far = self.state.step if not self.state.offline_done else p.offline_steps + self.state.env_steps
        self.bar = tqdm(total=total, initial=done_so_far, disable=not self.progress_bar, leave=False,
                        desc=f"{self.job['algorithm']['name']}/{self.task.name}/s{self.job['seed']}",
                        dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
        self.last_score = float("nan")
        self.rate_t, self.rate_n = time.monotonic(), self.state.step
        try:
            if not self.state.offline_done:
                self.offline_phase()
            self.online_phase()
        except BaseException:
            self.trackers.finish(error=True)
            raise
        finally:
            self.bar.close()
        self.check_finite("online" if self.protocol.online_steps else "offline")
        self.store.flush()
        summary = self.write_summary("done")
        self.trackers.finish(summary)
        self.ckpt_path.unlink(missing_ok=True)  # a finished run needs only its results
        remove_empty_checkpoint_dir(self.dir)
        return summary

    def offline_phase(self) -> None:
        p, s = self.protocol, self.state
        self.phase = "offline"
        if p.offline_steps == 0 and not any(r["phase"] == "offline" for r in self.store.evals):
            self.evaluate("offline")
        while s.step < p.offline_steps:
            batch = self.replay.sample(self.replay_cfg.batch_size, "mix", 1.0, self.with_mc or self.logs_next())
            metrics = self.watch(self.algo.update(batch))
            s.step += 1
            self.bar.update(1)
            if s.step % p.log_every == 0:
                self.log(metrics, "offline", batch)
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
        p, s, env = self.protocol, self.state, self.train_env
        if p.online_steps == 0:
            return
        self.phase = "online"
        obs, _ = env.reset(seed=self.episode_seed())
        ep_return, ep_success, ep_len = 0.0, False, 0
        while s.env_steps < p.online_steps:
            if s.env_steps < p.warmup_steps and p.warmup_policy == "uniform":
                action = self.uniform_action()
            else:  # during a "policy" warm-up the policy is frozen: no updates yet
                action = self.finite_action(self.algo.act(obs, deterministic=False), "online")
            next_obs, reward, terminated, truncated, info = env.step(action)
            s.env_steps += 1
            ep_return += reward
            ep_success |= bool(info.get("success", False))
            ep_len += 1
            end = terminated or truncated or s.env_steps == p.online_steps
            self.replay.add(obs, action, self.reward(reward), next_obs, terminated, end)
            obs = next_obs
            # Updates start after the warm-up, and in replay mode "online" once there is online data.
            updating = s.env_steps > p.warmup_steps and self.replay.can_sample(self.replay_cfg.mode)
            for _ in range(p.utd if updating else 0):
                batch = self.replay.sample(self.replay_cfg.batch_size, self.replay_cfg.mode,
                                           self.replay_cfg.mixing_ratio, self.with_mc or self.logs_next())
                metrics = self.watch(self.algo.update(batch))
                s.step += 1
                if s.step % p.log_every == 0:
                    self.log(metrics, "online", batch)
            self.bar.update(1)
            if s.env_steps % p.eval_every == 0 or s.env_steps == p.online_steps:
                self.evaluate("online")
            if end:
                self.store.episodes.append({"env_steps": s.env_steps, "return": ep_return,
                                            "normalized_score": self.task.episode_score(ep_return, info),
                                            "success": int(ep_success), "length": ep_len})
                self.trackers.log("episode", self.store.episodes[-1], s.step)
                s.episodes += 1
                ep_return, ep_success, ep_len = 0.0, False, 0
                if s.env_steps < p.online_steps:
                    obs, _ = env.reset(seed=self.episode_seed())
                    # first episode end after each multiple of C (the same points after a resume)
                    if p.checkpoint_every and s.env_steps // p.checkpoint_every > s.last_ckpt_env_steps // p.checkpoint_every:
                        s.last_ckpt_env_steps = s.env_steps
                        self.save_checkpoint()
                    if self.stop_requested():
                        self.stop()

    def uniform_action(self) -> np.ndarray:
        """A uniform random action from torch's CPU RNG (a checkpoint restores it)."""
        spec = self.algo.action_spec
        return (torch.rand(spec.dim, dtype=torch.float64) * (spec.high - spec.low) + spec.low).numpy().astype(np.float32)

    def time_until_last_write(self, previous: dict[str, Any] | None) -> float:
        """Wall time of the earlier attempts up to the interrupted one's last write, so that work
        lost since its last checkpoint still counts (0 when there was none)."""
        if not previous or previous.get("status") != "running" or "attempt_started_at" not in previous:
            return 0.0
        files = [self.dir / n for n in ("summary.json", "evals.csv", "train.csv", "episodes.csv")] + [self.ckpt_path]
        last_write = max((p.stat().st_mtime for p in files if p.exists()), default=previous["attempt_started_at"])
        return previous["attempt_wall_before_s"] + max(0.0, last_write - previous["attempt_started_at"])

    def stop(self) -> None:
        """At a safe point after a stop request: checkpoint, then hand control to the launcher."""
        self.save_checkpoint()
        self.write_summary("running")
        raise Interrupted(f"stopped at update {self.state.step}, env step {self.state.env_steps}")

    def episode_seed(self) -> int:
        return self.job["seed"] * 1_000_003 + self.state.episodes

    # -- divergence ------------------------------------------------------------------------
    def watch(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Records on the device whether this update's metrics are all finite (no host sync)."""
        if tuple(metrics) != self.watched_keys:  # another set of metrics (e.g. fine-tuning's)
            self.check_finite(self.phase, self.state.step)
            self.watched_keys = tuple(metrics)
            self.finite_keys = torch.ones(len(metrics), dtype=torch.bool, device=self.device)
        if metrics:
            self.finite_keys.logical_and_(torch.isfinite(torch.stack(list(metrics.values()))))
            self.finite_prefix.add_(self.finite_keys.all())
        return metrics

    def check_finite(self, phase: str, step: int | None = None) -> None:
        """Raise Diverged, naming the first non-finite update and advice fitting the cause, if an
        update since the last check had a non-finite metric or a parameter is non-finite."""
        s = self.state
        step = s.step if step is None else step  # updates watched so far
        finite = int(self.finite_prefix)  # one host sync per check
        if self.watched_keys and finite < step - self.checked_step:
            bad = [k for k, ok in zip(self.watched_keys, self.finite_keys.tolist()) if not ok]
            raise Diverged(f"diverged: non-finite {', '.join(bad)} first at update {self.checked_step + finite + 1} "
                           f"({phase} phase; the run is failed, not done); {self.divergence_advice(bad)}")
        params = [(name, p) for name, m in self.algo.modules().items()
                  for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m] if isinstance(m, torch.Tensor) else [])]
        if params and not bool(torch.stack([torch.isfinite(p).all() for _, p in params]).all()):
            names = sorted({name for name, p in params if not bool(torch.isfinite(p).all())})
            raise Diverged(f"diverged: non-finite parameters in {', '.join(names)} by update {s.step} ({phase} phase; "
                           f"the run is failed, not done); {self.divergence_advice(names)}")
        self.finite_prefix.zero_()
        self.checked_step = step

    def divergence_advice(self, names: list[str]) -> str:
        """Which option to lower: the learning rate named like the diverged quantity (critic_loss ->
        hparams.critic_lr), else every learning rate; and a large reward scale or raw rewards."""
        hp = self.job["algorithm"].get("hparams", {})
        lrs = [k for k in hp if k.endswith("_lr")]
        named = [f"{n.split('_')[0]}_lr" for n in names if f"{n.split('_')[0]}_lr" in hp]
        chosen = list(dict.fromkeys(named)) or lrs
        advice = "lower " + ", ".join(f"algorithm.hparams.{k} (now {hp[k]:g})" for k in chosen) if chosen else \
            "lower the learning rates"
        scale = abs(self.reward.scale)
        advice += (f", or the reward scale (algorithm.reward.scale = {self.reward.scale:g})" if scale > 100 else
                   "; or check the dataset's rewards and observations for extreme values")
        return advice

    def finite_action(self, action: np.ndarray, phase: str) -> np.ndarray:
        """Refuse a NaN/inf action before env.step (MuJoCo would warn and write MUJOCO_LOG.TXT)."""
        if not np.isfinite(action).all():
            raise Diverged(f"diverged: the policy gave a non-finite action at update {self.state.step} "
                           f"({phase} phase; the run is failed, not done); "
                           f"{self.divergence_advice(['actor'])}")
        return action

    def logs_next(self) -> bool:
        """Whether the next update is logged (its batch then carries Monte-Carlo returns)."""
        return (self.state.step + 1) % self.protocol.log_every == 0

    def log(self, metrics: dict[str, torch.Tensor], phase: str, batch) -> None:
        """One train.csv row: the update's metrics, and the calibration of the learned values on
        its batch for every method that has a Q-function: mean Q(s, pi(s)) (`policy_value`)
        next to the mean Monte-Carlo return of the batch's trajectories (`mc_return`)."""
        self.check_finite(phase)
        value = self.algo.policy_value(batch.obs)
        if value is not None:
            metrics = {**metrics, "policy_value": value.mean(), "mc_return": batch.mc_return.mean()}
        values = {k: float(v) for k, v in metrics.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]  # the calibration values, not watched
        if bad:
            raise Diverged(f"diverged: non-finite {', '.join(bad)} at update {self.state.step} ({phase} phase; "
                           f"the run is failed, not done); {self.divergence_advice(bad)}")
        now = time.monotonic()
        rate = (self.state.step - self.rate_n) / max(now - self.rate_t, 1e-9)
        self.rate_t, self.rate_n = now, self.state.step
        self.store.train.append({"phase": phase, "step": self.state.step, "env_steps": self.state.env_steps,
                                 "updates_per_s": rate, **values})
        self.trackers.log("train", self.store.train[-1], self.state.step)
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", upd_s=f"{rate:.0f}", refresh=False)

    def evaluate(self, phase: str) -> None:
        s = self.state
        self.check_finite(phase)
        result = evaluate(self.algo, self.eval_env, self.task, self.protocol.eval_episodes,
                          seed=self.job["seed"] + EVAL_SEED_OFFSET,
                          check_action=lambda a: self.finite_action(a, f"{phase} evaluation"))
        self.store.evals.append({"phase": phase, "step": s.step, "env_steps": s.env_steps, **result})
        self.trackers.log("eval", self.store.evals[-1], s.step)
        self.last_score = result["normalized_score"]
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", refresh=True)
        self.store.flush()

    def write_summary(self, status: str, error: str | None = None,
                      traceback_tail: str | None = None) -> dict[str, Any]:
        evals = self.store.evals
        offline = [r["normalized_score"] for r in evals if r["phase"] == "offline"]
        online = [r for r in evals if r["phase"] == "online"]
        early_min = early_min_score([r["env_steps"] for r in online], [r["normalized_score"] for r in online],
                                    self.protocol.online_steps)
        wall = self.state.wall_time + time.monotonic() - self.t0
        summary = {
            "status": status, "job_id": self.job["job_id"], "suite": self.job["suite"],
            "task": self.task.name, "domain": self.task.domain, "goal": self.task.goal_reaching,
            "algorithm": self.job["algorithm"]["name"],
            "seed": self.job["seed"],
            "offline_score": offline[-1] if offline else None,
            "final_score": online[-1]["normalized_score"] if online else (offline[-1] if offline else None),
            "early_min_score": early_min if not math.isnan(early_min) else None,
            "wall_time_s": round(wall, 2),
            "updates_per_s": round(self.state.step / wall, 2) if wall > 0 else None,
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
        elif status == "failed" and slurm_job_id():
            summary["slurm_job_id"] = slurm_job_id()
        if error:
            summary["error"] = error
        if traceback_tail:
            summary["traceback"] = traceback_tail
        self.store.write_summary(summary)
        return summary


def slurm_job_id() -> str | None:
    """This process's SLURM job as squeue names it: `<array id>_<task>` in an array, else the id."""
    import os

    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def check_run_dir(run_dir: Path, job: dict[str, Any]) -> None:
    """Refuse a run directory written for another resolved config (e.g. a changed yaml)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return
    try:
        found = (yaml.safe_load(path.read_text()) or {}).get("job_id")
    except yaml.YAMLError:
        found = None
    if found is not None and found != job["job_id"]:
        raise RunDirConflict(
            f"{run_dir} holds job {found}, but this config resolves to job {job['job_id']} "
            f"(the config changed since that run); use another runs_dir=... or delete {run_dir}")


def run_job(job: dict[str, Any], run_dir: Path, progress_bar: bool = True,
            stop_requested=lambda: False) -> dict[str, Any]:
    """Run (or resume) one job; a finished run with the same job id is never redone.
    Failures are recorded in summary.json with their error and re-raised."""
    previous = read_summary(run_dir)
    if previous and previous.get("status") == "done" and previous.get("job_id") == job["job_id"]:
        remove_orphans(run_dir)
        return previous
    runner = Runner(job, run_dir, progress_bar, stop_requested)
    try:
        return runner.run()
    except (Interrupted, RunDirConflict):
        raise
    except Exception as exc:
        import traceback

        try:
            runner.write_summary("failed", error=f"{type(exc).__name__}: {exc}",
                                 traceback_tail="".join(traceback.format_exc().splitlines(True)[-12:]))
        except Exception:
            pass
        raise
