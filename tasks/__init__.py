"""Benchmark tasks: datasets, environments and score normalization, found by name."""
from tasks import pointmaze  # noqa: F401  (registers the PointMaze mini tasks)
from tasks import fetch  # noqa: F401  (registers visual-pick-place)
from tasks.base import TASKS, Dataset, DatasetError, Task, get, register_task

__all__ = ["TASKS", "Dataset", "DatasetError", "Task", "get", "register_task"]
