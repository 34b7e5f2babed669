"""Build the whole report of a results store: tidy CSVs, tables (Markdown, LaTeX), figures
(PNG, PDF) and index.html. `build_report` is what the CLI and the harness call. The report is
built in a private folder beside its destination and swapped in whole (`reports.files.swap_in`):
a reader, or a build killed half-way, sees the old report or the new one, never a mix."""
from __future__ import annotations

import datetime
import html
from pathlib import Path

import pandas as pd

from reports import aggregate, metrics, plots, tables
from reports.html import figure, write_index
from reports.files import private_folder, swap_in, write_csv, write_file
from reports.load import StoreError, load_store
from reports.reference import load_references

DEFAULT_REPS = 2000
NOT_INCLUDED_COLS = ["suite", "task", "algorithm", "seed", "status", "reason", "path"]


def build_report(runs_dir, out_dir=None, dip_window: float = metrics.DEFAULT_DIP_WINDOW,
                 reps: int = DEFAULT_REPS, seed: int = 0, references=None) -> Path:
    """Write the report of `runs_dir` into `out_dir` (default RUNS_DIR/report); return index.html.
    `references`: folder of published-result CSVs (default reports/reference/; False: none)."""
    if not 0 < dip_window <= 1:
        raise ValueError(f"dip window {dip_window} must be a fraction in (0, 1]; e.g. --dip-window 0.25")
    if reps < 100:
        raise ValueError(f"--reps {reps} is too few bootstrap replications for 95% CIs; use at least 100")
    runs_dir = Path(runs_dir)
    final_dir = Path(out_dir) if out_dir else runs_dir / "report"
    store = load_store(runs_dir)  # first: a missing or empty store creates nothing
    refs = load_references(references) if references is not False else None
    try:
        out_dir = private_folder(final_dir)
    except OSError as exc:
        raise StoreError(f"cannot write the report into {final_dir} ({exc.strerror or exc}); "
                         f"write it elsewhere with --out DIR") from None
    try:
        _build(store, refs, runs_dir, out_dir, dip_window, reps, seed)
        swap_in(out_dir, final_dir)
    except BaseException:
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return final_dir / "index.html"


def _build(store, refs, runs_dir: Path, out_dir: Path, dip_window: float, reps: int, seed: int) -> Path:
    fig_dir = out_dir / "figures"
    fig_dir.mkdir()
    if store.runs["suite"].nunique() > 1:  # the same task name may mean different things per suite
        for frame in (store.runs, store.evals, store.train):
            frame["task"] = frame["suite"] + "/" + frame["task"]
    per_run = metrics.all_run_metrics(store, dip_window)
    write_csv(store.evals, out_dir / "evals_tidy.csv")
    write_csv(per_run.drop(columns=["path"]), out_dir / "runs.csv")
    not_included = per_run.loc[~per_run["included"].astype(bool), NOT_INCLUDED_COLS]
    write_csv(not_included, out_dir / "not_included.csv")

    sections = _study_sections(store, per_run, runs_dir, out_dir, dip_window, reps, seed)
    n_ok = int(per_run["included"].sum())
    left_out = pd.DataFrame(columns=["suite", "task", "algorithm", "seed", "reason"])
    if n_ok:
        write_csv(metrics.task_means(per_run), out_dir / "task_means.csv")
        write_csv(metrics.domain_averages(per_run), out_dir / "domain_averages.csv")
        mats = aggregate.build_matrices(per_run)
        left_out = mats.excluded
        write_csv(left_out, out_dir / "left_out_of_aggregates.csv")
        curves = aggregate.all_run_curves(per_run, store.evals)
        if mats.tasks:
            sections += _aggregate_sections(store, mats, curves, out_dir, fig_dir, reps, seed)
        sections += _per_task_sections(per_run, curves, out_dir, fig_dir, reps, seed)
        if refs is not None:
            sections += _reference_sections(per_run, curves, refs, out_dir, fig_dir, reps, seed)
        if per_run["policy_value_end"].notna().any():
            sections.append(_calibration_section(per_run, store.train, out_dir, fig_dir, reps, seed))
    else:
        sections.append(("Results", "<p class='warn'>No completed run yet: nothing to aggregate.</p>"))

    sections.append(_data_section(per_run))
    algs = sorted(per_run["algorithm"].unique())
    meta = (f"Store <code>{html.escape(str(runs_dir.resolve()))}</code> · {len(per_run)} runs "
            f"({n_ok} included) · {per_run['task'].nunique()} tasks · methods: {', '.join(algs)} · "
            f"dip window {dip_window:g} of the online budget · {reps} bootstrap reps · "
            f"generated {datetime.datetime.now().isoformat(timespec='seconds')}")
    notes = f"{metrics.__doc__}\n{aggregate.__doc__}"
    return write_index(out_dir, title="o2o-bench fine-tuning report", meta=meta, sections=sections,
                       not_included=not_included.drop(columns=["path"]), left_out=left_out, notes=notes)


