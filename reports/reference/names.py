"""Names of methods and tasks in the published sources, mapped to ours.

Tasks meet on one canonical name per task: OGBench's single-task dataset name
(`cube-double-play-singletask-task2-v0`), D4RL's name (`antmaze-large-diverse-v2`), or Cal-QL's
(`door-binary-v0`, `kitchen-partial-v0`). `our_task` also gives the dataset a task of ours trains on
(config.yaml names the task, not the file; for AntMaze the D4RL file is the task's first choice, the
Minari copy its fallback) and, for OGBench, the success timing and reward variant of the runs a
store directory of that name holds (tests/reports/test_references.py checks them against
tasks.ogbench's registered tasks and aliases), `reference_task` the canonical name of a source's task.
A source method with no counterpart in our registry maps to None and is never compared.
"""
from __future__ import annotations

import re
from typing import NamedTuple

# OGBench's default task of each single-task environment (the env id without -taskN), as in
# tasks/ogbench.py ENVS (cube-triple, cube-quadruple, puzzle-4x4: OGBench's registration).
OGBENCH_DEFAULT_TASK = {"cube-single": 2, "cube-double": 2, "cube-triple": 2, "cube-quadruple": 2,
                        "scene": 2, "puzzle-3x3": 4, "puzzle-4x4": 4, "visual-cube-single": 2}
# Our OGBench task names read `<env>-<data>-singletask[-task<k>][-mini][-sparse][-pre|-post]`
# (tasks/ogbench.py OGBenchTask):
# - data `play` or `play-100m` (OGBench's 100M-transition dataset, `<env>-play-100m-v0`);
# - success_timing (OGBench's: reward, success and termination of s, 'pre', ogbench >= 1.2, or of
#   s', 'post', ogbench <= 1.1): the suffix if there is one; otherwise 'post', except for the
#   plain play-data names of the envs in OGBENCH_PRE_NAMES. Those names meant 'pre' until every
#   name defaulted to 'post'; they are now aliases (tasks.base.ALIASES) of their `-post` names, so
#   jobs asked for by them are stored under the `-post` name, and a store directory under a plain
#   name holds a run made when it meant 'pre';
# - reward: `-sparse` is QC's sparse reward (-1 until every sub-goal holds, then 0), else 'dense'
#   (OGBench's: minus the number of unsatisfied sub-goals).
OGBENCH_PRE_NAMES = ("cube-single", "cube-double", "scene", "puzzle-3x3", "visual-cube-single")  # tasks.ogbench timing_in_name
_OGBENCH = re.compile(r"(?P<env>(?:visual-)?(?:cube-(?:single|double|triple|quadruple)|scene|puzzle-\dx\d))"
                      r"-(?P<data>play|noisy)(?P<big>-100m)?-singletask(?:-task(?P<id>\d))?(?P<mini>-mini)?"
                      r"(?P<sparse>-sparse)?(?:-(?P<timing>pre|post))?")
NOT_OGBENCH = "n/a"  # success_timing and reward of a task that is not OGBench's (both sides: equal)
_ANTMAZE = re.compile(r"antmaze-(umaze|medium|large)(-(play|diverse))?")
_CALQL_V0 = re.compile(r"(door|pen|relocate)-binary|kitchen-(partial|mixed|complete)")

# source -> {source method: our registry name}; RLPD-AC / QC-RLPD are RLPD with chunks (the
# chunk column keeps them apart), FQL-n / BFN-n are n-step variants without a counterpart.
METHODS = {
    "qc": {"QC": "qc", "QC-FQL": "qcfql", "FQL": "fql", "IQL": "iql", "RLPD": "rlpd", "RLPD-AC": "rlpd"},
    "qam": {"FQL": "fql", "RLPD": "rlpd"},
    "corl": {"AWAC": "awac", "CQL": "cql", "IQL": "iql", "Cal-QL": "calql"},
}
# QAM runs FQL with 5-action chunks on manipulation (its `agent.action_chunking=True`): QC-FQL.
CHUNKED = {"fql": "qcfql"}


def our_method(source: str, method: str, chunk=1):
    """Our registry name for a source's method (None: no counterpart)."""
    ours = METHODS.get(source, {}).get(method)
    if ours in CHUNKED and chunk and chunk > 1 and source == "qam":
        return CHUNKED[ours]
    return ours


class OurTask(NamedTuple):
    """What one of our task names means for the match rule (reports.reference.match FIELDS)."""

    task: str  # canonical task name
    dataset: str
    success_timing: str  # 'pre' / 'post' (OGBench), NOT_OGBENCH otherwise
    reward: str  # 'dense' / 'sparse' (OGBench), NOT_OGBENCH otherwise


def our_task(name: str) -> OurTask:
    """The canonical task, dataset, success timing and reward of one of our task names; names of
    no known family map to themselves (success timing and reward NOT_OGBENCH)."""
    m = _OGBENCH.fullmatch(name)
    if m:
        env, data = m["env"], m["data"] + (m["big"] or "")
        task_id = int(m["id"]) if m["id"] else OGBENCH_DEFAULT_TASK.get(env, 1)
        dataset = f"{env}-{data}-v0" + (" (mini: generated, 10 episodes)" if m["mini"] else "")
        plain = not (m["sparse"] or m["big"])
        timing = m["timing"] or ("pre" if plain and env in OGBENCH_PRE_NAMES else "post")
        return OurTask(f"{env}-{m['data']}-singletask-task{task_id}-v0", dataset, timing,
                       "sparse" if m["sparse"] else "dense")
    if _ANTMAZE.fullmatch(name):
        return OurTask(f"{name}-v2", f"{name}-v2", NOT_OGBENCH, NOT_OGBENCH)
    if _CALQL_V0.fullmatch(name):
        return OurTask(f"{name}-v0", f"{name}-v0", NOT_OGBENCH, NOT_OGBENCH)
    return OurTask(name, name, NOT_OGBENCH, NOT_OGBENCH)


def reference_task(source: str, task: str) -> str:
    """Canonical name of a source's task: QC writes `cube-double-play-task2` for OGBench's
    `cube-double-play-singletask-task2-v0`; QAM and CORL already use the canonical names."""
    if source == "qc":
        m = re.fullmatch(r"(.+-play)-task(\d)", task)
        if m:
            return f"{m[1]}-singletask-task{m[2]}-v0"
    return task
