"""Every method's yaml resolves for every domain that has a task, and builds: the per-domain
blocks (e.g. `visual`, read only when a visual task runs) are checked by composing the real
config and constructing the method on that task's observation layout."""
import numpy as np
import pytest
import torch

import algorithms
import tasks
from harness.config import CONF_DIR, expand, load_group

VISUAL = "visual-pick-place"


def compose_jobs(*overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return expand(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize("name", [n for n in algorithms.available() if algorithms.get(n).takes_images])
def test_visual_block_resolves_and_builds(name):
    (job,) = compose_jobs("suite=full", f"algorithm={name}", f"task={VISUAL}", "seed=0")  # the task's own protocol
    visual = load_group("algorithm", name).domains.visual
    assert job.task.domain == "visual"
    for key, value in (visual.get("hparams") or {}).items():  # the visual block's values, not the defaults, reach the job
        assert job.algorithm.hparams[key] == value, key
    for part in ("reward", "replay"):
        for key, value in (visual.get(part) or {}).items():
            assert getattr(getattr(job.algorithm, part), key) == value, f"{part}.{key}"
    task = tasks.get(VISUAL)
    torch.manual_seed(0)
    algo = algorithms.make(name, algorithms.ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim),
                           algorithms.ActionSpec(task.act_dim), job.algorithm.hparams, "cpu")
    rows = np.zeros((1, 2, task.obs_dim), np.uint8)  # one seed, two observations
    assert algo.act(rows, deterministic=True).shape == (1, 2, task.act_dim)
