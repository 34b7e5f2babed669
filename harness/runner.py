"""One job, or a group of jobs (K seeds of one method and task trained in one process as one
batched model): offline pre-training, then online fine-tuning, evaluated, logged and checkpointed.

`Runner` is the loop: sample a batch, update, log, evaluate, and in the online phase step every
seed's env. What it keeps is in small objects: each seed's run (`harness.seed_run.SeedRun`: env,
store, trackers, current episode), the checkpoint (`harness.checkpoint`: payload, RNG states,
resume) and the divergence watch (`harness.divergence`). The runner knows methods and tasks only
through `algorithms.make` and `tasks.get`. Each seed has its own random stream (`SeedStreams`:
initial weights, batches, sampled actions); checkpoints are taken between gradient steps offline
and between env steps online, so a resumed run replays exactly what the uninterrupted run would
have done.
"""
from __future__ import annotations

import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import algorithms
import tasks
from harness.checkpoint import Checkpoint, Progress  # noqa: F401 (Progress: checkpoints pickled it from here)
from harness.compile import accelerate
from harness.divergence import Diverged, DivergenceWatch, divergence_advice  # noqa: F401 (Diverged: re-exported)
from harness.evaluate import evaluate_seeds
from harness.integrity import DataChanged, ProtocolShortfall, asked, data_problem, made, no_online_data, shortfall
from harness.job import Job
from harness.lock import Busy, LockLost, RunLock
from harness.openloop import OpenLoop
from harness.replay import Replay
from harness.seed_run import EVAL_SEED_OFFSET, EnvReplayMismatch, SeedRun  # noqa: F401 (re-exported)
from harness.shards import Shards
from harness.store import CHECKPOINT_DIR, RunDirConflict, check_run_dir, finished_summary, read_summary, remove_empty_checkpoint_dir, remove_orphans
from scoring import early_min_score


