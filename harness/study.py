"""A suite's registered study (`study:` block, schema in scoring/study.py): its design is
recorded in the store (runs_dir/<suite>/study.json, next to jobs.json) before the first run, and
runs of a changed design are refused under the same name. The design and its hash cover the
hypotheses, the dip window, the tasks, the methods, each method's seeds, and per (method, task)
the resolved protocol and method settings (everything a job id covers except the seed)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.job import protocol_dict
from harness.schema import ConfigError
from harness.store import atomic_write, finished_summary
from scoring.study import STUDY_FILE, StudyError, design_hash, parse_study

PER_SEED = ("suite", "seed", "job_id", "device", "logger", "seed_group")  # not part of a (method, task)'s design


def study_design(cfg: DictConfig, jobs) -> dict | None:
    """The design of the suite's `study:` block (None without one). A command narrowed to some
    method, task or seed is one part of the suite's design: the design is the whole suite's."""
    suite = cfg.suite
    block = suite.get("study")
    if block is None:
        return None
    try:
        study = parse_study(OmegaConf.to_container(block, resolve=True) if isinstance(block, DictConfig) else block,
                            list(suite.algorithms))
    except StudyError as exc:
        raise ConfigError(str(exc)) from None
    narrowed = bool(cfg.get("algorithm") or cfg.get("task") or cfg.get("seed") is not None)
    if narrowed:  # the whole suite, with the front door's protocol.* (the chosen method's own values do not apply)
        from harness.config import expand

        full = cfg.copy()
        with open_dict(full):
            full.algorithm, full.task, full.seed = None, None, None
        jobs = expand(full)
    design = {"name": suite.name, "hypotheses": [h.to_dict() for h in study["hypotheses"]],
              "dip_window": study["dip_window"], "tasks": list(dict.fromkeys(j.task.name for j in jobs)),
              "methods": list(dict.fromkeys(j.algorithm.name for j in jobs)), "seeds": {}, "protocol": {}, "config": {}}
    for j in jobs:
        key = f"{j.algorithm.name}/{j.task.name}"
        design["seeds"].setdefault(j.algorithm.name, [])
        if j.seed not in design["seeds"][j.algorithm.name]:
            design["seeds"][j.algorithm.name].append(j.seed)
        design["protocol"][key] = protocol_dict(j.protocol)
        design["config"][key] = {k: v for k, v in j.to_dict().items() if k not in (*PER_SEED, "protocol")}
    design["hash"] = design_hash(design)
    design["_jobs"] = {(j.algorithm.name, j.task.name, j.seed) for j in jobs}  # not written
    design["_narrowed"] = narrowed
    return design


def outside(design: dict | None, jobs) -> bool:
    """A command narrowed to runs that the design does not hold (another task or seed): they are
    not part of the study, which they leave as it is."""
    return bool(design and design["_narrowed"]
                and not any((j.algorithm.name, j.task.name, j.seed) in design["_jobs"] for j in jobs))


def study_path(runs_dir: Path, suite: str) -> Path:
    return Path(runs_dir) / suite / STUDY_FILE


def registered(runs_dir: Path, suite: str) -> dict | None:
    """The design recorded in the store (None: none)."""
    try:
        return json.loads(study_path(runs_dir, suite).read_text())
    except (OSError, ValueError):
        return None


def _run_dirs(runs_dir: Path, suite: str) -> list[Path]:
    return sorted(p for p in (Path(runs_dir) / suite).glob("*/*/seed*") if p.is_dir())


def _changed(old: dict, new: dict) -> str:
    keys = [k for k in ("hypotheses", "dip_window", "tasks", "methods", "seeds", "protocol", "config")
            if old.get(k) != new.get(k)]
    return ", ".join(keys) or "the design"


def check_study(design: dict | None, jobs, runs_dir: Path) -> None:
    """Before any work: refuse runs of another design than the one registered in the store
    under this suite's name (once the store holds a run directory of it)."""
    suite = jobs[0].suite
    old = registered(runs_dir, suite)
    if (old is None and design is None) or outside(design, jobs):
        return
    ours = design["hash"] if design else None
    if old is not None and old.get("hash") != ours and _run_dirs(runs_dir, suite):
        what = f"design {ours} (changed: {_changed(old, design)})" if design else "no study: block"
        raise ConfigError(f"{study_path(runs_dir, suite)} registers study '{suite}' as design {old.get('hash')}, but "
                          f"this config has {what}; run it under another name (suite.name=...) or into another runs_dir=...")


def write_study(design: dict | None, jobs, runs_dir: Path) -> None:
    """Record the design before the first run (kept as it is once written: check_study refused a
    changed one). A store that already held finished runs of the design says how many."""
    if design is None or outside(design, jobs):
        return
    path = study_path(runs_dir, design["name"])
    old = registered(runs_dir, design["name"])
    if old is not None and old.get("hash") == design["hash"]:
        return
    done = sum(finished_summary(d) is not None for d in _run_dirs(runs_dir, design["name"])
               if (d.parent.name, d.parents[1].name, int(d.name[4:]) if d.name[4:].isdigit() else -1) in design["_jobs"])
    record = {k: v for k, v in design.items() if not k.startswith("_")}
    record["registered"] = {"finished_runs_before": done}
    atomic_write(path, json.dumps(record, indent=1) + "\n")


def describe(design: dict, jobs, runs_dir: Path) -> str:
    """The dry run's lines: the study's hash, whether the store holds it, and its hypotheses."""
    if outside(design, jobs):
        return (f"study '{design['name']}' (design {design['hash']}): these runs are not among its registered "
                f"runs; they are outside the study and its verdicts")
    old = registered(runs_dir, design["name"])
    if old is None:
        where = f"not yet registered in {study_path(runs_dir, design['name'])}"
    elif old.get("hash") == design["hash"]:
        where = f"registered in {study_path(runs_dir, design['name'])}"
    else:
        where = (f"DIFFERS from design {old.get('hash')} registered in {study_path(runs_dir, design['name'])} "
                 f"(changed: {_changed(old, design)})")
    from scoring.study import hypotheses_of

    lines = [f"study '{design['name']}': design {design['hash']}, {where}; "
             f"{sum(map(len, design['seeds'].values())) * len(design['tasks'])} runs; hypotheses:"]
    lines += [f"  {h.name}: {h.claim()}" for h in hypotheses_of(design)]
    return "\n".join(lines)
