"""A sharded dataset (`tasks.base.Task.shards`, OGBench's 100M variants) held one shard at a time,
as QC trains on the 100M data (ColinQiyangLi/qc, main.py: one 1M-transition file in memory; before
offline update i, when i % --dataset_replace_interval == 0 (default 1000), the next file in sorted
name order, round robin, replaces it; fine-tuning keeps the file loaded last, its replay buffer
made from it, and swaps no more). The interval is `protocol.shard_every`; 0 loads every shard at
once. The file held is a function of the progress counters (`index`), so no random generator is
involved; a checkpoint records it all the same (`state_dict`) and a resume reloads it.

The data's identity (`harness.integrity`) covers every shard: the sha256 of each file's bytes,
taken when the run starts (a few seconds per GB), and combined in order; a file whose size or
mtime changed since is hashed again when it is next loaded, and refused if its bytes differ."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from harness.integrity import DataChanged


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def stat_key(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class Shards:
    """The shards of `task`'s dataset and which one the replay holds (`loaded`)."""

    def __init__(self, task, protocol):
        self.task, self.every, self.offline_steps = task, protocol.shard_every, protocol.offline_steps
        source, self.files = task.shard_files()
        self.loaded: int | None = None
        self.stats = [stat_key(s.where) for s in self.files]
        digests = [file_sha256(s.where) for s in self.files]
        self.identity: dict[str, Any] = {
            "source": source.name, "where": source.where, "files": len(self.files),
            "sha256": hashlib.sha256("".join(digests).encode()).hexdigest(), "generator": source.name,
            **source.about(), "shards": [{"file": Path(s.where).name, "sha256": d} for s, d in zip(self.files, digests)]}

    @classmethod
    def of(cls, task, protocol) -> Shards | None:
        """The shards of a sharded task held one at a time; None where the dataset loads whole."""
        return cls(task, protocol) if task.shards and protocol.shard_every else None

    @property
    def capacity(self) -> int:
        """Offline rows the replay keeps: the largest shard's."""
        return max(s.rows for s in self.files)

    def index(self, step: int, offline_done: bool) -> int:
        """The shard of the next update after `step` updates: offline update i = step + 1 uses
        file (i // every) mod n (QC swaps before i's batch when i % every == 0); fine-tuning keeps
        the file of the last offline update."""
        update = self.offline_steps if offline_done else step + 1
        return (update // self.every) % len(self.files)

    def load(self, i: int):
        """Shard i's transitions, validated; DataChanged if its file differs from the one hashed
        when the run started."""
        shard = self.files[i]
        if stat_key(shard.where) != self.stats[i]:
            digest = file_sha256(shard.where)
            if digest != self.identity["shards"][i]["sha256"]:
                raise DataChanged(f"{shard.where} changed since this run started (sha256 "
                                  f"{self.identity['shards'][i]['sha256'][:16]}... then, {digest[:16]}... now): training "
                                  f"on would use other data; restore that file and rerun to resume")
            self.stats[i] = stat_key(shard.where)
        return self.task.checked(shard.load(), shard.where)

    def first(self):
        """Shard 0, which a run starts with (and whose observations a method's statistics see)."""
        data = self.load(0)
        self.loaded = 0
        return data

    def hold(self, replay, step: int, offline_done: bool) -> None:
        """Make the replay hold the shard of the next update (a swap only when it changes)."""
        i = self.index(step, offline_done)
        if i != self.loaded:
            self.put(replay, i)

    def put(self, replay, i: int) -> None:
        replay.load_offline(self.load(i))
        self.loaded = i

    def state_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "files": len(self.files), "every": self.every}

    def load_state_dict(self, state: dict[str, Any], replay) -> None:
        """The shard a checkpoint's replay held, loaded again."""
        if state["files"] != len(self.files):
            raise DataChanged(f"{self.identity['where']}: the checkpoint was taken on {state['files']} shard files, "
                              f"{len(self.files)} are there now; restore them, or move the run away to start anew")
        if state["loaded"] is not None and state["loaded"] != self.loaded:
            self.put(replay, state["loaded"])
