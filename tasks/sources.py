"""Dataset sources: Minari datasets by id (under MINARI_DATASETS_PATH), flattened to transitions."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from tasks.base import Dataset, DatasetError


def minari_root() -> Path:
    """MINARI_DATASETS_PATH (`~` expanded, made absolute: a relative one is resolved once, against
    the working directory), default ~/.minari/datasets as Minari's own."""
    value = os.environ.get("MINARI_DATASETS_PATH")
    return Path(value).expanduser().absolute() if value else Path.home().absolute() / ".minari" / "datasets"


def minari_path_problem() -> str | None:
    """Why datasets cannot be saved under MINARI_DATASETS_PATH (None: they can), found before any
    generation: set but empty, a file, or not writable (e.g. a read-only HOME for the default)."""
    value = os.environ.get("MINARI_DATASETS_PATH")
    if value is not None and not value.strip():
        return ("MINARI_DATASETS_PATH is set but empty; unset it (default ~/.minari/datasets) or set it to a "
                "writable folder")
    root = minari_root()
    return folder_problem(root, f"MINARI_DATASETS_PATH={value}" if value else
                          f"MINARI_DATASETS_PATH (unset: default {root})")


def folder_problem(folder: Path, name: str) -> str | None:
    """Why files cannot be created in `folder` (made on demand), named by the variable `name`
    that chose it; None when they can."""
    variable = name.split("=")[0].split(" ")[0]
    base = Path(folder)
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return f"{name}: {base} is a file, not a folder; set {variable} to a writable folder"
    if not os.access(base, os.W_OK | os.X_OK):  # also false on a read-only file system
        return f"{name}: {base} is not writable; set {variable} to a writable folder"
    return None


def data_dir_problem(folder: Path) -> str | None:
    """`folder_problem` for a folder under O2O_DATA_DIR (set but empty: refused)."""
    value = os.environ.get("O2O_DATA_DIR")
    if value is not None and not value.strip():
        return "O2O_DATA_DIR is set but empty; unset it (default ~/.o2o/data) or set it to a writable folder"
    return folder_problem(folder, f"O2O_DATA_DIR={value}" if value else f"O2O_DATA_DIR (unset: default {data_dir()})")


def minari_present(dataset_id: str) -> bool:
    return (minari_root() / dataset_id / "data" / "metadata.json").exists()


