"""Benchmark tasks: datasets, environments and score normalization, found by name."""
from tasks import adroit, antmaze, fetch, kitchen, ogbench, pointmaze  # noqa: F401  (register the tasks)
from tasks.base import TASKS, Dataset, DatasetError, Task, get, register_task

__all__ = ["TASKS", "Dataset", "DatasetError", "Task", "get", "register_task"]
