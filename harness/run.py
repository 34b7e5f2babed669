"""The front door: `python -m harness.run [suite=...] [algorithm=...] [task=...] [seed=...]`.

Hydra composes one config; the harness expands it into jobs, validates all of them, runs the
unfinished ones through the chosen launcher and prints a closing table.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

GROUPS = ("algorithm", "task", "suite", "launcher")


def check_group_choices(argv: list[str]) -> None:
    """One-line errors for unknown group choices, before Hydra prints its long ones."""
    from harness.jobs import CONF_DIR, ConfigError, group_names, package_yamls

    searchpath = any(arg.lstrip("+~").startswith("hydra.searchpath") for arg in argv)
    for arg in argv:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key in GROUPS and value and value != "null":
            names = group_names(key)
            for choice in value.split(","):  # multirun sweeps: algorithm=calql,cql
                if choice not in names:
                    raise ConfigError(f"unknown {key} '{choice}'; choose one of: {', '.join(names)}")
                plugin = package_yamls(key).get(choice)
                if plugin and (CONF_DIR / key / f"{choice}.yaml") != plugin and not searchpath:
                    package = plugin.parents[2].name  # <package>/conf/<group>/<name>.yaml
                    raise ConfigError(f"{key} '{choice}' comes from the installed package '{package}'; add "
                                      f"'hydra.searchpath=[pkg://{package}.conf]' so Hydra finds its yaml")


def run_dips(jobs, runs_dir: Path, window: float | None) -> dict[str, float | None]:
    """Each finished run's unlearning dip (offline score - early min, at least 0), by job id: the
    summary's early minimum, or with a study's dip `window` the same rule on evals.csv."""
    import csv

    from harness.jobs import run_dir
    from harness.store import read_summary
    from scoring import early_min_score

    dips = {}
    for job in jobs:
        s = read_summary(run_dir(runs_dir, job)) or {}
        low = s.get("early_min_score")
        if window is not None and s.get("status") == "done":
            try:
                with open(run_dir(runs_dir, job) / "evals.csv") as f:
                    rows = [r for r in csv.DictReader(f) if r["phase"] == "online"]
                low = early_min_score([float(r["env_steps"]) for r in rows],
                                      [float(r["normalized_score"]) for r in rows], job.protocol.online_steps, window)
            except (OSError, KeyError, ValueError):
                low = None
        off = s.get("offline_score")
        dips[job.job_id] = None if off is None or low is None or low != low else max(0.0, off - low)
    return dips


def mean_ci(values, reps: int = 2000) -> tuple[float, float, float] | None:
    """Mean and 95% percentile-bootstrap interval over seeds (None without values)."""
    import numpy as np

    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return None
    boot = v[np.random.default_rng(0).integers(0, v.size, (reps, v.size))].mean(axis=1)
    return float(v.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def closing_table(jobs, runs_dir: Path, errors: dict[str, str], study: dict | None = None) -> str:
    """Per (algorithm, task): offline -> final score, the lowest early fine-tuning score and the
    unlearning dip (offline score - early min, at least 0), mean +- std over seeds, the dip's
    mean with its 95% bootstrap interval; then one paragraph saying what was compared, what the
    dip is and what this run found. A study's dip window (`study.dip_window`) replaces the
    summaries' default one."""
    import numpy as np

    from harness.jobs import run_dir
    from harness.store import read_summary
    from scoring import DEFAULT_DIP_WINDOW

    window = study["dip_window"] if study else None
    dips = run_dips(jobs, runs_dir, window)
    groups: dict[tuple[str, str], list[dict]] = {}
    for job in jobs:
        s = read_summary(run_dir(runs_dir, job)) or {"status": "missing"}
        groups.setdefault((job.algorithm.name, job.task.name), []).append({**s, "dip": dips[job.job_id]})

    def stat(values):
        v = [x for x in values if x is not None]
        return f"{np.mean(v):6.1f} ± {np.std(v):4.1f}" if v else "   n/a      "

    def interval(values):
        m = mean_ci(values)
        return f"{m[0]:5.1f} [{m[1]:4.1f}, {m[2]:4.1f}]" if m else "n/a"

    header = (f"{'algorithm':<10} {'task':<28} {'offline':>13} -> {'final':<13} {'early min':>13} "
              f"{'dip':>13} {'dip [95% CI]':>20}  runs")
    lines = [header, "-" * len(header)]
    found = []
    for (algo, task), runs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):  # methods side by side
        done = [r for r in runs if r.get("status") == "done"]
        lines.append(f"{algo:<10} {task:<28} {stat(r['offline_score'] for r in done):>13} -> "
                     f"{stat(r['final_score'] for r in done):<13} {stat(r.get('early_min_score') for r in done):>13} "
                     f"{stat(r['dip'] for r in done):>13} {interval(r['dip'] for r in done):>20}  "
                     f"{len(done)}/{len(runs)} done")
        if mean_ci(r["dip"] for r in done):
            found.append(f"{algo}'s mean dip {interval(r['dip'] for r in done).strip()}" +
                         (f" on {task}" if len({t for _, t in groups}) > 1 else ""))
    p = jobs[0].protocol
    same = all(j.protocol == p for j in jobs)
    tasks = sorted({j.task.name for j in jobs})
    methods = list(dict.fromkeys(j.algorithm.name for j in jobs))
    budget = (f" ({p.offline_steps:,} updates, then {p.online_steps:,} env steps)" if same else "")
    horizon = f"the first {(window or DEFAULT_DIP_WINDOW) * p.online_steps:,.0f} env steps" if same else \
        f"the first {window or DEFAULT_DIP_WINDOW:.0%} of the online budget"
    lines += ["", f"Compared: {' and '.join(methods)}, pre-trained offline and then fine-tuned online{budget} on "
              f"{', '.join(tasks)}. The dip is how far a method's score (0-100) falls below its offline score "
              f"in {horizon} of fine-tuning. This run: "
              + ("; ".join(found) if found else "no finished run") + " (95% bootstrap CIs over seeds)."]
    return "\n".join(lines)