def minari_about(dataset_id: str) -> dict:
    """Generator and version of a local Minari dataset, from its metadata.json."""
    import json

    try:
        meta = json.loads((minari_root() / dataset_id / "data" / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"path": str(minari_root() / dataset_id), "generator": f"{meta.get('algorithm_name')} ({meta.get('code_permalink')})",
            "version": f"Minari dataset {dataset_id}, minari {meta.get('minari_version')}"}


def minari_problem(dataset_id: str) -> str | None:
    """Why a present Minari dataset cannot be read (None: it opens), without loading it."""
    import json

    import h5py

    data = minari_root() / dataset_id / "data"
    try:
        meta = json.loads((data / "metadata.json").read_text())
        with h5py.File(data / "main_data.hdf5", "r") as f:
            f.keys()
    except Exception as exc:
        return f"{data} is corrupt ({type(exc).__name__}: {_first_line(exc)}); delete it and generate or download it again"
    if isinstance(meta, dict) and meta.get("total_steps") == 0:
        return f"{data} holds 0 steps; delete it and generate or download it again"
    return None


def d4rl_problem(path: Path) -> str | None:
    """Why a present D4RL HDF5 file cannot be used (None: it opens and has the keys), without loading it."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            rows = None if missing else len(f["rewards"])
    except Exception as exc:
        return f"{path} is corrupt ({type(exc).__name__}: {_first_line(exc)}); download it again"
    if missing:
        return f"{path} has no {', '.join(repr(k) for k in missing)} key(s); not a D4RL v2 dataset file"
    return f"{path} has 0 rows; the file is empty or was cut short, download it again" if rows == 0 else None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def load_minari(dataset_id: str, obs_fn: Callable[[object], np.ndarray] | None = None,
                reward_fn: Callable[[object], np.ndarray] | None = None) -> Dataset:
    """All episodes of a local Minari dataset as flat transitions. `obs_fn` maps the stored
    observation (array or dict of arrays, whole episode) to a (T+1, obs_dim) array;
    `reward_fn(episode)` relabels an episode's T rewards (e.g. from its observations or infos)."""
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
            parts["reward"].append(np.asarray(reward_fn(ep) if reward_fn else ep.rewards))
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


# -- where users put files that are not Minari datasets ------------------------------------------
def data_dir() -> Path:
    """Root for D4RL HDF5 files and AWAC hand demos: $O2O_DATA_DIR, default ~/.o2o/data.
    Layout: <root>/d4rl/<d4rl-name>.hdf5 (e.g. antmaze-large-diverse-v2.hdf5) and
    <root>/awac/<env>2_sparse.npy, <root>/awac/<env>_bc_sparse4.npy (env: pen, door, relocate)."""
    return Path(os.environ.get("O2O_DATA_DIR") or Path.home() / ".o2o" / "data").expanduser().absolute()


D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def load_d4rl_hdf5(path: Path, obs_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Dataset:
    """A D4RL HDF5 file (keys observations, actions, rewards, terminals, timeouts[, next_observations,
    infos/*]) read with h5py, no `d4rl` import. Without `next_observations`, next_obs is the
    following row and the last step of each time-out trajectory (whose successor is a reset) is
    dropped, as d4rl.qlearning_dataset does (and the file's last row unless terminal); its
    predecessor then ends the trajectory. A file without `timeouts` is refused: every D4RL v2
    file has them, and without them trajectories would run into each other (d4rl's fallback
    guesses them from the env's time limit). Actions are kept as stored: `Task.load_dataset`
    applies the one action rule of every source (`tasks.base.ACTION_CLIP`). A file of 0 rows
    is refused."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"D4RL file {path} not found; put the file there (see `python -m tasks info`)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing key(s) {', '.join(missing)}; not a D4RL v2 dataset file "
                                   f"(without 'timeouts' its trajectories cannot be told apart)")
            obs = f["observations"][()]
            action = f["actions"][()]
            reward = f["rewards"][()]
            terminal = f["terminals"][()].astype(bool)
            timeout = f["timeouts"][()].astype(bool)
            next_obs = f["next_observations"][()] if "next_observations" in f else None
    except DatasetError:
        raise
    except Exception as exc:  # truncated / not HDF5 / unreadable
        raise DatasetError(f"{path}: could not be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           f"the file is corrupt or truncated, download it again") from exc
    n = len(reward)
    if n == 0:
        raise DatasetError(f"{path}: has 0 rows; the file is empty or was cut short, download it again")
    for key, arr in (("observations", obs), ("actions", action), ("terminals", terminal), ("timeouts", timeout)):
        if len(arr) != n:
            raise DatasetError(f"{path}: '{key}' has {len(arr)} rows but 'rewards' has {n}; the file is truncated or corrupt")
    if obs_fn is not None:
        obs = obs_fn(obs)
        next_obs = obs_fn(next_obs) if next_obs is not None else None
    if next_obs is None:
        keep = ~timeout
        keep[-1] = terminal[-1]  # the last row has no successor; a terminal one needs none
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        cut = np.zeros(n, bool)  # a kept step whose successor was dropped ends its trajectory
        cut[:-1] = ~keep[1:] & ~terminal[:-1]
        idx = np.flatnonzero(keep)
        return Dataset(obs[idx].astype(np.float32), action[idx].astype(np.float32),
                       reward[idx].astype(np.float32), next_obs[idx].astype(np.float32),
                       terminal[idx], cut[idx])
    return Dataset(obs.astype(np.float32), action.astype(np.float32), reward.astype(np.float32),
                   next_obs.astype(np.float32), terminal, timeout & ~terminal)


def load_npy_paths(path: Path) -> list[dict]:
    """AWAC / rlkit path files: a pickled numpy array (or list) of dicts, one per trajectory, with
    'observations' (T, obs_dim), 'actions' (T, act_dim), 'rewards' (T,), optionally
    'next_observations', 'terminals' and 'env_infos' (a list of dicts or a dict of arrays, with
    'goal_achieved')."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"demo file {path} not found; put the AWAC hand demos there (see `python -m tasks info`)")
    try:
        paths = list(np.load(path, allow_pickle=True))
    except Exception as exc:
        raise DatasetError(f"{path}: could not be read ({type(exc).__name__}: {_first_line(exc)}); "
                           f"the file is corrupt or truncated, download it again") from exc
    for k, p in enumerate(paths):
        if not isinstance(p, dict):
            raise DatasetError(f"{path}: trajectory {k} is a {type(p).__name__}, not a dict; not an AWAC path file")
        missing = [key for key in ("observations", "actions") if key not in p]
        if missing:
            raise DatasetError(f"{path}: trajectory {k} has no {', '.join(map(repr, missing))}; not an AWAC path file")
    if not paths:
        raise DatasetError(f"{path}: contains no trajectories")
    return paths


def goal_achieved(p: dict) -> np.ndarray:
    """Per-step success of an AWAC path: env_infos/goal_achieved, else reward == 0 (binary files)."""
    infos = p.get("env_infos")
    T = len(p["actions"])
    if isinstance(infos, dict) and "goal_achieved" in infos:
        return np.asarray(infos["goal_achieved"], bool)[:T]
    if isinstance(infos, (list, tuple, np.ndarray)) and len(infos) and isinstance(infos[0], dict) and "goal_achieved" in infos[0]:
        return np.array([bool(i["goal_achieved"]) for i in infos])[:T]
    return np.asarray(p["rewards"]).reshape(-1)[:T] == 0


def binary_trajectories(trajs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> Dataset:
    """Cal-QL's Adroit-binary rule on (obs, action, next_obs, success) trajectories: reward =
    success - 1; each trajectory is kept only up to its last success, trajectories that never
    succeed are dropped; terminal = (reward == 0). Actions as stored (`Task.load_dataset` clips
    them to +-0.99999, the same rule as every source's)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminal", "timeout")}
    for obs, action, next_obs, success in trajs:
        hits = np.flatnonzero(success)
        if len(hits) == 0:
            continue
        T = hits[-1] + 1
        reward = success[:T].astype(np.float32) - 1.0
        timeout = np.zeros(T, bool)  # every kept trajectory ends in a success: a terminal
        for k, v in zip(parts, (obs[:T], action[:T], reward, next_obs[:T], reward == 0, timeout)):
            parts[k].append(np.asarray(v))
    if not parts["obs"]:
        raise DatasetError("no trajectory in the data ever succeeds; the binary Adroit rule keeps none")
    return Dataset(**{k: np.concatenate(v).astype(np.float32 if k not in ("terminal", "timeout") else bool)
                      for k, v in parts.items()})


# -- explicit downloads --------------------------------------------------------------------------
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_minari(dataset_id: str) -> None:
    """Download one Minari dataset into MINARI_DATASETS_PATH; fails within seconds offline."""
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    manual = (f"download it on a machine with network (`minari download {dataset_id}`) and copy "
              f"{dataset_id}/ into {minari_root()}")
    host = "huggingface.co" if remote.startswith("hf://") else "storage.googleapis.com"
    if not _reachable(host):
        raise DatasetError(f"cannot reach {host} to download '{dataset_id}'; {manual}")
    try:
        import minari

        minari.download_dataset(dataset_id)
    except Exception as exc:
        raise DatasetError(f"downloading '{dataset_id}' failed ({type(exc).__name__}: {exc}); {manual}") from exc
