"""Before any job starts: every task's dataset is here (or the task can generate it), every
environment can be created and stepped, and every image encoder fits its task's images; otherwise
one line per problem and how to fix it."""
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


def conv_sizes(image: tuple[int, int, int], layers: int) -> tuple[int, int]:
    """(H, W) after `layers` 3x3 convs without padding, the first of stride 2, the others 1, as
    `algorithms.common.encoder.PixelEncoder` stacks them."""
    _, h, w = image
    shrink = lambda n: (n - 3) // 2 + 1 - 2 * (layers - 1)  # noqa: E731
    return shrink(h), shrink(w)


def check_encoders(jobs) -> None:
    """ConfigError (one line) for a job whose conv encoder leaves no pixels of its task's images,
    or whose random shift is as large as the images."""
    from harness.schema import ConfigError

    for job in jobs:
        image = tasks.get(job.task.name).image_shape
        hp = job.algorithm.hparams
        if image is None or "encoder_channels" not in hp:
            continue  # vector observations: the encoder is the identity
        where = f"algorithm '{job.algorithm.name}' on {job.task.name}"
        layers = len(hp["encoder_channels"])
        if min(conv_sizes(image, layers)) < 1:
            fit = next((n for n in range(layers, 0, -1) if min(conv_sizes(image, n)) >= 1), 0)
            raise ConfigError(f"{where}: algorithm.hparams.encoder_channels has {layers} conv layers, which leave no "
                              f"pixels of its {image[1]}x{image[2]} images; use at most {fit}")
        if hp.get("augment_pad", 0) >= min(image[1:]):
            raise ConfigError(f"{where}: algorithm.hparams.augment_pad must be below the images' {image[1]}x{image[2]} "
                              f"pixels, got {hp['augment_pad']}")


def preflight(jobs) -> None:
    """ConfigError for an encoder that does not fit its images; DatasetError listing everything
    missing: one line, or a header and one line per task."""
    check_encoders(jobs)
    found = problems(j.task.name for j in jobs)
    if len(found) == 1:
        raise DatasetError(f"before any job starts: {found[0]}")
    if found:
        raise DatasetError(f"{len(found)} problem(s) before any job starts:\n  " + "\n  ".join(found))
