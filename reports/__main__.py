"""Command line: python -m reports RUNS_DIR [--out DIR] [--dip-window FRAC] [--reps N] [--seed S]
[--reference-dir DIR | --no-references] [--references]."""
import argparse
import sys
import time

from reports.build import DEFAULT_REPS, build_report
from reports.load import StoreError, load_store
from reports.reference import load_references
from reports.metrics import DEFAULT_DIP_WINDOW


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split(":", 1)[0])
    p.add_argument("runs_dir", help="results store written by python -m harness.run")
    p.add_argument("--out", default=None, help="report folder (default RUNS_DIR/report)")
    p.add_argument("--dip-window", type=float, default=DEFAULT_DIP_WINDOW,
                   help="early fine-tuning window for the unlearning dip, as a fraction of the online "
                        "env steps (default %(default)s)")
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
        verdict = "comparable" if m["comparable"] else f"not comparable: {m['differs']}"
        print(f"{m['suite']}/{m['task']} {m['algorithm']} <- {m['source']} {m['method']} on {m['ref_task']} "
              f"({where}): {verdict}")
    n = int(matches["comparable"].sum())
    print(f"{n} comparable, {len(matches) - n} not comparable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