def _study_sections(store, per_run, runs_dir, out_dir, dip_window, reps, seed):
    """The registered hypotheses' verdicts (none for a store without a study): a section, and
    verdicts.csv / verdicts.txt (the lines `python -m reports` prints)."""
    from reports import study

    designs = study.store_studies(runs_dir, per_run["suite"].unique())
    if not designs:
        (out_dir / study.VERDICTS_TXT).unlink(missing_ok=True)
        return []
    frames, lines = [], []
    for design in designs.values():
        window = design.get("dip_window", dip_window)
        runs = per_run if window == dip_window else metrics.all_run_metrics(store, window)
        table = study.verdicts(runs, design, reps, seed)
        frames.append(table)
        lines += study.verdict_lines(table, design)
    table = pd.concat(frames, ignore_index=True)
    write_csv(table, out_dir / "verdicts.csv")
    write_file(out_dir / study.VERDICTS_TXT, "\n".join(lines) + "\n")
    shown = table.assign(interval=[f"[{lo:.2f}, {hi:.2f}] ({lv:.0%})" for lo, hi, lv in
                                   zip(table["lo"], table["hi"], table["level"])],
                         estimate=table["estimate"].round(2))
    body = ("<p class='note'>Hypotheses registered in the store before its runs (study.json); "
            "holds / fails needs every registered run done, else: not enough runs, with the runs "
            "not done named. Percentile stratified bootstrap intervals; definitions in reports/study.py.</p>"
            f"<pre>{html.escape(chr(10).join(lines))}</pre>"
            + shown[["suite", "hypothesis", "claim", "estimate", "interval", "verdict", "runs", "not_done"]]
            .to_html(index=False, escape=True, border=0, na_rep=""))
    return [("Registered hypotheses", body)]


