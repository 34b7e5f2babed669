"""Command line: python -m reports RUNS_DIR [--out DIR] [--dip-window FRAC] [--reps N] [--seed S]
[--reference-dir DIR | --no-references] [--references];
python -m reports plan PILOT [--study FILE] [--n 3,5,...] [--power P] (seeds a study needs)."""
import argparse
import sys
import time
from pathlib import Path

from reports.build import DEFAULT_REPS, build_report
from reports.load import StoreError, load_store
from reports.reference import load_references
from reports.metrics import DEFAULT_DIP_WINDOW


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split(":", 1)[0])
    p.add_argument("runs_dir", help="results store written by python -m harness.run (./plan for a store named plan)")
    p.add_argument("--out", default=None, help="report folder (default RUNS_DIR/report)")
    p.add_argument("--dip-window", type=float, default=DEFAULT_DIP_WINDOW,
                   help="early fine-tuning window for the unlearning dip, as a fraction of the online "
                        "env steps (default %(default)s; a registered study's verdicts use its own)")
    p.add_argument("--reps", type=int, default=DEFAULT_REPS, help="bootstrap replications (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--reference-dir", default=None,
                      help="folder of published-result CSVs (default: reports/reference/)")
    refs.add_argument("--no-references", action="store_true", help="leave published results out of the report")
    p.add_argument("--references", action="store_true",
                   help="only list the published references for the store's methods x tasks, and whether "
                        "each is comparable (and if not, which protocol fields differ)")
    args = p.parse_args(argv)
    for name in ("runs_dir", "out", "reference_dir"):  # `--out=~/r`: a shell expands `~` only at a word's start
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).expanduser()))
    if args.references and args.no_references:
        p.error("--references lists references; it cannot go with --no-references")
    start = time.perf_counter()
    try:
        if args.references:
            return list_references(args.runs_dir, args.reference_dir)
        index = build_report(args.runs_dir, args.out, dip_window=args.dip_window, reps=args.reps, seed=args.seed,
                             references=False if args.no_references else args.reference_dir)
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. the disk filled up: every file written so far is whole
        print(f"error: writing the report failed at {e.filename or args.out or args.runs_dir} "
              f"({e.strerror or e}); free space or write it elsewhere with --out DIR", file=sys.stderr)
        return 1
    from reports.study import VERDICTS_TXT

    verdicts = index.parent / VERDICTS_TXT
    if verdicts.exists():
        print(verdicts.read_text(), end="")
    print(f"report written to {index} in {time.perf_counter() - start:.1f} s")
    return 0


def list_references(runs_dir, reference_dir=None) -> int:
    """Print, per method x task of the store, each published reference and whether it is comparable."""
    from reports.reference.match import match_store

    matches = match_store(load_store(runs_dir).runs, load_references(reference_dir))
    if matches.empty:
        print(f"no published reference for any method x task of {runs_dir}")
        return 0
    for m in matches.to_dict("records"):
        where = f"{m['repository']}@{str(m['commit'])[:7]} {m['file']}"
        if m["comparable"] and m["success_timing"] != "n/a":  # OGBench's timing, the same on both sides
            where += f"; success_timing {m['success_timing']}"
        verdict = "comparable" if m["comparable"] else f"not comparable: {m['differs']}"
        print(f"{m['suite']}/{m['task']} {m['algorithm']} <- {m['source']} {m['method']} on {m['ref_task']} "
              f"({where}): {verdict}")
    n = int(matches["comparable"].sum())
    print(f"{n} comparable, {len(matches) - n} not comparable")


def _ns(text: str) -> list[int]:
    try:
        ns = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--n {text!r}: give seed counts separated by commas, e.g. 3,5,10") from None
    if ns[0] < 2:
        raise argparse.ArgumentTypeError(f"--n {text!r}: a study needs at least 2 seeds per method")
    return ns


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--power {text}: give a probability in (0, 1), e.g. 0.8")
    return value


def plan_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m reports plan",
                                description="How many seeds a registered study needs: resamples a pilot's "
                                            "per-seed results (docs/reports.md).")
    p.add_argument("pilot", help="a pilot store (its study.json registers the hypotheses), or a report's runs.csv")
    p.add_argument("--study", default=None,
                   help="the hypotheses: a study.json or a suite yaml with a study: block (default: the pilot store's)")
    p.add_argument("--n", type=_ns, default=[3, 5, 8, 10, 15, 20, 30], help="seed counts per method (default 3,5,8,10,15,20,30)")
    p.add_argument("--power", type=_fraction, default=0.8,
                   help="the probability a study should show each hypothesis with (default %(default)s)")
    p.add_argument("--pilot-seeds", type=int, default=None, help="use only each method's first K pilot seeds per task")
    p.add_argument("--sims", type=int, default=400, help="simulated studies per n (default %(default)s)")
    p.add_argument("--reps", type=int, default=1000, help="bootstrap resamples per simulated study (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    args = p.parse_args(argv)
    args.pilot, args.study = (str(Path(v).expanduser()) if v else v for v in (args.pilot, args.study))
    from reports import study

    try:
        if args.sims < 50 or args.reps < 100:
            raise ValueError(f"--sims {args.sims} / --reps {args.reps}: use at least 50 simulated studies and 100 resamples")
        if args.pilot_seeds is not None and args.pilot_seeds < 2:
            raise ValueError(f"--pilot-seeds {args.pilot_seeds}: the planner needs at least 2 pilot seeds")
        per_run = study.read_pilot(args.pilot)
        if args.study:
            design = study.read_study(args.study)
            if design is None:
                raise ValueError(f"--study {args.study} does not exist")
        if per_run is None:
            from reports import metrics
            from reports.load import load_store

            store = load_store(args.pilot)
            if args.study is None:
                designs = study.store_studies(Path(args.pilot), store.runs["suite"].unique())
                if len(designs) != 1:
                    raise ValueError(f"{args.pilot} has {'no' if not designs else len(designs)} registered stud"
                                     f"{'y' if len(designs) == 1 else 'ies'} (study.json); name one with --study FILE")
                design = next(iter(designs.values()))
            per_run = metrics.all_run_metrics(store, design.get("dip_window", DEFAULT_DIP_WINDOW))
        elif args.study is None:
            raise ValueError(f"{args.pilot} is a runs.csv: name the hypotheses with --study FILE")
        if not design.get("tasks"):
            design["tasks"] = sorted({study._plain_task(s, t) for s, t in zip(per_run["suite"], per_run["task"])})
        start = time.perf_counter()
        lines = study.plan(per_run, design, args.n, args.power, args.sims, args.reps, args.seed, args.pilot_seeds)
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"pilot: {args.pilot}")
    print("\n".join(lines))
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