class Interrupted(BaseException):
    """Raised at a safe point after a stop was requested (e.g. SLURM's pre-emption signal) and a
    checkpoint was saved; the launcher requeues the job, which resumes exactly from there."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class GroupRun:
    """A group's life around the loop: its seeds' runs, progress, method and buffers built,
    checkpointed, resumed, failed seed by seed, summarized and finished."""

    def __init__(self, jobs: list[Job], run_dirs: list[Path], progress_bar: bool = True,
                 stop_requested=lambda: False, checkpoint_dir: Path | None = None):
        self.jobs, self.K, self.progress_bar = jobs, len(jobs), progress_bar
        self.seeds = [SeedRun.open(j, d) for j, d in zip(jobs, run_dirs)]
        self.stop_requested = stop_requested  # polled at safe points (between updates and env steps)
        job = jobs[0]
        self.protocol, self.replay_cfg, self.reward = job.protocol, job.algorithm.replay, job.algorithm.reward
        self.task = tasks.get(job.task.name)
        self.device = pick_device(job.device)
        self.checkpoint = Checkpoint(Path(checkpoint_dir or self.seeds[0].dir / CHECKPOINT_DIR) / "state.pt",
                                     [j.job_id for j in jobs])
        self.state = Progress.fresh(self.K)
        self.t0, self.started_at = time.monotonic(), time.time()
        self.attempt_wall_before = 0.0  # wall time of earlier attempts, when this one started
        self.divergence = DivergenceWatch(self.K, self.device,
                                          lambda names: divergence_advice(job.algorithm.hparams, self.reward, names))
        self.phase = "offline"
        self.took_over: dict[int, str] = {}  # seed k -> whose dead run this attempt continues (run_jobs sets it)
        self.locks: list[RunLock] = []  # the run directories' locks (run_jobs sets them): checked before writes
        self.dataset: dict | None = None
        self.shards: Shards | None = None

    @property
    def active(self) -> list[bool]:
        return [f is None for f in self.state.failed]

    # -- set-up ----------------------------------------------------------------------------
    def build(self) -> None:
        seeds = [j.seed for j in self.jobs]
        seed_everything(seeds[0])
        task = self.task
        self.shards = Shards.of(task, self.protocol)  # a sharded dataset: one shard held at a time
        data = self.shards.first() if self.shards else task.load_dataset()
        data.validate(f"task '{task.name}' dataset", task.obs_dim, task.act_dim)
        # recorded in config.yaml, checked against earlier attempts
        self.dataset = self.shards.identity if self.shards else data.notes.get("identity")
        config, name = self.jobs[0].algorithm.config, self.jobs[0].algorithm.name
        # one random stream per seed; a method written for one seed draws from torch's global
        # generators, seeded above
        rng = algorithms.SeedStreams.from_seeds(seeds, self.device) if algorithms.get(name).multi_seed else None
        self.algo = algorithms.make(name, algorithms.ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim),
                                    algorithms.ActionSpec(task.act_dim), config, self.device, rng)
        self.rng = self.algo.rng
        self.algo.observe_dataset(torch.as_tensor(data.obs, device=self.device))  # dataset dtype (uint8: images)
        accelerate(self.algo, self.jobs[0].compile)  # compiled update and actions, CUDA graphs (harness.compile)
        gamma = getattr(self.algo.config, "gamma", 0.99)
        self.replay = Replay.from_dataset(data, self.protocol.online_steps, self.device, gamma, task.fail_reward,
                                          self.K, self.reward, self.algo.chunk,
                                          self.shards.capacity if self.shards else None)
        self.open_loop = OpenLoop(self.algo, self.K, deterministic=False)  # the online chunk of each seed
        self.with_mc = "mc_return" in self.algo.needs
        for seed in self.seeds:
            seed.make_envs(task)

    def save_checkpoint(self) -> None:
        for lock in self.locks:
            lock.check()  # still ours: a launcher that judged this process dead may have taken it over
        self.check_finite("checkpoint")  # a diverged seed is never saved to be resumed
        self.state.rows = [{"evals": s.store.evals, "train": s.store.train, "episodes": s.store.episodes}
                           for s in self.seeds]
        for seed in self.seeds:
            seed.trackers.flush()  # a resume continues the trackers after this checkpoint's step
        self.checkpoint.save(self.state, self.algo, self.replay, self.rng, self.wall_time(), self.open_loop,
                             self.shards)
        for seed in self.seeds:
            seed.store.flush()

    def try_resume(self) -> bool:
        state = self.checkpoint.restore(self.algo, self.replay, self.rng, self.device, self.open_loop, self.shards)
        if state is None:
            return False
        self.state = state
        for seed, rows in zip(self.seeds, state.rows):
            seed.store.evals, seed.store.train, seed.store.episodes = rows["evals"], rows["train"], rows["episodes"]
        self.divergence.checked(state.step)  # checked before it was saved
        return True

    def start(self) -> None:
        """Set-up of an attempt: run directories checked and cleaned, the method built (or
        resumed), summaries marked running, trackers and the progress bar started."""
        self.t0, self.started_at = time.monotonic(), time.time()
        for seed in self.seeds:
            check_run_dir(seed.dir, seed.job)
        for d in {*(s.dir for s in self.seeds), self.checkpoint.path.parent.parent}:
            remove_orphans(d)  # of an earlier attempt killed during a write
        previous = [read_summary(s.dir) for s in self.seeds]
        self.build()
        for seed in self.seeds:
            if self.dataset and (problem := data_problem(seed.dir, self.dataset)):
                raise DataChanged(problem)
        for seed in self.seeds:
            seed.store.write_config({**seed.job.to_dict(), **({"dataset": self.dataset} if self.dataset else {})})
        resumed = self.try_resume()
        files = [self.checkpoint.path, *(s.dir / n for s in self.seeds for n in SEED_FILES)]
        self.state.wall_time = max(self.state.wall_time, *(time_until_last_write(prev, files) for prev in previous))
        self.attempt_wall_before = self.state.wall_time
        for k, seed in enumerate(self.seeds):
            self.write_summary(k, "running" if self.active[k] else "failed")
            seed.trackers.start(self.state.step if resumed else None,
                                {"train": seed.store.train, "eval": seed.store.evals, "episode": seed.store.episodes})
        self.bar = progress_bar(self)
        self.last_score = float("nan")
        self.rate_t, self.rate_n = time.monotonic(), self.state.step

    def stop(self) -> None:
        """At a safe point after a stop request: checkpoint, then hand control to the launcher."""
        self.save_checkpoint()
        for k in range(self.K):
            self.write_summary(k, "running" if self.active[k] else "failed")
        raise Interrupted(f"stopped at update {self.state.step}, env step {self.state.env_steps}")

    def finish(self) -> list[dict[str, Any]]:
        """Each seed's final summary; the checkpoint, no longer needed, removed."""
        summaries = []
        for lock in self.locks:
            lock.check()
        short = shortfall(asked(self.protocol), self.made())
        for k, seed in enumerate(self.seeds):
            seed.store.flush()
            if short and self.active[k]:
                self.state.failed[k] = f"{ProtocolShortfall.__name__}: {short}"
            summary = self.write_summary(k, "done" if self.active[k] else "failed")
            seed.trackers.finish(summary, error=not self.active[k])
            summaries.append(summary)
        self.checkpoint.path.unlink(missing_ok=True)  # a finished run needs only its results
        if self.K > 1:
            shutil.rmtree(self.checkpoint.path.parent.parent, ignore_errors=True)  # the group's own directory
        else:
            remove_empty_checkpoint_dir(self.seeds[0].dir)
        return summaries

    def check_finite(self, phase: str, step: int | None = None) -> None:
        """Fail each seed (raise Diverged for the last one) whose updates since the last check had
        a non-finite metric or whose parameters are non-finite."""
        step = self.state.step if step is None else step  # updates watched so far
        for k, exc in self.divergence.metric_failures(step, phase, self.active):
            self.fail_seed(k, exc)
        for k, exc in self.divergence.parameter_failures(self.algo.learned_tensors(), self.state.step, phase,
                                                         self.active):
            self.fail_seed(k, exc)
        self.divergence.checked(step)

    def finite_action(self, k: int, action: np.ndarray, phase: str) -> bool:
        """Refuse seed k's NaN/inf action before env.step: the seed fails (the last active one raises)."""
        exc = self.divergence.action_failure(action, self.state.step, phase)
        if exc is not None:
            self.fail_seed(k, exc)
        return exc is None

    # -- logging and evaluation ------------------------------------------------------------
    def fail_seed(self, k: int, exc: Exception) -> None:
        """Seed k stops (its run is marked failed); the group's other seeds go on, since no seed's
        numbers depend on another's. The last seed's failure raises."""
        if sum(self.active) == 1:
            raise exc
        self.state.failed[k] = f"{type(exc).__name__}: {exc}"
        self.seeds[k].store.flush()
        self.seeds[k].trackers.finish(self.write_summary(k, "failed", error=self.state.failed[k]), error=True)

    # -- time and summaries ----------------------------------------------------------------
    def made(self) -> dict[str, int]:
        """The updates and env steps each phase made so far (the summary records them)."""
        s = self.state
        return made(self.protocol, s.step, s.env_steps, s.offline_done)

    def wall_time(self) -> float:
        """Seconds of work on this group, earlier attempts included."""
        return self.state.wall_time + time.monotonic() - self.t0

    def write_summary(self, k: int, status: str, error: str | None = None,
                      traceback_tail: str | None = None) -> dict[str, Any]:
        summary = seed_summary(self, k, status, error or self.state.failed[k], traceback_tail)
        if self.locks:
            self.locks[k].check()  # never over the summary of a launcher that took this run over
        self.seeds[k].store.write_summary(summary)
        return summary


