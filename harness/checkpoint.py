"""A group's checkpoint: what it holds (progress counters and curves, the method's state, the
online buffers, every random generator's state), where it lives, and how a run resumes from it.
Written atomically: a group killed while saving keeps its previous checkpoint."""
from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.store import RunDirConflict, atomic_write


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

    @classmethod
    def fresh(cls, n_seeds: int) -> Progress:
        return cls(episodes=[0] * n_seeds, failed=[None] * n_seeds,
                   rows=[{"evals": [], "train": [], "episodes": []} for _ in range(n_seeds)])


def rng_state(streams) -> dict[str, Any]:
    """Every generator a run draws from: the per-seed streams, torch's (CPU, CUDA), numpy's, Python's."""
    return {"seed_streams": streams.state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}


def restore_rng(payload: dict[str, Any], streams) -> None:
    streams.load_state(payload["seed_streams"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    np.random.set_state(payload["numpy_rng"])
    random.setstate(payload["python_rng"])


class Checkpoint:
    """The checkpoint of the jobs `job_ids` at `path`; counts this attempt's saves and their time."""

    def __init__(self, path: Path, job_ids: list[str]):
        self.path, self.job_ids = Path(path), list(job_ids)
        self.seconds, self.count = 0.0, 0  # this attempt's checkpoints

    def save(self, progress: Progress, algorithm, replay, streams, wall_time: float, open_loop=None,
             shards=None) -> None:
        """Everything the group needs to continue: networks, optimizers and learned scalars (via
        the algorithm's state_dict), the online buffers (with each seed's unfinished episode),
        all RNG states, counters and curves, each seed's action chunk in progress (a
        checkpoint may fall mid-chunk: the rest of the chunk is run after a resume), and of a
        sharded dataset the shard the replay holds (`harness.shards`)."""
        t = time.monotonic()
        payload = {"job_ids": self.job_ids, "progress": progress, "algorithm": algorithm.state_dict(),
                   "replay": replay.online_state(), **rng_state(streams), "wall_time": wall_time}
        if open_loop is not None:
            payload["open_loop"] = open_loop.state_dict()
        if shards is not None:
            payload["shards"] = shards.state_dict()
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(self.path, buf.getvalue())
        self.seconds += time.monotonic() - t
        self.count += 1

    def restore(self, algorithm, replay, streams, device: torch.device, open_loop=None,
                shards=None) -> Progress | None:
        """The saved progress, with the method, buffers and generators put back as they were
        (counted as one more resume); None when there is no checkpoint."""
        if not self.path.exists():
            return None
        payload = torch.load(self.path, map_location=device, weights_only=False)
        if payload.get("job_ids") != self.job_ids:
            raise RunDirConflict(f"{self.path} holds a checkpoint of jobs {payload.get('job_ids')}, not "
                                 f"{self.job_ids}; use another runs_dir or delete that checkpoint")
        progress = payload["progress"]
        progress.resumes += 1
        progress.resumed_at.append([progress.step, progress.env_steps])
        progress.wall_time = payload["wall_time"]
        algorithm.load_state_dict(payload["algorithm"])
        replay.load_online_state(payload["replay"])
        if shards is not None and "shards" in payload:
            shards.load_state_dict(payload["shards"], replay)
        restore_rng(payload, streams)
        if open_loop is not None and "open_loop" in payload:  # older checkpoints: h = 1, nothing in progress
            open_loop.load_state_dict(payload["open_loop"])
        return progress
