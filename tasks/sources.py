"""Dataset sources: Minari datasets by id (under MINARI_DATASETS_PATH), flattened to transitions."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from tasks.base import Dataset, DatasetError


def minari_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def minari_present(dataset_id: str) -> bool:
    return (minari_root() / dataset_id / "data" / "metadata.json").exists()


def load_minari(dataset_id: str, obs_fn: Callable[[object], np.ndarray] | None = None) -> Dataset:
    """All episodes of a local Minari dataset as flat transitions. `obs_fn` maps the stored
    observation (array or dict of arrays, whole episode) to a (T+1, obs_dim) array."""
    import minari

    if not minari_present(dataset_id):
        raise DatasetError(f"Minari dataset '{dataset_id}' not found under {minari_root()}; "
                           f"run `python -m tasks download` or `generate` for its task")
    try:
        ds = minari.load_dataset(dataset_id)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminal", "timeout")}
        for ep in ds.iterate_episodes():
            obs = obs_fn(ep.observations) if obs_fn else np.asarray(ep.observations)
            T = len(ep.actions)
            terminal = np.asarray(ep.terminations, bool)
            timeout = np.asarray(ep.truncations, bool).copy()
            timeout[-1] = not terminal[-1]  # the recorded episode ends here whatever the flags say
            parts["obs"].append(obs[:-1])
            parts["next_obs"].append(obs[1:T + 1])
            parts["action"].append(np.asarray(ep.actions))
            parts["reward"].append(np.asarray(ep.rewards))
            parts["terminal"].append(terminal)
            parts["timeout"].append(timeout)
    except DatasetError:
        raise
    except Exception as exc:  # h5py / minari errors on damaged files
        raise DatasetError(f"Minari dataset '{dataset_id}' under {minari_root()} could not be read "
                           f"({type(exc).__name__}: {exc}); delete it and generate or download it again") from exc
    return Dataset(**{k: np.concatenate(v).astype(_dtype(k, v[0])) for k, v in parts.items()})


def _dtype(key: str, sample: np.ndarray) -> type:
    """bool flags; uint8 observations (image tasks) stay uint8; everything else float32."""
    if key in ("terminal", "timeout"):
        return bool
    return np.uint8 if key in ("obs", "next_obs") and sample.dtype == np.uint8 else np.float32
