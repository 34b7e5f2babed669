"""Read a results store (runs/<suite>/<task>/<algorithm>/seed<k>/) into tidy pandas frames.

Reads only the files the harness writes; never imports torch, the harness, tasks or algorithms.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

RUN_KEYS = ["suite", "task", "algorithm", "seed"]
CALIBRATION = ["policy_value", "mc_return"]  # train.csv: batch means of Q(s, pi(s)) and of the MC return
END_OF_PRETRAINING = 0.2  # calibration at the end of pre-training: its last 20% of updates
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class StoreError(Exception):
    """The store cannot be reported on (one line, shown to the user as is)."""


@dataclass
class Store:
    """`runs`: one row per run (or hole in the grid) with `included`, `reason`, its
    episodes.csv summary and its calibration at the end of pre-training; `evals`: tidy eval
    rows of every run that has them (RUN_KEYS); `train`: tidy train.csv calibration rows."""
    root: Path
    runs: pd.DataFrame
    evals: pd.DataFrame
    train: pd.DataFrame = None


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories under a store root (suite/task/alg/seedK) or a suite dir (task/alg/seedK)."""
    dirs = [p for p in root.glob("*/*/*/seed*") if p.is_dir()]
    if not dirs:
        dirs = [p for p in root.glob("*/*/seed*") if p.is_dir()]
    return sorted(dirs)


def _read_csv(path: Path, unreadable: list[str]) -> pd.DataFrame | None:
    """The CSV (empty frame for an empty file, None if absent); a damaged one is added to `unreadable`."""
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        unreadable.append(f"{path} ({type(exc).__name__})")
        return None


