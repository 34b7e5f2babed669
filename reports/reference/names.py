"""Names of methods and tasks in the published sources, mapped to ours.

Tasks meet on one canonical name per task: OGBench's single-task dataset name
(`cube-double-play-singletask-task2-v0`), D4RL's name (`antmaze-large-diverse-v2`), or Cal-QL's
(`door-binary-v0`, `kitchen-partial-v0`). `our_task` also gives the dataset a task of ours trains on
(config.yaml names the task, not the file; for AntMaze the D4RL file is the task's first choice, the
Minari copy its fallback), `reference_task` the canonical name of a source's task.
A source method with no counterpart in our registry maps to None and is never compared.
"""
from __future__ import annotations

import re

# OGBench's default task of each single-task environment (the env id without -taskN), as in
# tasks/ogbench.py ENVS (cube-triple, cube-quadruple, puzzle-4x4: OGBench's registration).
OGBENCH_DEFAULT_TASK = {"cube-single": 2, "cube-double": 2, "cube-triple": 2, "cube-quadruple": 2,
                        "scene": 2, "puzzle-3x3": 4, "puzzle-4x4": 4, "visual-cube-single": 2}
_OGBENCH = re.compile(r"(?P<env>(?:visual-)?(?:cube-(?:single|double|triple|quadruple)|scene|puzzle-\dx\d))"
                      r"-(?P<data>play|noisy)-singletask(?:-task(?P<id>\d))?(?P<mini>-mini)?")
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


def our_task(name: str) -> tuple[str, str]:
    """(canonical task, dataset) of one of our task names; unknown names map to themselves."""
    m = _OGBENCH.fullmatch(name)
    if m:
        env, data = m["env"], m["data"]
        task_id = int(m["id"]) if m["id"] else OGBENCH_DEFAULT_TASK.get(env, 1)
        dataset = f"{env}-{data}-v0" + (" (mini: generated, 10 episodes)" if m["mini"] else "")
        return f"{env}-{data}-singletask-task{task_id}-v0", dataset
    if _ANTMAZE.fullmatch(name):
        return f"{name}-v2", f"{name}-v2"
    if _CALQL_V0.fullmatch(name):
        return f"{name}-v0", f"{name}-v0"
    return name, name


def reference_task(source: str, task: str) -> str:
    """Canonical name of a source's task: QC writes `cube-double-play-task2` for OGBench's
    `cube-double-play-singletask-task2-v0`; QAM and CORL already use the canonical names."""
    if source == "qc":
        m = re.fullmatch(r"(.+-play)-task(\d)", task)
        if m:
            return f"{m[1]}-singletask-task{m[2]}-v0"
    return task
