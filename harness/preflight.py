"""Before any job starts: every task's dataset is here (or the task can generate it), every
environment can be created and stepped, and every image encoder fits its task's images; otherwise
one line per problem and how to fix it."""
from __future__ import annotations

import os
import warnings

import tasks
from tasks.base import DatasetError


def problems(task_names) -> list[str]:
    from tasks.sources import minari_path_problem

    out = []
    for name in dict.fromkeys(task_names):
        task = tasks.get(name)
        minari = [s for s in task.sources() if "Minari" in s.where or s.name in ("minari", "generated")]
        empty = (minari_path_problem() or "") if not os.environ.get("MINARI_DATASETS_PATH", "x").strip() else ""
        if minari and empty and task.active_source() in (None, *(s.name for s in minari)):
            out.append(f"{name}: {empty}")  # Minari itself would read an empty path as no folder at all
        elif not task.dataset_present() and not hasattr(task, "generate"):
            out.append(f"{name}: dataset missing ({task.source}). To get it: {task.how_to_get()}")
        elif not task.dataset_present() and (problem := getattr(task, "save_problem", lambda: None)()):
            out.append(f"{name}: its dataset is generated on first use, but {problem}")
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
            continue
        if problem := space_problem(task, env):
            out.append(f"{name}: {problem}")
    return out


def space_problem(task, env) -> str | None:
    """Why the env's spaces do not match what the task declares (and its data is checked
    against when it loads: `Task.load_dataset`), e.g. a changed env version; None when they do."""
    import numpy as np

    act = env.action_space
    if getattr(act, "shape", None) != (task.act_dim,) or not (np.all(act.low == -1) and np.all(act.high == 1)):
        return (f"the environment's action space is {act}, the task declares Box(-1, 1, ({task.act_dim},)); "
                f"the installed env does not match the task (check gymnasium-robotics' version)")
    obs = getattr(env.observation_space, "shape", None)
    if task.image_shape is None and obs != (task.obs_dim,):
        return (f"the environment's observations have shape {obs}, the task declares ({task.obs_dim},); "
                f"the installed env does not match the task (check gymnasium-robotics' version)")
    return None


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


def available_memory(device: str) -> tuple[int, str]:
    """(bytes free, what) where a job's replay lives: the GPU's free memory, else this host's
    available RAM (MemAvailable)."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.partition(":")[2] or 0)
        return torch.cuda.mem_get_info(index)[0], f"free memory of GPU {index}"
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kb * 1024, "available memory of this machine"
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available memory of this machine"


def row_bytes(task) -> int:
    """One replay row (`harness.replay.Replay`): obs and next_obs in the dataset's dtype, float32
    action, reward, done and Monte-Carlo return, and the episode-end flag."""
    obs = task.obs_dim * (1 if task.image_shape is not None else 4)  # image rows are uint8
    return 2 * obs + 4 * task.act_dim + 3 * 4 + 1


def replay_bytes(job) -> int:
    """The online replay a job allocates when it starts, for every seed trained in its process."""
    seeds = len(job.seed_group) if job.seed_group else 1
    return seeds * job.protocol.online_steps * row_bytes(tasks.get(job.task.name))


def offline_bytes(job) -> tuple[int, str]:
    """(bytes, what) of a sharded dataset's offline rows in a job's replay: the one shard held
    (`protocol.shard_every` > 0, `harness.shards`), or every shard (0). (0, "") for a dataset
    loaded whole, as the estimate has always left it out, and where the task does not know its size."""
    task = tasks.get(job.task.name)
    rows = task.data_rows() if task.shards else None
    if not rows:
        return 0, ""
    files = 1 if job.protocol.shard_every else task.shards
    what = f"one of its {task.shards} shards" if files == 1 else f"all {task.shards} shards, protocol.shard_every=0"
    return files * rows * row_bytes(task), what


def network_bytes(job) -> tuple[int, str | None]:
    """A lower bound of the memory a job's networks take when built, and the hidden-size option
    that dominates it: each `*_hidden` list as one MLP from the observation to the action (a
    method's ensembles and encoders only add to it), in float32 with its gradients and Adam's two
    moments, for every seed trained in its process. A lower bound never refuses a job that fits."""
    task = tasks.get(job.task.name)
    seeds = len(job.seed_group) if job.seed_group else 1
    sizes = {}
    for name, value in job.algorithm.hparams.items():
        if name.endswith("_hidden") and isinstance(value, (list, tuple)) and value:
            widths = [task.obs_dim, *value, task.act_dim]
            sizes[name] = sum(a * b for a, b in zip(widths, widths[1:]))
    if not sizes:
        return 0, None
    return seeds * 4 * 4 * sum(sizes.values()), max(sizes, key=sizes.get)


def check_replay_memory(jobs, memory_gb: float | None = None) -> None:
    """ConfigError (one line, naming protocol.online_steps, protocol.shard_every for a sharded
    dataset loaded whole, or the hidden sizes) for a job whose online replay (and shard,
    `offline_bytes`) or networks (`network_bytes`) cannot fit where they will live, before anything
    is allocated. `memory_gb`: a SLURM job's memory, instead of this machine's."""
    from harness.schema import ConfigError

    for job in jobs:
        online, (offline, held) = replay_bytes(job), offline_bytes(job)
        if memory_gb is not None:
            free, what = int(memory_gb * 2**30), f"launcher.mem_gb={memory_gb:g} of its SLURM job"
        else:
            free, what = available_memory(job.device)
        seeds = len(job.seed_group) if job.seed_group else 1
        if online + offline > free:
            beside = f" beside ~{offline / 2**30:.1f} GiB of offline data ({held})" if offline else ""
            whole = ", or set protocol.shard_every=1000 (one shard at a time)" if "shard_every=0" in held else ""
            raise ConfigError(f"protocol.online_steps={job.protocol.online_steps:,} needs an online replay of "
                              f"~{online / 2**30:.1f} GiB{beside} for {job.task.name} ({seeds} seed(s) per process), "
                              f"more than the {free / 2**30:.1f} GiB {what}; lower protocol.online_steps{whole}")
        weights, widest = network_bytes(job)
        if weights > free:
            raise ConfigError(f"algorithm.hparams.{widest}={list(job.algorithm.hparams[widest])} needs at least "
                              f"~{weights / 2**30:.1f} GiB of {job.algorithm.name}'s network weights, gradients and "
                              f"optimizer state ({seeds} seed(s) per process), more than the {free / 2**30:.1f} GiB "
                              f"{what}; use narrower layers")


def preflight(jobs) -> None:
    """ConfigError for an encoder that does not fit its images; DatasetError listing everything
    missing: one line, or a header and one line per task."""
    check_encoders(jobs)
    found = problems(j.task.name for j in jobs)
    if len(found) == 1:
        raise DatasetError(f"before any job starts: {found[0]}")
    if found:
        raise DatasetError(f"{len(found)} problem(s) before any job starts:\n  " + "\n  ".join(found))