def _aggregate_sections(store, mats, curves, out_dir, fig_dir, reps, seed):
    intervals = aggregate.interval_estimates(mats, reps, seed)
    write_csv(intervals, out_dir / "aggregates.csv")
    taus, profiles, cis = aggregate.performance_profiles(mats, reps=reps, seed=seed)
    poi = aggregate.probability_of_improvement(mats, reps, seed)
    poi_dip = aggregate.probability_of_improvement(mats, reps, seed, metric="dip", lower_is_better=True)
    write_csv(pd.concat([poi, poi_dip]), out_dir / "probability_of_improvement.csv")
    curve = aggregate.sample_efficiency(mats, curves, reps, seed)
    write_csv(curve, out_dir / "sample_efficiency.csv")

    agg_tables = [
        tables.aggregate_table(intervals, "final_score", "Final normalized score across tasks", aggregate.STATISTICS),
        tables.aggregate_table(intervals, "offline_score", "Offline score J0 across tasks", aggregate.STATISTICS[:3]),
        tables.aggregate_table(intervals, "dip", "Unlearning dip across tasks", aggregate.STATISTICS[:3]),
        tables.aggregate_table(intervals, "regret", "Cumulative regret across tasks", aggregate.STATISTICS[:3], 3),
    ]
    poi_t = [tables.poi_table(poi), tables.poi_table(poi_dip, "unlearning dip, P(row's dip < column's)")] \
        if len(poi) else []
    _write_tables(out_dir, "aggregate_tables", agg_tables + poi_t)

    budgets = store.runs.loc[store.runs["task"].isin(mats.tasks), "online_steps"].dropna().unique()
    budget = float(budgets[0]) if len(budgets) == 1 else None
    f_final = plots.interval_plot(intervals, [("final_score", s) for s in aggregate.STATISTICS], fig_dir, "aggregates")
    f_dip = plots.interval_plot(intervals, [("dip", "IQM"), ("dip", "Mean"), ("regret", "IQM"), ("regret", "Mean")],
                                fig_dir, "dip_regret")
    f_prof = plots.profile_plot(taus, profiles, cis, fig_dir)
    f_curve = plots.sample_efficiency_plot(curve, budget, fig_dir)
    n = {a: m.shape[0] for a, m in mats.scores.items()}
    runs_note = ", ".join(f"{a}: {k}" for a, k in n.items())
    body = (f"<p class='note'>{len(mats.tasks)} tasks; runs per task used: {runs_note}. 95% stratified "
            f"bootstrap CIs (rliable, {reps} reps).</p>"
            + figure(f_final[0], out_dir, "Final normalized score: IQM, median, mean, optimality gap")
            + figure(f_dip[0], out_dir, "Unlearning dip and cumulative regret (lower is better)")
            + "".join(tables.to_html(t) for t in agg_tables))
    sections = [("Aggregate performance", body),
                ("Performance profile", figure(f_prof[0], out_dir, "Performance profile of final score with 95% CIs"))]
    if poi_t:
        f_poi = plots.poi_plot(poi, fig_dir)
        f_poi_dip = plots.poi_plot(poi_dip, fig_dir, "P(dip of X < dip of Y)", "probability_of_improvement_dip")
        sections.append(("Probability of improvement",
                         figure(f_poi[0], out_dir, "P(X > Y) on final score") + tables.to_html(poi_t[0])
                         + figure(f_poi_dip[0], out_dir, "P(X's unlearning dip < Y's)") + tables.to_html(poi_t[1])))
    sections.append(("Sample efficiency", figure(
        f_curve[0], out_dir, "IQM and mean normalized score during fine-tuning over all tasks, 95% CIs; "
        "dashed line: end of pre-training (x = 0 is the offline score J0)")))
    return sections


def _per_task_sections(per_run, curves, out_dir, fig_dir, reps, seed):
    task_curves = aggregate.per_task_curves(per_run, curves, reps, seed)
    write_csv(task_curves, out_dir / "curves_per_task.csv")
    f_tasks = plots.per_task_plot(task_curves, fig_dir)
    task_tables = [
        tables.score_table(per_run, reps, seed),
        tables.metric_table(per_run, "regret", "Cumulative regret (Cal-QL)", False, 3,
                            "mean over fine-tuning evals of 1 - score/100; mean ± std over seeds; lowest in bold"),
        tables.metric_table(per_run, "failed_episodes", "Failed online training episodes (CORL regret)", False, 3,
                            "1 - success rate of the online training episodes; goal tasks only"),
        tables.metric_table(per_run, "dip", "Unlearning dip", False, 1,
                            "max(0, J0 - min score) over the early fine-tuning window; lowest in bold"),
        tables.metric_table(per_run, "relative_dip", "Relative unlearning dip (dip / J0)", False, 2,
                            "NaN runs (J0 = 0) are skipped"),
        tables.recovery_table(per_run),
        tables.per_seed_table(per_run, "dip", "Unlearning dip of every run"),
        tables.per_seed_table(per_run, "offline_score", "Offline score J0 of every run"),
        tables.per_seed_table(per_run, "final_score", "Final score of every run"),
    ]
    _write_tables(out_dir, "task_tables", task_tables)
    body = (figure(f_tasks[0], out_dir, "Per-task IQM over seeds with 95% bootstrap bands; dashed line: end of "
                   "pre-training") + "".join(tables.to_html(t) for t in task_tables))
    return [("Per-task results", body)]


