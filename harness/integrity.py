"""What makes a run's results true to its job: the protocol it asked for was carried out (the
updates and env steps of each phase), and the offline data it trains on is the data its earlier
attempts, and the store's other runs of the task, trained on. The runner asks these before it
calls a run done and before it trains on data."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ProtocolShortfall(RuntimeError):
    """A phase made fewer (or more) updates or env steps than the job asked for."""


class DataChanged(RuntimeError):
    """The offline data differs from what this run, or the store's other runs of the task, used."""


def asked(protocol) -> dict[str, int]:
    """The updates and env steps the job asks of each phase."""
    online_updates = max(0, protocol.online_steps - protocol.warmup_steps) * protocol.utd
    return {"offline_updates": protocol.offline_steps, "online_env_steps": protocol.online_steps,
            "online_updates": online_updates}


def made(protocol, step: int, env_steps: int, offline_done: bool) -> dict[str, int]:
    """What a run made so far, from its counters: offline, every update until the phase ended;
    online, the updates since then and the env steps."""
    offline = step if not offline_done else min(step, protocol.offline_steps)
    return {"offline_updates": offline, "online_env_steps": env_steps,
            "online_updates": step - offline if offline_done else 0}


def shortfall(want: dict[str, int], got: dict[str, int]) -> str | None:
    """One line naming each count that differs from the job's (None: the protocol ran)."""
    missing = [f"{got[k]:,} {k.replace('_', ' ')} of {want[k]:,} asked" for k in want if got.get(k) != want[k]]
    return f"the protocol did not run: {'; '.join(missing)}" if missing else None


def no_online_data(protocol, env_steps: int, mode: str) -> str:
    """Why no update can be made at an online step after the warm-up (replay mode 'online'
    samples only ended trajectories and none has ended yet)."""
    return (f"the protocol did not run: no online update possible at env step {env_steps:,} (after "
            f"protocol.warmup_steps={protocol.warmup_steps:,}): replay mode '{mode}' samples only ended "
            f"online trajectories and none has ended yet; raise protocol.warmup_steps past the first episode's end "
            f"(at most the task's horizon) so that the job's {asked(protocol)['online_updates']:,} online updates "
            f"can all be made")


def recorded_dataset(run_dir: Path) -> dict[str, Any] | None:
    """The dataset block a run's config.yaml recorded when it started (None: none recorded)."""
    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data = config.get("dataset") if isinstance(config, dict) else None
    return data if isinstance(data, dict) and data.get("sha256") else None


def changed_shard(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first shard file (of a sharded dataset's identity, `harness.shards`) whose hash differs."""
    a, b = then.get("shards") or [], now.get("shards") or []
    diff = [x["file"] for x, y in zip(a, b) if x != y]
    return f"{now['where']}: shard {diff[0]}" if diff and len(a) == len(b) else None


def data_problem(run_dir: Path, identity: dict[str, Any]) -> str | None:
    """One line when `identity` (the data as loaded now) differs from the data this run's earlier
    attempts trained on, or from that of the store's other runs of the same task (a study's
    scores are compared on one dataset); None when it is the same or nothing was recorded."""
    run_dir = Path(run_dir)
    where = identity.get("path") or identity.get("where")
    mine = recorded_dataset(run_dir)
    if mine is not None and mine["sha256"] != identity["sha256"]:
        where = changed_shard(mine, identity) or where
        return (f"{where} changed since this run started (sha256 {mine['sha256'][:16]}... then, "
                f"{identity['sha256'][:16]}... now): resuming would train on other data; restore that data, or move "
                f"{run_dir} away to start this run anew")
    task_dir = run_dir.parents[1]  # <suite>/<task>/<algorithm>/seed<k>
    for other in sorted(task_dir.glob("*/seed*")):
        if other == run_dir or (data := recorded_dataset(other)) is None:
            continue
        if data["sha256"] != identity["sha256"]:
            return (f"{where} holds other data (sha256 {identity['sha256'][:16]}...) than this store's runs of "
                    f"{task_dir.name} trained on ({data['sha256'][:16]}..., e.g. {other}); restore that data, or "
                    f"use another runs_dir for the new data")
    return None