class Runner(GroupRun):
    """The loop of one group (the same method, task and protocol, one seed each): sample a batch,
    update, log, evaluate; online, every seed steps its env first."""

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        self.start()
        try:
            if not self.state.offline_done:
                self.offline_phase()
            self.online_phase()
            self.check_finite("online" if self.protocol.online_steps else "offline")
        except BaseException:
            for seed in self.seeds:
                seed.trackers.finish(error=True)
            raise
        finally:
            self.bar.close()
        return self.finish()

    def sample_batch(self, phase: str):
        """Every active seed's batch for its next update: offline data only while pre-training,
        the method's replay mode while fine-tuning."""
        mode, ratio = ("mix", 1.0) if phase == "offline" else (self.replay_cfg.mode, self.replay_cfg.mixing_ratio)
        if self.shards:  # the shard of this update (a swap every protocol.shard_every offline updates)
            self.shards.hold(self.replay, self.state.step, self.state.offline_done)
        return self.replay.sample(self.replay_cfg.batch_size, mode, ratio, self.with_mc or self.logs_next(),
                                  self.rng, self.active)

    def train_step(self, phase: str) -> None:
        """One gradient update of every seed, each on its own batch."""
        batch = self.sample_batch(phase)
        metrics = self.algo.update_seeds(batch)
        if self.divergence.new_keys(metrics):  # another set of metrics (e.g. fine-tuning's)
            self.check_finite(self.phase, self.state.step)
        self.divergence.watch(metrics)
        self.state.step += 1
        if self.state.step % self.protocol.log_every == 0:
            self.log(metrics, phase, batch)

    def offline_phase(self) -> None:
        p, s = self.protocol, self.state
        self.phase = "offline"
        if p.offline_steps == 0 and not any(r["phase"] == "offline" for r in self.seeds[0].store.evals):
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

    def act(self, obs: list[np.ndarray]) -> np.ndarray:
        """Every seed's next online action (K, A): uniform during a uniform warm-up, else sampled
        from the policy (during a "policy" warm-up the policy is frozen: no updates yet), a chunk
        of h > 1 run open-loop (`harness.openloop`)."""
        p = self.protocol
        if self.state.env_steps < p.warmup_steps and p.warmup_policy == "uniform":
            return self.uniform_actions()
        return self.open_loop(np.stack(obs), self.active)

    def online_phase(self) -> None:
        p, s = self.protocol, self.state
        if p.online_steps == 0:
            return
        self.phase = "online"
        obs = [seed.start_episode(s.episodes[k], self.replay.pending[k]) for k, seed in enumerate(self.seeds)]
        while s.env_steps < p.online_steps:
            actions = self.act(obs)
            s.env_steps += 1
            last = s.env_steps == p.online_steps
            ended = [k for k in np.flatnonzero(self.active) if self.env_step(k, obs, actions[k], last)]
            # Updates start after the warm-up, and in replay mode "online" once there is online data.
            updating = s.env_steps > p.warmup_steps and self.replay.can_sample(self.replay_cfg.mode, self.active)
            if s.env_steps > p.warmup_steps and not updating:  # the job's updates can no longer all be made
                raise ProtocolShortfall(no_online_data(p, s.env_steps, self.replay_cfg.mode))
            for _ in range(p.utd if updating else 0):
                self.train_step("online")
            for k in ended:  # at the step after this env step's updates
                self.seeds[k].trackers.log("episode", self.seeds[k].store.episodes[-1], s.step)
            self.bar.update(1)
            if s.env_steps % p.eval_every == 0 or last:
                self.evaluate("online")
            if not last:
                if p.checkpoint_every and s.env_steps % p.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.stop_requested():
                    self.stop()

    def env_step(self, k: int, obs: list, action: np.ndarray, last: bool) -> bool:
        """Seed k's env step: the transition into replay, `obs[k]` advanced (to a new episode's
        first observation when one ended). Returns whether an episode ended."""
        if not self.finite_action(k, action, "online"):
            return False
        seed, s = self.seeds[k], self.state
        next_obs, reward, terminated, truncated, info = seed.step(action)
        end = terminated or truncated or last
        self.replay.add(obs[k], action, self.reward(reward), next_obs, terminated, end, k)
        obs[k] = next_obs
        if end:
            seed.end_episode(s.env_steps, self.task.episode_score(seed.episode[0], info))
            s.episodes[k] += 1
            self.open_loop.restart(k)  # a new episode starts with a new chunk
            if not last:
                obs[k] = seed.start_episode(s.episodes[k], self.replay.pending[k])
        return bool(end)

    def uniform_actions(self) -> np.ndarray:
        """A uniform random action per seed (K, A), seed k's from its stream (a checkpoint restores it)."""
        spec = self.algo.action_spec
        u = self.rng.each(lambda k, g: torch.rand(spec.dim, dtype=torch.float64, generator=g, device=self.device))
        return (u.cpu() * (spec.high - spec.low) + spec.low).numpy().astype(np.float32)

    # -- divergence ------------------------------------------------------------------------
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
                                           f"{self.divergence.advice(bad)}"))
                continue
            store = self.seeds[k].store
            store.train.append({"phase": phase, "step": self.state.step, "env_steps": self.state.env_steps,
                                "updates_per_s": rate, **row})
            self.seeds[k].trackers.log("train", store.train[-1], self.state.step)
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", upd_s=f"{rate:.0f}", refresh=False)

    def evaluate(self, phase: str) -> None:
        s = self.state
        self.check_finite(phase)
        results = evaluate_seeds(self.algo, [seed.eval_env for seed in self.seeds], self.task,
                                 self.protocol.eval_episodes, [seed.eval_seed for seed in self.seeds], self.active,
                                 check_action=lambda k, a: self.finite_action(k, a, f"{phase} evaluation"))
        for seed, result in zip(self.seeds, results):
            if result is not None:
                seed.store.evals.append({"phase": phase, "step": s.step, "env_steps": s.env_steps, **result})
                seed.trackers.log("eval", seed.store.evals[-1], s.step)
                seed.store.flush()
        self.last_score = float(np.mean([r["normalized_score"] for r in results if r is not None]))
        self.bar.set_postfix(phase=phase, score=f"{self.last_score:.1f}", refresh=True)


