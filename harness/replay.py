"""Replay: the offline dataset and each seed's online data in one device-resident store, batches
drawn with a fixed offline fraction ("mix"), uniformly over everything ("append") or from the
online data alone ("online": the offline data is dropped when fine-tuning starts), and
Monte-Carlo returns-to-go for every trajectory (offline at load, online when it ends). For a method
with action chunks (h > 1), each batch row is an h-step chunk (see `algorithms.base.Batch`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from algorithms.base import Batch, SeedStreams

if TYPE_CHECKING:
    from tasks.base import Dataset

FIELDS = ("obs", "action", "reward", "next_obs", "done", "mc_return", "episode_end")


def mc_returns(reward: np.ndarray, episode_end: np.ndarray, gamma: float,
               fail_reward: float | None = None) -> np.ndarray:
    """Discounted return-to-go of each step within its trajectory (no bootstrap at the end).

    `episode_end[i]` marks the last step of a trajectory (terminal, time-out or end of data).
    Sparse-failure rule (Cal-QL): with `fail_reward` given, a trajectory whose rewards all
    equal it never succeeded and gets fail_reward / (1 - gamma) at every step, the value of
    failing forever, instead of a return that shrinks towards the end of a truncated episode.
    """
    reward = np.asarray(reward, dtype=np.float64)
    out = np.empty_like(reward)
    ends = np.flatnonzero(episode_end)
    if len(reward) and (len(ends) == 0 or ends[-1] != len(reward) - 1):
        ends = np.append(ends, len(reward) - 1)
    start = 0
    for end in ends:
        r = reward[start:end + 1]
        if fail_reward is not None and np.all(r == fail_reward):
            out[start:end + 1] = fail_reward / (1.0 - gamma)
        else:
            acc = 0.0
            seg = np.empty_like(r)
            for i in range(len(r) - 1, -1, -1):
                acc = r[i] + gamma * acc
                seg[i] = acc
            out[start:end + 1] = seg
        start = end + 1
    return out.astype(np.float32)


def offline_arrays(data: Dataset, transform: Callable, gamma: float, fail: float | None) -> dict[str, np.ndarray]:
    """A dataset's rows as the replay stores them: rewards through the job's `transform`, returns
    under the sparse-failure rule (`fail`: the transformed failure reward)."""
    reward = transform(data.reward)
    return {"obs": data.obs, "action": data.action, "reward": reward, "next_obs": data.next_obs,
            "done": data.terminal.astype(np.float32), "mc_return": mc_returns(reward, data.episode_end, gamma, fail),
            "episode_end": data.episode_end}


class Replay:
    """Offline transitions (first, shared by every seed) followed by each seed's own online
    transitions (growing): seed k's online rows start at offline_capacity + k * online_capacity.
    The offline rows are the dataset, or of a sharded dataset the one shard held now
    (`load_offline`; `offline_capacity` is then its largest shard's rows).

    Online steps wait in a per-seed pending list until their trajectory ends, then enter the store
    with their Monte-Carlo returns (as the Cal-QL reference adds whole trajectories); so sampling
    never sees a transition without its return-to-go.

    With `chunk` = h > 1 a batch row starts at a step t whose chunk t .. t+h-1 lies inside one
    stored segment (the offline data, or a seed's stored online rows), as QC's `sample_sequence`
    draws starts below size - h + 1; a chunk may cross an episode end (`episode_end`, kept per
    row; offline data without one ends episodes at its terminals), which `valid` then masks.
    """

    def __init__(self, offline: dict[str, np.ndarray], online_capacity: int, device: torch.device,
                 gamma: float, fail_reward: float | None, n_seeds: int = 1, chunk: int = 1,
                 offline_capacity: int | None = None):
        self.device = device
        self.gamma, self.fail_reward = gamma, fail_reward
        self.chunk = chunk
        self.transform = lambda r: r  # the job's reward transform (`from_dataset`), for `load_offline`
        self.n_offline = len(offline["reward"])
        self.check_chunk(self.n_offline)
        offline = {"episode_end": offline["done"], **offline}
        # rows kept for the offline data: the data itself, or the largest shard of a sharded dataset
        self.offline_capacity = max(self.n_offline, offline_capacity or 0)
        self.online_capacity = online_capacity
        self.capacity = self.offline_capacity + n_seeds * online_capacity
        self.n_online = [0] * n_seeds
        self.storage: dict[str, torch.Tensor] = {}
        # uint8 observations (image tasks, see algorithms.base.ObsSpec) stay uint8; the rest is float32
        self.obs_dtype = np.uint8 if np.asarray(offline["obs"]).dtype == np.uint8 else np.float32
        for key in FIELDS:
            arr = torch.as_tensor(np.asarray(offline[key], dtype=self.storage_dtype(key)))
            buf = torch.zeros((self.capacity, *arr.shape[1:]), dtype=arr.dtype, device=device)
            buf[: self.n_offline] = arr.to(device)
            self.storage[key] = buf
        self.pending: list[list[tuple]] = [[] for _ in range(n_seeds)]

    @classmethod
    def from_dataset(cls, data: Dataset, online_capacity: int, device: torch.device, gamma: float,
                     fail_reward: float | None = None, n_seeds: int = 1,
                     reward_transform: Callable | None = None, chunk: int = 1,
                     offline_capacity: int | None = None) -> Replay:
        """A task's dataset as the offline part, its rewards through `reward_transform` (a job's
        RewardTransform; None: as recorded) and its Monte-Carlo returns under the sparse-failure
        rule; `fail_reward` is the task's, before the transform. `chunk`: the method's h.
        `offline_capacity`: rows kept for offline data that `load_offline` swaps (None: `data`'s)."""
        transform = reward_transform or (lambda r: r)
        fail = None if fail_reward is None else transform(fail_reward)
        replay = cls(offline_arrays(data, transform, gamma, fail), online_capacity, device, gamma, fail, n_seeds,
                     chunk, offline_capacity)
        replay.transform = transform
        return replay

    def check_chunk(self, n_offline: int) -> None:
        if self.chunk > 1 and n_offline < self.chunk:
            raise ValueError(f"the offline data holds {n_offline} steps, fewer than one action chunk "
                             f"({self.chunk}); use a larger dataset or a shorter chunk")

    def load_offline(self, data: Dataset) -> None:
        """Replace the offline data by `data` (another shard of a sharded dataset, `harness.shards`),
        in place: at most `offline_capacity` rows, rewards and returns as `from_dataset` made them."""
        n = len(data.reward)
        if n > self.offline_capacity:
            raise ValueError(f"a shard of {n:,} rows does not fit the {self.offline_capacity:,} rows kept for one")
        self.check_chunk(n)
        arrays = offline_arrays(data, self.transform, self.gamma, self.fail_reward)
        for key in FIELDS:
            self.storage[key][:n] = torch.as_tensor(np.asarray(arrays[key], dtype=self.storage_dtype(key))).to(self.device)
        self.n_offline = n

    def storage_dtype(self, key: str):
        return self.obs_dtype if key in ("obs", "next_obs") else bool if key == "episode_end" else np.float32

    def online_start(self, k: int) -> int:
        return self.offline_capacity + k * self.online_capacity

    def add(self, obs, action, reward: float, next_obs, terminal: bool, episode_end: bool, k: int = 0) -> None:
        """One online step of seed k; when `episode_end`, the trajectory is committed with its returns."""
        self.pending[k].append((np.array(obs, self.obs_dtype), np.array(action, np.float32), float(reward),
                                np.array(next_obs, self.obs_dtype), float(terminal)))
        if episode_end:
            self.commit(k)

    def commit(self, k: int = 0) -> None:
        if not self.pending[k]:
            return
        obs, action, reward, next_obs, done = (np.stack(x) for x in zip(*self.pending[k]))
        ends = np.zeros(len(reward), bool)
        ends[-1] = True
        ret = mc_returns(reward, ends, self.gamma, self.fail_reward)
        n = len(reward)
        if self.n_online[k] + n > self.online_capacity:
            raise RuntimeError("online buffer full: online_capacity must cover all online steps")
        lo = self.online_start(k) + self.n_online[k]
        for key, arr in zip(FIELDS, (obs, action, reward, next_obs, done, ret, ends)):
            self.storage[key][lo:lo + n] = torch.as_tensor(arr, device=self.device)
        self.n_online[k] += n
        self.pending[k].clear()

    def can_sample(self, mode: str, active: list[bool] | None = None) -> bool:
        """Whether `mode` has data for every active seed: "online" needs one ended online
        trajectory of each (the seeds of a group update together, so a group starts once its
        last seed has one), with a chunk of h > 1 at least h stored online steps."""
        active = [True] * len(self.n_online) if active is None else active
        return mode != "online" or all(self.starts(n) > 0 for n, a in zip(self.n_online, active) if a)

    def starts(self, n: int) -> int:
        """How many chunks start in a segment of n stored steps (the chunk must end inside it)."""
        return max(0, n - self.chunk + 1)

    def sample(self, batch_size: int, mode: str, mixing_ratio: float, with_mc_return: bool,
               rng: SeedStreams | None = None, active: list[bool] | None = None) -> Batch:
        """One batch per seed (fields (K, batch_size, ...)), seed k's rows drawn with stream k of
        `rng` (default: one seed on torch's global generator) from the offline data and its own
        online data. mode "mix":
        round(mixing_ratio * batch_size) rows from offline data, the rest online (all offline
        while no online trajectory of that seed has ended); "append": uniform over both;
        "online": uniform over the seed's online data (see `can_sample`; a seed not `active`,
        whose update is discarded, without online data draws as "append"). With a chunk of
        h > 1 the rows are chunk starts, drawn alike over the steps where a chunk starts (see
        `starts`; fewer than h stored online steps count as no online data)."""
        n_offline = self.starts(self.n_offline)  # = self.n_offline with h = 1: the same draws

        def rows(k: int, g: torch.Generator | None) -> torch.Tensor:
            n_online, shift = self.starts(self.n_online[k]), self.online_start(k) - n_offline
            if mode == "online" and (n_online or (active is None or active[k])):
                if n_online == 0:
                    raise RuntimeError("replay mode 'online' has no online data yet: no online trajectory has ended"
                                       + (f" (or fewer than {self.chunk} online steps, one chunk)" if self.chunk > 1 else ""))
                return self.online_start(k) + torch.randint(0, n_online, (batch_size,), generator=g, device=self.device)
            if mode == "append" or n_online == 0:
                idx = torch.randint(0, n_offline + n_online, (batch_size,), generator=g, device=self.device)
                return idx + shift * (idx >= n_offline) if shift else idx
            n_off = int(round(mixing_ratio * batch_size))
            return torch.cat([
                torch.randint(0, n_offline, (n_off,), generator=g, device=self.device),
                self.online_start(k) + torch.randint(0, n_online, (batch_size - n_off,), generator=g, device=self.device),
            ])

        idx = (rng or SeedStreams()).each(rows)
        s = self.storage
        if self.chunk > 1:
            return self.chunks(idx, with_mc_return)
        return Batch(obs=s["obs"][idx], action=s["action"][idx], reward=s["reward"][idx],
                     next_obs=s["next_obs"][idx], done=s["done"][idx],
                     mc_return=s["mc_return"][idx] if with_mc_return else None)

    def chunks(self, idx: torch.Tensor, with_mc_return: bool) -> Batch:
        """The h-step chunks starting at rows `idx` (K, B) (QC's `sample_sequence`: actions
        a_t..a_{t+h-1}, rewards summed with gamma^i, `valid` = no episode end before step i),
        except that the reward sum stops at the episode's end and `done` counts only a terminal
        on a valid step, so that a masked step never leaks into the backup."""
        s, h = self.storage, self.chunk
        steps = idx.unsqueeze(-1) + torch.arange(h, device=self.device)  # (K, B, h)
        ended = torch.cummax(s["episode_end"][steps].to(torch.float32), -1).values
        valid = torch.cat([torch.ones_like(ended[..., :1]), 1.0 - ended[..., :-1]], -1)
        discount = self.gamma ** torch.arange(h, dtype=torch.float64, device=self.device)
        reward = (s["reward"][steps] * valid * discount.to(torch.float32)).sum(-1)
        done = (s["done"][steps] * valid).amax(-1)
        action = s["action"][steps]
        return Batch(obs=s["obs"][idx], action=action.reshape(*action.shape[:-2], -1), reward=reward,
                     next_obs=s["next_obs"][steps[..., -1]], done=done,
                     mc_return=s["mc_return"][idx] if with_mc_return else None, valid=valid)

    def online_state(self) -> dict:
        """What a checkpoint needs to restore the online part."""
        # clone: a slice is a view, and torch.save writes a view's whole storage (the preallocated
        # buffer, offline data included), not just the filled rows
        data = [{key: v[self.online_start(k):self.online_start(k) + n].clone().cpu() for key, v in self.storage.items()}
                for k, n in enumerate(self.n_online)]
        return {"n_online": list(self.n_online), "pending": [list(p) for p in self.pending], "data": data}

    def load_online_state(self, state: dict) -> None:
        self.n_online = list(state["n_online"])
        self.pending = [list(p) for p in state["pending"]]
        for k, (n, data) in enumerate(zip(self.n_online, state["data"])):
            lo = self.online_start(k)
            for key, v in data.items():
                self.storage[key][lo:lo + n] = v.to(self.device)
