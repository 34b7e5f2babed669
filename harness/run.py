"""The front door: `python -m harness.run [suite=...] [algorithm=...] [task=...] [seed=...]`.

Hydra composes one config; the harness expands it into jobs, validates all of them, runs the
unfinished ones through the chosen launcher and prints a closing table.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def run_dips(jobs, runs_dir: Path, window: float | None) -> dict[str, tuple[float | None, float | None]]:
    """Each finished run's early minimum and unlearning dip (offline score - early min, at least 0),
    by job id: the summary's early minimum, or with a study's dip `window` the same rule on evals.csv."""
    import csv

    from harness.store import read_summary, run_dir
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
        low = None if low is None or low != low else low
        dips[job.job_id] = (low, None if off is None or low is None else max(0.0, off - low))
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

    from harness.store import read_summary, run_dir
    from scoring import DEFAULT_DIP_WINDOW

    window = study["dip_window"] if study else None
    dips = run_dips(jobs, runs_dir, window)
    groups: dict[tuple[str, str], list[dict]] = {}
    for job in jobs:
        s = read_summary(run_dir(runs_dir, job)) or {"status": "missing"}
        low, dip = dips[job.job_id]
        groups.setdefault((job.algorithm.name, job.task.name), []).append({**s, "early_min_score": low, "dip": dip})

    def stat(values):
        v = [x for x in values if x is not None]
        return f"{np.mean(v):6.1f} ± {np.std(v):4.1f}" if v else "   n/a      "

    def interval(values):
        m = mean_ci(values)
        return f"{m[0]:5.1f} [{m[1]:4.1f}, {m[2]:4.1f}]" if m else "n/a"

    header = (f"{'algorithm':<10} {'task':<28} {'offline':>13} -> {'final':<13} {'early min':>13} "
              f"{'dip':>13} {'dip [95% CI]':>20}  runs")
    lines = [header, "-" * len(header)]
    found, any_done = [], False
    offline_only = all(j.protocol.online_steps == 0 for j in jobs)  # no fine-tuning: no dip to report
    what, key = ("offline score", "offline_score") if offline_only else ("dip", "dip")
    for (algo, task), runs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):  # methods side by side
        done = [r for r in runs if r.get("status") == "done"]
        any_done = any_done or bool(done)
        lines.append(f"{algo:<10} {task:<28} {stat(r['offline_score'] for r in done):>13} -> "
                     f"{stat(r['final_score'] for r in done):<13} {stat(r.get('early_min_score') for r in done):>13} "
                     f"{stat(r['dip'] for r in done):>13} {interval(r['dip'] for r in done):>20}  "
                     f"{len(done)}/{len(runs)} done")
        if (m := mean_ci(r[key] for r in done)) is not None:
            found.append(f"{algo}'s mean {what} {m[0]:.1f} [{m[1]:.1f}, {m[2]:.1f}]" +
                         (f" on {task}" if len({t for _, t in groups}) > 1 else ""))
    p = jobs[0].protocol
    same = all(j.protocol == p for j in jobs)
    tasks = sorted({j.task.name for j in jobs})
    methods = list(dict.fromkeys(j.algorithm.name for j in jobs))
    budget = ("" if not same else f" ({p.offline_steps:,} updates)" if offline_only else
              f" ({p.offline_steps:,} updates, then {p.online_steps:,} env steps)")
    horizon = f"the first {(window or DEFAULT_DIP_WINDOW) * p.online_steps:,.0f} env steps" if same else \
        f"the first {window or DEFAULT_DIP_WINDOW:.0%} of the online budget"
    outcome = "; ".join(found) if found else ("no score measured" if any_done else "no finished run")
    if offline_only:
        lines += ["", f"Compared: {' and '.join(methods)}, trained offline only{budget} on {', '.join(tasks)}: "
                  f"no fine-tuning, so no dip. This run: {outcome} (95% bootstrap CIs over seeds)."]
        return "\n".join(lines)
    lines += ["", f"Compared: {' and '.join(methods)}, pre-trained offline and then fine-tuned online{budget} on "
              f"{', '.join(tasks)}. The dip is how far a method's score (0-100) falls below its offline score "
              f"in {horizon} of fine-tuning. This run: {outcome} (95% bootstrap CIs over seeds)."]
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
    rate = (cost.gpu_updates_per_s or {}).get(algo, cost.default_updates_per_s)
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

    from harness.schema import ConfigError

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= n:
        found = f"{n} CUDA device(s)" if n else f"no CUDA device (torch {torch.__version__}" + \
            (", built without CUDA)" if torch.version.cuda is None else ")")
        raise ConfigError(f"device={device} but torch finds {found}; use device=cpu or device=auto")


def main_with_config(cfg, cli=None) -> int:
    """Everything after Hydra: the composed config read once into typed objects (`cli`: the
    front door's parsed command line, whose values win over every yaml), then run."""
    from harness.config import read_config

    from harness.study import describe, study_design

    run = read_config(cfg, cli)
    study = study_design(cfg, run.jobs)  # None: the suite registers no hypotheses
    if run.options.dry_run:
        print(job_table(run.jobs, Path(run.options.runs_dir), run.cost))
        if study:
            print(describe(study, run.jobs, Path(run.options.runs_dir)))
        return 0
    prepare(run, study)
    runs_dir = Path(run.options.runs_dir)
    from harness.launch import launch

    errors = launch(run.jobs, runs_dir, run)
    if run.launcher.name == "slurm" and not run.launcher.wait:
        print(f"follow with: python -m harness.status {runs_dir}")
        return 0
    print(closing_table(run.jobs, runs_dir, errors, study))
    for job_id, err in errors.items():
        print(f"FAILED {job_id}: {err.splitlines()[0]}", file=sys.stderr)
    finish(run)
    return 1 if errors else 0


def prepare(run, study: dict | None = None) -> None:
    """Before any work: the device, the store (writable, no changed configs in old run
    directories, no runs of a changed design in a registered study), trackers, the cluster,
    every dataset and environment; then the study's design (before the first run) and the manifest."""
    from harness.launch import check_run_dirs, check_slurm, is_done
    from harness.schema import ConfigError
    from harness.store import unwritable, write_manifest
    from harness.study import check_study, write_study

    jobs, runs_dir = run.jobs, Path(run.options.runs_dir)
    if run.launcher.name == "local":  # a SLURM login node need not have the GPUs its jobs get
        check_device(run.options.device)
    todo = [j for j in jobs if not is_done(j, runs_dir)]
    read_only = unwritable(runs_dir)  # None when runs_dir can be written
    if todo and read_only:
        raise ConfigError(read_only)
    check_study(study, jobs, runs_dir)  # before any work: no runs of a changed design in a registered study,
    check_run_dirs(jobs, runs_dir)  # and a changed config never overwrites old runs
    if todo:  # a finished study needs neither data, trackers nor a cluster
        from harness.trackers import check_trackers

        check_trackers(jobs[0].logger)  # one line for a missing tensorboard / wandb, not one per job
        if run.launcher.name == "slurm":
            check_slurm(run.launcher)
        from harness.preflight import check_replay_memory, preflight

        check_replay_memory(todo, getattr(run.launcher, "mem_gb", None) if run.launcher.name == "slurm" else None)
        preflight(todo)  # every dataset and environment before any job
        for task_name in dict.fromkeys(j.task.name for j in todo):
            import tasks

            tasks.get(task_name).prepare()
    print(f"o2o-bench: {len(jobs)} jobs -> {runs_dir.resolve()}", flush=True)
    if not read_only:
        write_study(study, jobs, runs_dir)  # before the first run
        write_manifest(jobs, runs_dir)


def finish(run) -> None:
    """After the jobs: the report (unless report=false or the store is read-only), where the
    results are, and the W&B offline runs to upload."""
    from harness.store import run_dir, unwritable
    from harness.trackers import wandb_dir, wandb_offline_runs

    runs_dir = Path(run.options.runs_dir)
    suite_dir = runs_dir / run.jobs[0].suite
    read_only = unwritable(runs_dir)
    if run.options.report and read_only:
        print(f"report not rebuilt: {read_only}; write it elsewhere with "
              f"python -m reports {suite_dir} --out DIR")
    elif run.options.report:
        build_report(suite_dir)
    print(f"results: {suite_dir.resolve()}; the full unlearning-dip study: docs/dip-study.md (suite=dip)")
    if wandb_offline_runs(run_dir(runs_dir, j) for j in run.jobs):
        where = (f"{wandb_dir(suite_dir)}/wandb" if os.environ.get("WANDB_DIR", "").strip()  # the user's WANDB_DIR
                 else f"{suite_dir}/*/*/seed*/wandb")
        print(f"W&B offline runs, to upload: wandb sync {where}/offline-run-*")


def build_report(suite_dir: Path) -> None:
    try:
        from reports import build_report as build
    except ImportError:
        return
    try:
        index = build(suite_dir)
        verdicts = index.parent / "verdicts.txt"  # the registered hypotheses' verdicts, if any
        print(verdicts.read_text() if verdicts.exists() else "", end="")
        print(f"report: {index}")
    except OSError as exc:  # e.g. a full disk: the results are whole, only the report is missing
        print(f"report not written ({exc.strerror or exc}: {exc.filename}); free space and run "
              f"python -m reports {suite_dir}, or write it elsewhere with --out DIR", file=sys.stderr)


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    # offscreen rendering for image tasks; mujoco reads this once, when it is first imported, and
    # the preflight and the workers (which inherit it) import it for every task of the suite
    os.environ.setdefault("MUJOCO_GL", "egl")
    from harness.schema import ConfigError
    from tasks import DatasetError

    from harness.config import CommandLine

    cli = CommandLine.parse(sys.argv[1:])  # the only parse of the command line
    try:
        cli.check()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = cli.hydra_args()

    import hydra

    status = {"code": 0}

    @hydra.main(config_path="conf", config_name="config", version_base="1.3")
    def _app(cfg) -> None:
        try:
            code = main_with_config(cfg, cli)
        except (ConfigError, DatasetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        status["code"] = max(status["code"], code)  # a multirun fails if any of its points failed

    _app()
    sys.exit(status["code"])


if __name__ == "__main__":
    main()