SEED_FILES = ("summary.json", "evals.csv", "train.csv", "episodes.csv")


def time_until_last_write(previous: dict[str, Any] | None, files: list[Path]) -> float:
    """Wall time of the earlier attempts up to the interrupted one's last write (to `files`), so
    that work lost since its last checkpoint still counts (0 when there was none)."""
    if not previous or previous.get("status") != "running" or "attempt_started_at" not in previous:
        return 0.0
    last_write = max((p.stat().st_mtime for p in files if p.exists()), default=previous["attempt_started_at"])
    return previous["attempt_wall_before_s"] + max(0.0, last_write - previous["attempt_started_at"])


def progress_bar(runner: Runner):
    """The group's tqdm bar: one tick per offline update and per online env step."""
    from tqdm.auto import tqdm

    p, s = runner.protocol, runner.state
    done_so_far = s.step if not s.offline_done else p.offline_steps + s.env_steps
    seeds = ",".join(str(j.seed) for j in runner.jobs)
    return tqdm(total=p.offline_steps + p.online_steps, initial=done_so_far, disable=not runner.progress_bar,
                leave=False, desc=f"{runner.jobs[0].algorithm.name}/{runner.task.name}/s{seeds}",
                dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)


def seed_summary(runner: Runner, k: int, status: str, error: str | None,
                 traceback_tail: str | None) -> dict[str, Any]:
    """Seed k's summary.json: its scores so far and the group's counters."""
    evals, job, s = runner.seeds[k].store.evals, runner.jobs[k], runner.state
    offline = [r["normalized_score"] for r in evals if r["phase"] == "offline"]
    online = [r for r in evals if r["phase"] == "online"]
    early_min = early_min_score([r["env_steps"] for r in online], [r["normalized_score"] for r in online],
                                runner.protocol.online_steps)
    wall = runner.wall_time()
    summary = {
        "status": status, "job_id": job.job_id, "suite": job.suite,
        "task": runner.task.name, "domain": runner.task.domain, "goal": runner.task.goal_reaching,
        "algorithm": job.algorithm.name,
        "seed": job.seed,
        "offline_score": offline[-1] if offline else None,
        "final_score": online[-1]["normalized_score"] if online else (offline[-1] if offline else None),
        "early_min_score": early_min if not math.isnan(early_min) else None,
        "wall_time_s": round(wall, 2),  # of the group, when the seed trained in one
        "updates_per_s": round(s.step / wall, 2) if wall > 0 else None,
        "seeds_in_process": runner.K,
        "resumed": s.resumes > 0,
        "resumes": s.resumes,
        "resumed_at": s.resumed_at,  # [updates, env steps]
        "checkpoints": runner.checkpoint.count,  # taken in this attempt
        "checkpoint_s": round(runner.checkpoint.seconds, 3),  # spent saving them, this attempt
        "protocol_asked": asked(runner.protocol),  # updates and env steps per phase: done only when equal
        "protocol_made": runner.made(),
    }
    if runner.took_over.get(k):  # this attempt continues a run whose owner died
        summary["took_over"] = runner.took_over[k]
    import os
    import socket

    summary.update(host=socket.gethostname(), pid=os.getpid())  # the process that wrote it
    if status == "running":  # lets `harness.status` tell a live run from an abandoned one
        summary.update(slurm_job_id=slurm_job_id(), attempt_started_at=runner.started_at,
                       attempt_wall_before_s=round(runner.attempt_wall_before, 2))
        if runner.K > 1:
            summary["checkpoint"] = str(runner.checkpoint.path)
    elif status == "failed" and slurm_job_id():
        summary["slurm_job_id"] = slurm_job_id()
    if error:
        summary["error"] = error
    if traceback_tail:
        summary["traceback"] = traceback_tail
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
    todo, locks = [], {}
    try:
        for i, (job, d) in enumerate(zip(jobs, run_dirs)):
            if finished_summary(d, job.job_id) is None:
                try:  # a live run owns its folder: one launcher trains it, the others skip it
                    locks[i] = RunLock(d).acquire()
                except Busy:
                    continue  # summaries[i] stays None: live in another process
            previous = finished_summary(d, job.job_id)  # (again: it may have finished meanwhile)
            if previous is not None:
                if i in locks:
                    locks.pop(i).release()
                remove_orphans(d)
                summaries[i] = previous
            else:
                todo.append(i)
        return _run_owned(jobs, run_dirs, todo, summaries, locks, progress_bar, stop_requested)
    finally:
        for lock in locks.values():
            lock.release()


def _run_owned(jobs, run_dirs, todo, summaries, locks, progress_bar, stop_requested) -> list[dict[str, Any]]:
    """run_jobs' group of the runs this process owns (`todo`, with their `locks`)."""
    if not todo:
        return summaries
    dirs = [Path(run_dirs[i]) for i in todo]
    checkpoint_dir = None
    if len(todo) > 1:
        checkpoint_dir = dirs[0].parent / ("seeds" + "-".join(str(jobs[i].seed) for i in todo)) / "checkpoint"
    runner = Runner([jobs[i] for i in todo], dirs, progress_bar, stop_requested, checkpoint_dir)
    runner.took_over = {k: locks[i].took_over for k, i in enumerate(todo) if locks[i].took_over}
    runner.locks = [locks[i] for i in todo]
    try:
        for i, summary in zip(todo, runner.run()):
            summaries[i] = summary
        return summaries
    except (Interrupted, RunDirConflict, LockLost):  # LockLost: the run is another's now, write nothing
        raise
    except Exception as exc:
        import traceback

        for lock in runner.locks:
            lock.check()  # a failure of a run taken over meanwhile is not this process's to record
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