def _reference_sections(per_run, curves, refs, out_dir, fig_dir, reps, seed):
    """Published results next to ours (reports/references.py): the agreement table, the published
    curves under ours, and the references that exist but are not comparable, with the reason."""
    from reports import references

    matches = references.match_store(per_run, refs)
    write_csv(matches, out_dir / "references_match.csv")
    if matches.empty:
        return [("Published results", "<p>No published reference for any method x task of this store "
                 "(reports/reference/).</p>")]
    agreed = references.agreement(per_run, refs, matches, reps, seed)
    body = ""
    if len(agreed):
        write_csv(agreed, out_dir / "references_agreement.csv")
        table = tables.agreement_table(agreed)
        _write_tables(out_dir, "references_tables", [table])
        comp = references.comparison_curves(per_run, curves, refs, agreed, reps, seed)
        write_csv(comp, out_dir / "references_curves.csv")
        fig = plots.reference_plot(comp, fig_dir)
        n_bad = int((agreed["verdict"] == "DISAGREE").sum())
        if n_bad:
            body += f"<p class='warn'>{n_bad} of {len(agreed)} comparison(s) disagree with the published result.</p>"
        body += (tables.to_html(table) + figure(
            fig[0], out_dir, "Published mean (dashed, light band) under ours (solid, band), per task and averaged "
            "over the compared tasks; 95% bootstrap bands (stratified in the aggregate; none for a published "
            "average of means-only sources); x = 0 is the end of pre-training"))
    else:
        body += "<p>No reference matches the protocol of this store's runs: nothing is compared.</p>"
    other = matches[~matches["comparable"]]
    if len(other):
        body += ("<h3>Published references not compared (protocol differs)</h3>"
                 + other[["task", "algorithm", "source", "method", "ref_task", "differs"]]
                 .to_html(index=False, escape=True, border=0))
    return [("Published results", body)]


def _calibration_section(per_run, train, out_dir, fig_dir, reps, seed):
    table = tables.calibration_table(per_run, reps, seed)
    _write_tables(out_dir, "calibration_tables", [table])
    f_cal = plots.calibration_plot(per_run, train, fig_dir)
    return ("Calibration", figure(f_cal[0], out_dir, "Q of the learned policy against the Monte-Carlo return of "
                                  "the data: at the end of pre-training per run (left), and during training (right)")
            + tables.to_html(table))


def _data_section(per_run: pd.DataFrame) -> tuple[str, str]:
    """Each task's offline data as the runs recorded it when they started: content hash, file,
    generator and version; a task whose runs saw different data is flagged."""
    cols = ["task", "dataset_sha256", "dataset_source", "dataset_generator"]
    table = per_run[cols].assign(runs=1).groupby(cols, as_index=False)["runs"].sum()
    table["dataset_sha256"] = table["dataset_sha256"].str[:16].replace("", "not recorded")
    mixed = sorted(t for t, n in table.groupby("task").size().items() if n > 1)
    warn = (f"<p class='warn'>Runs of {', '.join(html.escape(t) for t in mixed)} trained on different data "
            f"(hashes below): their scores are not comparable.</p>") if mixed else ""
    body = warn + table.rename(columns={"dataset_sha256": "sha256 (first 16)", "dataset_source": "file",
                                        "dataset_generator": "generator, version"}).to_html(
        index=False, escape=True, border=0)
    return ("Data", "<p class='note'>The offline data of each task, hashed when each run started.</p>" + body)


def _write_tables(out_dir: Path, name: str, ts) -> None:
    write_file(out_dir / f"{name}.md", "\n".join(tables.to_markdown(t) for t in ts))
    write_file(out_dir / f"{name}.tex", "% needs \\usepackage{booktabs}\n" + "\n".join(tables.to_latex(t) for t in ts))
