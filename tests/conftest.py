"""Shared test set-up: a private Minari directory for the whole session (datasets the tests
generate never touch ~/.minari), deterministic torch, and quiet warnings."""
import os
import sys
import warnings

import pytest
import torch
from absl import logging as absl_logging

warnings.filterwarnings("ignore", message=".*Adroit.*")
# as the front door does: mujoco picks its offscreen GL backend once, when it is first imported
os.environ.setdefault("MUJOCO_GL", "egl")
# absl (imported by rliable) binds its log handler to the sys.stderr of its import, pytest's capture
# stream, and closes that stream when Hydra's logging set-up (the front door run in-process) closes
# every handler: pytest then fails. The real stderr is one absl never closes.
absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session", autouse=True)
def minari_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_flush_denormal(True)
    yield path
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old
