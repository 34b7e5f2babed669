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


def closing_table(jobs, runs_dir: Path, errors: dict[str, str]) -> str:
    """Per (algorithm, task): offline -> final score, the lowest early fine-tuning score and the
    unlearning dip (offline score - early min, at least 0), mean +- std over seeds."""
    import numpy as np

    from harness.jobs import run_dir
    from harness.store import read_summary

    groups: dict[tuple[str, str], list[dict]] = {}
    for job in jobs:
        s = read_summary(run_dir(runs_dir, job)) or {"status": "missing"}
        groups.setdefault((job.algorithm.name, job.task.name), []).append(s)

    def stat(values):
        v = [x for x in values if x is not None]
        return f"{np.mean(v):6.1f} ± {np.std(v):4.1f}" if v else "   n/a      "

    def dip(r):
        if r.get("offline_score") is None or r.get("early_min_score") is None:
            return None
        return max(0.0, r["offline_score"] - r["early_min_score"])

    header = (f"{'algorithm':<10} {'task':<28} {'offline':>13} -> {'final':<13} {'early min':>13} "
              f"{'dip':>13}  runs")
    lines = [header, "-" * len(header)]
    for (algo, task), runs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):  # methods side by side
        done = [r for r in runs if r.get("status") == "done"]
        lines.append(f"{algo:<10} {task:<28} {stat(r['offline_score'] for r in done):>13} -> "
                     f"{stat(r['final_score'] for r in done):<13} {stat(r.get('early_min_score') for r in done):>13} "
                     f"{stat(dip(r) for r in done):>13}  {len(done)}/{len(runs)} done")
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
            print(describe(study, runs_dir))
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
        write_study(study, runs_dir)  # before the first run
        write_manifest(jobs, runs_dir)
    errors = launch(jobs, runs_dir, cfg)
    if cfg.launcher.name == "slurm" and not cfg.launcher.wait:
        print(f"follow with: python -m harness.status {runs_dir}")
        return 0
    print(closing_table(jobs, runs_dir, errors))
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
                print(f"report: {build_report(suite_dir)}")
            except OSError as exc:  # e.g. a full disk: the results are whole, only the report is missing
                print(f"report not written ({exc.strerror or exc}: {exc.filename}); free space and run "
                      f"python -m reports {suite_dir}, or write it elsewhere with --out DIR", file=sys.stderr)
    print(f"results: {suite_dir.resolve()}")
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
