"""Open-loop execution of action chunks: a method with a chunk of h > 1 (`Algorithm.chunk`) is
asked for h actions at once and its envs run them one per step, the policy asked again only
after h steps or when an env starts a new episode (QC, github ColinQiyangLi/qc main.py: an action
queue refilled when empty, emptied at each episode end). With h = 1 the policy is asked at every
step, exactly as without this class."""
from __future__ import annotations

import numpy as np


class OpenLoop:
    """The rest of each env's current chunk, for the K envs of a group (one per seed).

    The policy is asked for every seed at once (one batched call) when any running env needs a new
    chunk; a seed that does not need one keeps its chunk, and its random stream is set back to
    where it was, so that each seed draws exactly what it draws alone (a group's seeds reach the
    ends of their episodes at different steps)."""

    def __init__(self, algorithm, n_envs: int, deterministic: bool):
        self.algo, self.deterministic = algorithm, deterministic
        self.h = getattr(algorithm, "chunk", 1)
        self.plan: np.ndarray | None = None  # (K, h, A): each env's current chunk
        self.used = np.full(n_envs, self.h)  # actions of its chunk each env has taken (h: a new one is due)

    def __call__(self, obs: np.ndarray, running) -> np.ndarray:
        """Each env's next action (K, A) for observations (K, *obs); `running[k]`: env k steps
        with it (the action of an env that does not is a filler, and its chunk does not advance)."""
        if self.h == 1:
            return self.algo.act(obs, deterministic=self.deterministic)
        running = np.asarray(running, bool)
        due = running & (self.used >= self.h)
        if due.any():
            chunk = self.ask(obs, due)
            chunk = chunk.reshape(len(chunk), self.h, -1)
            if self.plan is None:
                self.plan = np.zeros_like(chunk)
            self.plan[due] = chunk[due]
            self.used[due] = 0
        if self.plan is None:  # no env running (nothing to do with the action)
            return np.zeros((len(obs), self.algo.action_spec.dim), np.float32)
        actions = self.plan[np.arange(len(self.used)), np.minimum(self.used, self.h - 1)]
        self.used[running] += 1
        return actions

    def ask(self, obs: np.ndarray, due: np.ndarray) -> np.ndarray:
        """One policy call for every seed; the streams of the seeds not due are restored."""
        streams = getattr(self.algo, "rng", None)
        generators = getattr(streams, "generators", None)
        if generators is None or due.all():
            return self.algo.act(obs, deterministic=self.deterministic)
        kept = [(g, g.get_state()) for g, d in zip(generators, due) if not d]
        chunk = self.algo.act(obs, deterministic=self.deterministic)
        for g, state in kept:
            g.set_state(state)
        return chunk

    def restart(self, k: int) -> None:
        """Env k starts a new episode: its next step asks for a new chunk."""
        self.used[k] = self.h

    def state_dict(self) -> dict:
        """For a checkpoint taken mid-chunk: each env's chunk and how far it got."""
        return {"plan": None if self.plan is None else self.plan.copy(), "used": self.used.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.plan = None if state["plan"] is None else state["plan"].copy()
        self.used = state["used"].copy()
