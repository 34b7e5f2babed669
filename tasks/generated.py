"""Tasks whose datasets the harness generates itself, saved as Minari datasets atomically."""
from __future__ import annotations

import os
import shutil
import tempfile
from abc import abstractmethod

from tasks.base import Dataset, DatasetError, Source, Task
from tasks.sources import minari_about, minari_path_problem, minari_present, minari_problem, minari_root


def save_minari(dataset_id: str, buffers: list, **create_kwargs) -> None:
    """`minari.create_dataset_from_buffers` into a private folder, then one rename into
    MINARI_DATASETS_PATH: readers never see half a dataset, and of two concurrent generators
    of the same (deterministic) data the first rename wins. Data generated but not moved into
    place (the folder changed meanwhile) is kept, and the error says where."""
    import minari

    if problem := minari_path_problem():
        raise DatasetError(problem)
    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = tmp_root
    keep = False
    try:
        minari.create_dataset_from_buffers(dataset_id, buffers, **create_kwargs)
        final = root / dataset_id
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(os.path.join(tmp_root, dataset_id), final)
        except OSError as exc:
            if not minari_present(dataset_id):  # not a concurrent generator winning the race
                keep = True
                raise DatasetError(f"generated '{dataset_id}' but could not move it to {final} ({exc.strerror or exc}); "
                                   f"it is kept in {tmp_root}/{dataset_id}: move it there by hand") from None
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
        if not keep:
            shutil.rmtree(tmp_root, ignore_errors=True)


class GeneratedTask(Task):
    """A task with a `dataset_id` whose data `generate()` creates on first use."""

    dataset_id: str

    @abstractmethod
    def generate(self):
        """Collect the dataset and save it with `save_minari`."""

    @abstractmethod
    def read_generated(self) -> Dataset:
        """The generated Minari dataset as flat transitions."""

    def sources(self) -> list[Source]:
        return [Source("generated", f"Minari dataset '{self.dataset_id}'", lambda: minari_present(self.dataset_id),
                       self.read_generated, lambda: minari_problem(self.dataset_id), lambda: minari_about(self.dataset_id))]

    def save_problem(self) -> str | None:
        """Why this task's data could not be saved once generated (None: it can), asked before
        generating (minutes of work)."""
        return minari_path_problem()

    def prepare(self) -> None:
        if not self.dataset_present():
            if problem := self.save_problem():
                raise DatasetError(f"task '{self.name}' needs its dataset generated, but {problem}")
            self.generate()