def job_cost(job, runs_dir: Path, cost) -> tuple[int, int, float, str]:
    """(gradient updates, env steps incl. evaluation, estimated GPU-hours, where the rate came from)."""
    import tasks
    from harness.store import finished_summary, runs_of

    p = job.protocol
    updates = p.offline_steps + (p.online_steps - p.warmup_steps) * p.utd
    horizon = tasks.get(job.task.name).horizon
    n_evals = -(-p.offline_steps // p.eval_every_offline) + -(-p.online_steps // p.eval_every)
    env_steps = p.online_steps + max(n_evals, 1) * p.eval_episodes * horizon  # evaluation: at most
    algo, task = job.algorithm.name, job.task.name
    measured = [s["updates_per_s"] for d in runs_of(runs_dir, task, algo)
                if (s := finished_summary(d)) and s.get("updates_per_s")
                and s.get("wall_time_s", 0) > 60]  # whole-run rates (evaluation and env included)
    if measured:
        rate = sum(measured) / len(measured)
        return updates, env_steps, updates / rate / 3600, f"measured ({len(measured)} runs in runs_dir, {rate:.0f}/s)"
    rate = (cost.get("gpu_updates_per_s") or {}).get(algo, cost.default_updates_per_s)
    hours = (updates / rate + env_steps / cost.env_steps_per_s) / 3600
    return updates, env_steps, hours, f"config cost table ({rate}/s)"


def job_table(jobs, runs_dir: Path | None = None, cost=None) -> str:
    lines = [f"{'algorithm':<10} {'task':<28} {'seed':>4} {'offline steps':>14} {'online steps':>13} "
             f"{'updates':>10} {'env steps':>11} {'GPU-h':>7}  job id        rate from"]
    total = [0, 0, 0.0]
    for j in jobs:
        p = j.protocol
        u, e, h, src = job_cost(j, runs_dir, cost) if cost is not None else (0, 0, 0.0, "")
        total[0] += u; total[1] += e; total[2] += h
        lines.append(f"{j.algorithm.name:<10} {j.task.name:<28} {j.seed:>4} "
                     f"{p.offline_steps:>14,} {p.online_steps:>13,} {u:>10,} {e:>11,} {h:>7.2f}  {j.job_id}  {src}")
    lines.append(f"{len(jobs)} jobs, {sum(j.protocol.offline_steps for j in jobs):,} offline updates, "
                 f"{sum(j.protocol.online_steps for j in jobs):,} online env steps; in all {total[0]:,} "
                 f"gradient updates, <= {total[1]:,} env steps (evaluation included), ~{total[2]:.2f} GPU-hours")
    return "\n".join(lines)


def check_device(device: str) -> None:
    """`device=cuda` (or cuda:N) on a machine whose torch sees no such GPU is refused before any work."""
    if not device.startswith("cuda"):
        return
    import torch

    from harness.jobs import ConfigError

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= n:
        found = f"{n} CUDA device(s)" if n else f"no CUDA device (torch {torch.__version__}" + \
            (", built without CUDA)" if torch.version.cuda is None else ")")
        raise ConfigError(f"device={device} but torch finds {found}; use device=cpu or device=auto")


def main_with_config(cfg, overrides: list[str] = ()) -> int:
    """Everything after Hydra: `overrides` are the command line's (they win over every yaml)."""
    from harness.jobs import ConfigError, expand
    from harness.launch import check_run_dirs, check_slurm, is_done, launch
    from harness.store import unwritable, write_manifest
    from harness.study import check_study, describe, study_design, write_study

    jobs = expand(cfg, overrides)
    runs_dir = Path(cfg.runs_dir)
    study = study_design(cfg, overrides, jobs)  # None: the suite registers no hypotheses
    if cfg.dry_run:
        print(job_table(jobs, runs_dir, cfg.cost))
        if study:
            print(describe(study, jobs, runs_dir))
        return 0
    if cfg.launcher.name == "local":  # a SLURM login node need not have the GPUs its jobs get
        check_device(cfg.device)
    todo = [j for j in jobs if not is_done(j, runs_dir)]
    read_only = unwritable(runs_dir)  # None when runs_dir can be written
    if todo and read_only:
        raise ConfigError(read_only)
    check_study(study, jobs, runs_dir)  # before any work: no runs of a changed design in a registered study,
    check_run_dirs(jobs, runs_dir)  # and a changed config never overwrites old runs
    if todo:  # a finished study needs neither data, trackers nor a cluster
        from harness.trackers import check_trackers

        check_trackers(jobs[0].logger)  # one line for a missing tensorboard / wandb, not one per job
        if cfg.launcher.name == "slurm":
            check_slurm(cfg.launcher)
        from harness.preflight import preflight

        preflight(todo)  # every dataset and environment before any job
        for task_name in dict.fromkeys(j.task.name for j in todo):
            import tasks

            tasks.get(task_name).prepare()
    print(f"o2o-bench: {len(jobs)} jobs -> {runs_dir.resolve()}", flush=True)
    if not read_only:
        write_study(study, jobs, runs_dir)  # before the first run
        write_manifest(jobs, runs_dir)
    errors = launch(jobs, runs_dir, cfg)
    if cfg.launcher.name == "slurm" and not cfg.launcher.wait:
        print(f"follow with: python -m harness.status {runs_dir}")
        return 0
    print(closing_table(jobs, runs_dir, errors, study))
    for job_id, err in errors.items():
        print(f"FAILED {job_id}: {err.splitlines()[0]}", file=sys.stderr)
    suite_dir = runs_dir / jobs[0].suite
    if cfg.report and read_only:
        print(f"report not rebuilt: {read_only}; write it elsewhere with "
              f"python -m reports {suite_dir} --out DIR")
    elif cfg.report:
        try:
            from reports import build_report
        except ImportError:
            build_report = None
        if build_report is not None:
            try:
                index = build_report(suite_dir)
                verdicts = index.parent / "verdicts.txt"  # the registered hypotheses' verdicts, if any
                print(verdicts.read_text() if verdicts.exists() else "", end="")
                print(f"report: {index}")
            except OSError as exc:  # e.g. a full disk: the results are whole, only the report is missing
                print(f"report not written ({exc.strerror or exc}: {exc.filename}); free space and run "
                      f"python -m reports {suite_dir}, or write it elsewhere with --out DIR", file=sys.stderr)
    print(f"results: {suite_dir.resolve()}; the full unlearning-dip study: docs/dip-study.md (suite=dip)")
    from harness.jobs import run_dir
    from harness.trackers import wandb_offline_runs

    if wandb_offline_runs(run_dir(runs_dir, j) for j in jobs):
        print(f"W&B offline runs, to upload: wandb sync {suite_dir}/*/*/seed*/wandb/offline-run-*")
    return 1 if errors else 0


def check_option_names(argv: list[str]) -> None:
    """Misspelled options (`protcol.utd=2`, `launcher.workerz=2`) as one line naming the valid ones."""
    from omegaconf import OmegaConf

    from harness.jobs import ConfigError

    conf = Path(__file__).parent / "conf"
    base = OmegaConf.load(conf / "config.yaml")
    default = next(d["launcher"] for d in base.defaults if not isinstance(d, str) and "launcher" in d)
    launcher = next((a.partition("=")[2] for a in argv if a.startswith("launcher=")), default)
    sections = {"protocol": set(base.protocol)}
    if (conf / "launcher" / f"{launcher}.yaml").exists():
        sections["launcher"] = set(OmegaConf.load(conf / "launcher" / f"{launcher}.yaml"))
    known = (set(base) - {"defaults"}) | set(GROUPS) | {"hydra"}
    for arg in argv:
        if "=" not in arg or arg.startswith(("+", "~", "-")):
            continue  # additions (+key) are checked against the schema after composition
        key = arg.partition("=")[0]
        top, _, rest = key.partition(".")
        if top not in known:
            raise ConfigError(f"unknown option '{key}'; valid: {', '.join(sorted(known - {'hydra'}))}")
        if rest and top in sections and rest.partition(".")[0] not in sections[top]:
            raise ConfigError(f"unknown option '{key}'; valid: {', '.join(f'{top}.{k}' for k in sorted(sections[top]))}")


def check_command_line(argv: list[str]) -> None:
    """One-line errors Hydra would give as long ones: unknown group choices, and options of an
    algorithm or task when none is chosen."""
    from harness.jobs import ConfigError

    check_group_choices(argv)
    check_option_names(argv)
    chosen = {a.partition("=")[0].lstrip("+") for a in argv if "=" in a}
    for arg in argv:
        key = arg.partition("=")[0].lstrip("+~")
        group = key.partition(".")[0]
        if "." in key and group in ("algorithm", "task") and group not in chosen:
            hint = (f"suite.algorithm_overrides.{key.partition('.')[2]}=... for every method of the suite"
                    if group == "algorithm" else f"protocol.{key.rpartition('.')[2]}=... for every task")
            raise ConfigError(f"{key} needs {group}=NAME on the command line (the {group} it changes); "
                              f"or use {hint}")


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    # offscreen rendering for image tasks; mujoco reads this once, when it is first imported, and
    # the preflight and the workers (which inherit it) import it for every task of the suite
    os.environ.setdefault("MUJOCO_GL", "egl")
    from harness.jobs import ConfigError
    from tasks import DatasetError

    try:
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    from harness.jobs import hydra_overrides

    sys.argv[1:] = hydra_overrides(sys.argv[1:])

    import hydra
    from hydra.core.hydra_config import HydraConfig

    status = {"code": 0}

    @hydra.main(config_path="conf", config_name="config", version_base="1.3")
    def _app(cfg) -> None:
        try:
            code = main_with_config(cfg, list(HydraConfig.get().overrides.task))
        except (ConfigError, DatasetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        status["code"] = max(status["code"], code)  # a multirun fails if any of its points failed

    _app()
    sys.exit(status["code"])


if __name__ == "__main__":
    main()
