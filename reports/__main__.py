"""Command line: python -m reports RUNS_DIR [--out DIR] [--dip-window FRAC] [--reps N] [--seed S]."""
import argparse
import sys
import time

from reports.build import DEFAULT_REPS, build_report
from reports.load import StoreError
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
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        index = build_report(args.runs_dir, args.out, dip_window=args.dip_window, reps=args.reps, seed=args.seed)
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. the disk filled up: every file written so far is whole
        print(f"error: writing the report failed at {e.filename or args.out or args.runs_dir} "
              f"({e.strerror or e}); free space or write it elsewhere with --out DIR", file=sys.stderr)
        return 1
    print(f"report written to {index} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
