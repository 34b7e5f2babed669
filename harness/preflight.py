"""Before any job starts: every task's dataset is here (or the task can generate it) and every
environment can be created and stepped; otherwise one line per problem and how to fix it."""
from __future__ import annotations

import warnings

import tasks
from tasks.base import DatasetError


def problems(task_names) -> list[str]:
    out = []
    for name in dict.fromkeys(task_names):
        task = tasks.get(name)
        if not task.dataset_present() and not hasattr(task, "generate"):
            out.append(f"{name}: dataset missing ({task.source}). To get it: {task.how_to_get()}")
        elif task.dataset_present() and (problem := task.dataset_problem()):
            out.append(f"{name}: dataset corrupt: {problem}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = task.make_env(0)
                env.reset(seed=0)
                env.step(env.action_space.sample())
                env.close()
        except Exception as exc:  # a broken install (mujoco version, missing assets)
            out.append(f"{name}: environment does not run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return out


def preflight(jobs) -> None:
    """Raise DatasetError listing everything missing: one line, or a header and one line per task."""
    found = problems(j["task"]["name"] for j in jobs)
    if len(found) == 1:
        raise DatasetError(f"before any job starts: {found[0]}")
    if found:
        raise DatasetError(f"{len(found)} problem(s) before any job starts:\n  " + "\n  ".join(found))
