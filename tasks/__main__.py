"""`python -m tasks list | info NAME | download NAME | generate NAME`: what the tasks need and
whether it is here."""
from __future__ import annotations

import argparse
import sys

import tasks
from tasks.base import DatasetError


def _list() -> None:
    print(f"{'task':<40} {'domain':<14} {'local':<7} source")
    for name in sorted(tasks.TASKS):
        t = tasks.TASKS[name]
        print(f"{name:<40} {t.domain:<14} {t.dataset_state():<7} {t.source}")
    for alias in sorted(tasks.ALIASES):  # a job asked for by an alias is the named task's job
        print(f"{alias:<40} alias of {tasks.ALIASES[alias]}")


def _info(t) -> None:
    doc = (sys.modules[type(t).__module__].__doc__ or "").strip()
    print(f"task:      {t.name}\ndomain:    {t.domain}\nobs/act:   {t.obs_dim} / {t.act_dim}\n"
          f"source:    {t.source}\npresent:   {t.dataset_state()}{': ' + t.dataset_problem() if t.dataset_state() == 'corrupt' else ''}\n"
          f"get it:    {t.how_to_get()}\nhorizon:   {t.horizon}\n"
          f"fail_reward: {t.fail_reward}\nscore refs: {t.ref_min_score} / {t.ref_max_score}\n\n{doc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every task, its source and whether its data is here")
    for cmd in ("info", "download", "generate"):
        sub.add_parser(cmd).add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "list":
            _list()
            return 0
        t = tasks.get(args.name)
        if args.cmd == "info":
            _info(t)
        elif args.cmd == "download":
            t.download()
            print(f"{t.name}: dataset ready")
        elif args.cmd == "generate":
            if not hasattr(t, "generate"):
                print(f"error: task '{t.name}' is not generated (source: {t.source}); {t.how_to_get()}", file=sys.stderr)
                return 2
            if problem := getattr(t, "save_problem", lambda: None)():
                print(f"error: {problem}", file=sys.stderr)
                return 2
            t.generate()
            print(f"{t.name}: dataset generated")
        return 0
    except (KeyError, DatasetError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
