"""Replay: the offline dataset and the online data in one device-resident store, batches drawn
with a fixed offline fraction ("mix"), uniformly over everything ("append") or from the online
data alone ("online": the offline data is dropped when fine-tuning starts), and
Monte-Carlo returns-to-go for every trajectory (offline at load, online when it ends)."""
from __future__ import annotations

import numpy as np
import torch

from algorithms.base import Batch

FIELDS = ("obs", "action", "reward", "next_obs", "done", "mc_return")


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


class Replay:
    """Offline transitions (fixed, first) followed by online transitions (growing).

    Online steps wait in a pending list until their trajectory ends, then enter the store with
    their Monte-Carlo returns (as the Cal-QL reference adds whole trajectories); so sampling
    never sees a transition without its return-to-go.
    """

    def __init__(self, offline: dict[str, np.ndarray], online_capacity: int, device: torch.device,
                 gamma: float, fail_reward: float | None):
        self.device = device
        self.gamma, self.fail_reward = gamma, fail_reward
        self.n_offline = len(offline["reward"])
        self.capacity = self.n_offline + online_capacity
        self.n_online = 0
        self.storage: dict[str, torch.Tensor] = {}
        # uint8 observations (image tasks, see algorithms.base.ObsSpec) stay uint8; the rest is float32
        self.obs_dtype = np.uint8 if np.asarray(offline["obs"]).dtype == np.uint8 else np.float32
        for key in FIELDS:
            dtype = self.obs_dtype if key in ("obs", "next_obs") else np.float32
            arr = torch.as_tensor(np.asarray(offline[key], dtype=dtype))
            buf = torch.zeros((self.capacity, *arr.shape[1:]), dtype=arr.dtype, device=device)
            buf[: self.n_offline] = arr.to(device)
            self.storage[key] = buf
        self.pending: list[tuple[np.ndarray, np.ndarray, float, np.ndarray, float]] = []

    def add(self, obs, action, reward: float, next_obs, terminal: bool, episode_end: bool) -> None:
        """One online step; when `episode_end`, the trajectory is committed with its returns."""
        self.pending.append((np.array(obs, self.obs_dtype), np.array(action, np.float32), float(reward),
                             np.array(next_obs, self.obs_dtype), float(terminal)))
        if episode_end:
            self.commit()

    def commit(self) -> None:
        if not self.pending:
            return
        obs, action, reward, next_obs, done = (np.stack(x) for x in zip(*self.pending))
        ends = np.zeros(len(reward), bool)
        ends[-1] = True
        ret = mc_returns(reward, ends, self.gamma, self.fail_reward)
        n = len(reward)
        if self.n_online + n > self.capacity - self.n_offline:
            raise RuntimeError("online buffer full: online_capacity must cover all online steps")
        lo = self.n_offline + self.n_online
        for key, arr in zip(FIELDS, (obs, action, reward, next_obs, done, ret)):
            self.storage[key][lo:lo + n] = torch.as_tensor(arr, device=self.device)
        self.n_online += n
        self.pending.clear()

    def can_sample(self, mode: str) -> bool:
        """Whether `mode` has data: "online" needs one ended online trajectory."""
        return mode != "online" or self.n_online > 0

    def sample(self, batch_size: int, mode: str, mixing_ratio: float, with_mc_return: bool) -> Batch:
        """mode "mix": round(mixing_ratio * batch_size) rows from offline data, the rest online
        (all offline while no online trajectory has ended); "append": uniform over both;
        "online": uniform over the online data (see `can_sample`)."""
        if mode == "online":
            if self.n_online == 0:
                raise RuntimeError("replay mode 'online' has no online data yet: no online trajectory has ended")
            idx = self.n_offline + torch.randint(0, self.n_online, (batch_size,), device=self.device)
        elif mode == "append" or self.n_online == 0:
            idx = torch.randint(0, self.n_offline + self.n_online, (batch_size,), device=self.device)
        else:
            n_off = int(round(mixing_ratio * batch_size))
            idx = torch.cat([
                torch.randint(0, self.n_offline, (n_off,), device=self.device),
                self.n_offline + torch.randint(0, self.n_online, (batch_size - n_off,), device=self.device),
            ])
        s = self.storage
        return Batch(obs=s["obs"][idx], action=s["action"][idx], reward=s["reward"][idx],
                     next_obs=s["next_obs"][idx], done=s["done"][idx],
                     mc_return=s["mc_return"][idx] if with_mc_return else None)

    def online_state(self) -> dict:
        """What a checkpoint needs to restore the online part."""
        lo, hi = self.n_offline, self.n_offline + self.n_online
        # clone: a slice is a view, and torch.save writes a view's whole storage (the preallocated
        # buffer, offline data included), not just the filled rows
        return {"n_online": self.n_online, "pending": list(self.pending),
                "data": {k: v[lo:hi].clone().cpu() for k, v in self.storage.items()}}

    def load_online_state(self, state: dict) -> None:
        self.n_online = state["n_online"]
        self.pending = list(state["pending"])
        lo = self.n_offline
        for k, v in state["data"].items():
            self.storage[k][lo:lo + self.n_online] = v.to(self.device)
