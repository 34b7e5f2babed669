"""Benchmark tasks: datasets, environments and score normalization, found by name.

Every module of this package registers its tasks on import (all are imported here, so a new
domain is one new file; helper modules register nothing)."""
import importlib
import pkgutil

from tasks.base import ALIASES, TASKS, Dataset, DatasetError, Source, Task, get, register_alias, register_task

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"tasks.{_module}")  # adroit, antmaze, fetch, kitchen, pointmaze, ...

__all__ = ["ALIASES", "TASKS", "Dataset", "DatasetError", "Source", "Task", "get", "register_alias", "register_task"]
