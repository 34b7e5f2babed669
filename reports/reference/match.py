"""The protocol match rule: a store's runs of one method on one task may be compared with a
published reference only when task, dataset, success timing and reward variant (OGBench's
`success_timing` and dense / QC's sparse reward: our side from the task's name, `names.our_task`;
'n/a' on both sides for tasks that are not OGBench's), budgets (offline gradient steps, online env
steps), evaluation (episodes per evaluation) and action-chunk length all match. Otherwise the
fields that differ are named and nothing is compared; an unknown value never matches."""
from __future__ import annotations

import pandas as pd

from reports.reference.names import our_method, our_task, reference_task

FIELDS = ("task", "dataset", "success_timing", "reward", "offline_steps", "online_steps", "eval_episodes", "chunk")
RUN_PROTOCOL = ["offline_steps", "online_steps", "eval_episodes", "chunk"]  # columns of the store's runs
NAME_PROTOCOL = ["dataset", "success_timing", "reward"]  # ours: from the task's name (names.our_task)


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return not (pd.isna(a) or pd.isna(b)) and float(a) == float(b)


def _show(v) -> str:
    if isinstance(v, str):
        return v
    return "unknown" if pd.isna(v) else f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"


def differences(ours: dict, ref: dict) -> list[str]:
    """The FIELDS on which `ours` and `ref` differ, each as 'field (ours X, reference Y)'; an
    unknown value (NaN, e.g. a store written before the field existed) differs from everything."""
    return [f"{f} (ours {_show(ours.get(f))}, reference {_show(ref.get(f))})"
            for f in FIELDS if not _same(ours.get(f), ref.get(f))]


def store_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, task, algorithm) of the store's runs with a known status: its canonical
    task, the fields its name gives (NAME_PROTOCOL) and the protocol fields of its runs (a field
    whose runs disagree is NaN: never comparable)."""
    rows = []
    known = runs[runs["status"] != "missing"]
    for (suite, task, alg), g in known.groupby(["suite", "task", "algorithm"]):
        named = our_task(task.split("/")[-1])
        row = {"suite": suite, "task": task, "algorithm": alg, "ref_task": named.task,
               **{f: getattr(named, f) for f in NAME_PROTOCOL}}
        for col in RUN_PROTOCOL:
            values = g[col].dropna().unique() if col in g else []
            row[col] = values[0] if len(values) == 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["suite", "task", "algorithm", "ref_task", *NAME_PROTOCOL, *RUN_PROTOCOL])


def reference_protocols(refs: pd.DataFrame) -> pd.DataFrame:
    """One row per published (source, method, task, protocol) with our method and canonical task."""
    keys = ["source", "repository", "commit", "file", "method", "task", *NAME_PROTOCOL, *RUN_PROTOCOL]
    if refs.empty:
        return pd.DataFrame(columns=keys + ["our_method", "ref_task"])
    out = refs[keys].drop_duplicates().reset_index(drop=True)
    out["our_method"] = [our_method(s, m, c) for s, m, c in zip(out["source"], out["method"], out["chunk"])]
    out["ref_task"] = [reference_task(s, t) for s, t in zip(out["source"], out["task"])]
    return out


def match_store(runs: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Every published reference of a method x task the store holds: one row per (store group,
    reference protocol) with `comparable` and, when not, `differs` (the fields, ours vs theirs)."""
    ours, theirs = store_protocols(runs), reference_protocols(refs)
    cols = ["suite", "task", "algorithm", "source", "method", "ref_task", "comparable", "differs",
            "repository", "commit", "file", *NAME_PROTOCOL, *RUN_PROTOCOL]
    if ours.empty or theirs.empty:
        return pd.DataFrame(columns=cols)
    pairs = ours.merge(theirs.rename(columns={"task": "source_task"}), left_on=["algorithm", "ref_task"],
                       right_on=["our_method", "ref_task"], suffixes=("", "_ref"))
    rows = []
    for p in pairs.to_dict("records"):
        fields = NAME_PROTOCOL + RUN_PROTOCOL
        mine = {"task": p["ref_task"], **{c: p[c] for c in fields}}
        ref = {"task": reference_task(p["source"], p["source_task"]), **{c: p[f"{c}_ref"] for c in fields}}
        diff = differences(mine, ref)
        rows.append({"suite": p["suite"], "task": p["task"], "algorithm": p["algorithm"], "source": p["source"],
                     "method": p["method"], "ref_task": p["source_task"], "comparable": not diff,
                     "differs": "; ".join(diff), "repository": p["repository"], "commit": p["commit"],
                     "file": p["file"], **{c: p[f"{c}_ref"] for c in NAME_PROTOCOL + RUN_PROTOCOL}})
    return pd.DataFrame(rows, columns=cols).sort_values(["task", "algorithm", "source", "method"],
                                                        ignore_index=True)
