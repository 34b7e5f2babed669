"""Benchmark the report builder: write a synthetic 5 methods x 11 tasks x 10 seeds store (Cal-QL
protocol: eval every 2,000 env steps) and time python -m reports' build_report on it."""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from reports import build_report  # noqa: E402
from tests.reports import synthetic  # noqa: E402  (the test suite's store writer)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--store", default=None, help="reuse / write the store here (default: a temp dir)")
    p.add_argument("--reps", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.store or tmp) / "store"
        if not root.exists():
            t = time.perf_counter()
            synthetic.write_store(root)
            print(f"wrote 5x11x10 store in {time.perf_counter() - t:.1f} s")
        t, cpu = time.perf_counter(), time.process_time()
        index = build_report(root, Path(tmp) / "report", reps=args.reps)
        print(f"build_report: {time.perf_counter() - t:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
              f"(reps={args.reps}) -> {index.name}")


if __name__ == "__main__":
    main()