def _read_run(run_dir: Path) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None]:
    """One run's identity/status row (with its episodes summary and calibration), its evals and
    its calibration rows from train.csv (None if absent)."""
    seed_txt = run_dir.name[len("seed"):]
    row = {"suite": run_dir.parents[2].name, "task": run_dir.parents[1].name,
           "algorithm": run_dir.parent.name, "seed": int(seed_txt) if seed_txt.isdigit() else -1,
           "path": str(run_dir), "domain": "unknown", "status": "unknown", "error": "",
           "offline_steps": np.nan, "online_steps": np.nan, "eval_every": np.nan, "eval_episodes": np.nan,
           "chunk": np.nan,
           "wall_time_s": np.nan, "updates_per_s": np.nan, "goal": None,
           "episodes": 0, "episode_success": np.nan, "policy_value_end": np.nan, "mc_return_end": np.nan,
           "dataset_sha256": "", "dataset_source": "", "dataset_generator": ""}
    config, unreadable = {}, []
    if (run_dir / "config.yaml").exists():
        try:
            config = yaml.load((run_dir / "config.yaml").read_text(), Loader=_YAML_LOADER) or {}
            if not isinstance(config, dict):
                raise ValueError("not a mapping")
        except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
            config, unreadable = {}, [f"{run_dir / 'config.yaml'} ({type(exc).__name__})"]
        task = config.get("task") or {}
        protocol = config.get("protocol") or {}
        row["domain"] = task.get("domain", row["domain"])
        row["goal"] = task.get("goal")
        for key in ("offline_steps", "online_steps", "eval_every", "eval_episodes"):
            row[key] = protocol.get(key, np.nan)
        row["chunk"] = _chunk(config)
        data = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}  # recorded at the run's start
        row["dataset_sha256"] = str(data.get("sha256") or "")
        row["dataset_source"] = str(data.get("path") or data.get("where") or "")
        row["dataset_generator"] = " ".join(str(data[k]) for k in ("generator", "version") if data.get(k))
    summary = None
    if (run_dir / "summary.json").exists():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
            if not isinstance(summary, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:  # truncated or damaged: listed, the rest goes on
            summary, unreadable = None, unreadable + [f"{run_dir / 'summary.json'} ({type(exc).__name__})"]
    if summary is not None:
        row["status"] = summary.get("status", "unknown")
        row["error"] = str(summary.get("error") or "")
        row["domain"] = summary.get("domain") or row["domain"]
        if row["goal"] is None:  # the task's own fact, written by the runner
            row["goal"] = summary.get("goal")
        for key in ("wall_time_s", "updates_per_s"):
            row[key] = summary.get(key, np.nan)
    evals, episodes = (_read_csv(run_dir / f"{name}.csv", unreadable) for name in ("evals", "episodes"))
    if episodes is not None and "success" in episodes:
        row["episodes"] = len(episodes)
        row["episode_success"] = float(episodes["success"].astype(float).mean()) if len(episodes) else np.nan
    calibration = _calibration(_read_csv(run_dir / "train.csv", unreadable), row)
    if unreadable:
        row["status"] = "unreadable"
        row["included"], row["reason"] = False, "unreadable: " + ", ".join(unreadable)
        return row, None, None
    row["included"], row["reason"] = _inclusion(summary, row, config, evals)
    return row, evals, calibration


def _chunk(config: dict) -> int:
    """Actions per policy query: the method's `chunk` hyperparameter (1, single actions, when
    the method has none)."""
    hparams = (config.get("algorithm") or {}).get("hparams") or {}
    chunk = hparams.get("chunk", 1)
    return int(chunk) if isinstance(chunk, (int, float)) and not isinstance(chunk, bool) else 1


def _calibration(train: pd.DataFrame | None, row: dict) -> pd.DataFrame | None:
    """The train.csv calibration columns; sets the run's means over the last END_OF_PRETRAINING
    of its offline updates (policy_value_end, mc_return_end)."""
    if train is None or not set(CALIBRATION) <= set(train.columns):
        return None
    rows = train[["phase", "step", "env_steps", *CALIBRATION]]
    offline = rows[rows["phase"] == "offline"]
    if len(offline):
        budget = row["offline_steps"] if not pd.isna(row["offline_steps"]) else offline["step"].max()
        end = offline[offline["step"] > (1 - END_OF_PRETRAINING) * budget]
        end = end if len(end) else offline.tail(1)
        row["policy_value_end"], row["mc_return_end"] = (float(end[c].mean()) for c in CALIBRATION)
    return rows


def _inclusion(summary, row, config, evals) -> tuple[bool, str]:
    """Whether a run enters the metrics, and if not, why (shown in the report)."""
    if summary is None:
        return False, "no summary.json (not started, or died before writing it)"
    if row["status"] == "failed":
        return False, "failed: " + (row["error"].splitlines()[-1] if row["error"] else "no error message")
    if row["status"] == "running":
        return False, "still running"
    if row["status"] != "done":
        return False, f"unknown status {row['status']!r}"
    if not config:
        return False, "done but config.yaml is missing"
    if evals is None or evals.empty:
        return False, "done but evals.csv is missing or empty"
    if not (evals["phase"] == "online").any():
        return False, "done but evals.csv has no online evaluations"
    return True, ""


def _expected(root: Path, suite: str, group: pd.DataFrame) -> set[tuple]:
    """(task, algorithm, seed) a suite was asked to run: its jobs.json (written by the front door,
    so per-method seed lists count), else every combination of the ones present."""
    for manifest in (root / suite / "jobs.json", root / "jobs.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if data.get("suite") == suite:
            return {(e["task"], e["algorithm"], e["seed"]) for e in data["jobs"]}
    return set(itertools.product(group["task"].unique(), group["algorithm"].unique(), group["seed"].unique()))


def _grid_holes(runs: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Rows for the (task, algorithm, seed) runs a suite expects but that have no run directory."""
    holes = []
    for suite, group in runs.groupby("suite"):
        have = set(zip(group["task"], group["algorithm"], group["seed"]))
        domains = dict(zip(group["task"], group["domain"]))
        for task, alg, seed in sorted(_expected(root, suite, group) - have):
            holes.append({"suite": suite, "task": task, "algorithm": alg, "seed": seed,
                          "domain": domains.get(task, "unknown"), "status": "missing",
                          "included": False, "path": "",
                          "reason": "missing: no run directory (the suite expects this task, "
                                    "algorithm and seed)"})
    return pd.DataFrame(holes)


def _tidy(frames: dict, runs: pd.DataFrame) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=RUN_KEYS)
    out = pd.concat(frames, names=RUN_KEYS + ["row"]).reset_index(RUN_KEYS).reset_index(drop=True)
    extra = runs.set_index(RUN_KEYS)[["domain", "status", "included"]]
    return out.join(extra, on=RUN_KEYS)


def load_store(root) -> Store:
    """Read every run under `root`; raise StoreError if there is nothing to report on."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"runs directory {root} does not exist; run python -m harness.run first")
    run_dirs = find_run_dirs(root)
    if not run_dirs:
        raise StoreError(f"no runs found under {root}; run python -m harness.run first")
    rows, evals, train = [], {}, {}
    for run_dir in run_dirs:
        row, ev, calibration = _read_run(run_dir)
        rows.append(row)
        if ev is not None and not ev.empty:
            evals[tuple(row[k] for k in RUN_KEYS)] = ev
        if calibration is not None and not calibration.empty:
            train[tuple(row[k] for k in RUN_KEYS)] = calibration
    runs = pd.DataFrame(rows)
    holes = _grid_holes(runs, root)
    if not holes.empty:
        runs = pd.concat([runs, holes], ignore_index=True)
    runs = runs.sort_values(RUN_KEYS).reset_index(drop=True)
    return Store(root, runs, _tidy(evals, runs), _tidy(train, runs))
