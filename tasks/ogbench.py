"""OGBench manipulation (Park et al., ICLR 2025; github.com/seohongpark/ogbench), single-task versions.

Tasks `<env>-play-singletask[-task<k>]` = OGBench's `<env>-play-singletask[-task<k>]-v0`, for env
in cube-single, cube-double, scene, puzzle-3x3 and visual-cube-single (the id without a task
number is the env's default task: task2 for cube and scene, task4 for puzzle-3x3). The
`*-mini` tasks are the default tasks on a small generated dataset (MINI_EPISODES episodes of the
published protocol) for CPU studies; their domain `ogbench_mini` selects small networks (the
visual tasks' domain `ogbench_visual` the image encoder).
- Env: OGBench's own single-task env (`gymnasium.make(<env>-singletask-task<k>-v0)`): fixed
  start (+-1 cm noise) and goal; reward = (number of satisfied sub-goals) - (number of
  sub-goals), i.e. 0 at success and -1 .. -n otherwise; the episode ends at success;
  horizon = the env's `max_episode_steps` (200 / 500 / 750 / 500 / 200). OGBench computes
  reward, success and termination from the state *before* the action (`success_timing='pre'`).
- Observation: the env's state vector as float32 (joint positions and velocities, effector
  pose, gripper, then per object its position/orientation, button states, ...); visual: the
  64x64 RGB image as a uint8 row (channel-first, no proprioception; `algorithms.base.ObsSpec`).
- Actions: OGBench's own, in [-1, 1]^5 (effector x, y, z, yaw, gripper). Dataset actions are
  clipped to +-(1 - 1e-5), as FQL's loader does (the rule of every source, `tasks.base.ACTION_CLIP`).
- Score: 100 x success (OGBench's metric: success at the episode's last step, which is also
  "ever succeeded" since episodes end at success).
- Data, first present wins: the official files `<dataset>.npz` (e.g. `cube-single-play-v0.npz`)
  in `$O2O_DATA_DIR/ogbench/`, then in OGBench's own folder `~/.ogbench/data/`; else a local
  regeneration in `$O2O_DATA_DIR/ogbench/generated/` by the package's own oracles with the
  published protocol (`data_gen_scripts/generate_manipspace.py` and `commands.sh` of the
  repository: 1,000 training + 100 validation episodes of 1,001 steps, 'play': the plan oracle
  with noise 0.1 and smoothing 0.5), written atomically once in OGBench's layout (the same
  keys, so `ogbench.make_env_and_datasets(..., dataset_path=...)` reads it too) plus a
  `metadata` entry (generator, oracle, noise, episodes, seed, ogbench version). The published
  script seeds nothing; here numpy's global generator (used by the oracles) and the env are
  seeded, so a regeneration is deterministic but not byte-identical to the official files.
  Rewards and terminals are OGBench's single-task relabeling (`ogbench.utils.load_dataset` with
  `add_info`, then `ogbench.relabel_utils.relabel_dataset`): terminal = mask 0 (all sub-goals
  satisfied), trajectory ends (1,000 transitions) = timeout.
Rendering (visual): MUJOCO_GL defaults to "egl" (set when an env is first made, unless the user set it). On a CPU (Mesa llvmpipe) the visual env renders
~2 frames/s (its 4096x4096 shadow map), so regenerating visual data is GPU-machine work.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np

from tasks.base import Dataset, DatasetError, Source, Task, register_task
from tasks.sources import data_dir, data_dir_problem

MINI_EPISODES = 10  # training episodes of the *-mini datasets (10k transitions; +1 validation episode)
# OGBench's action space is built from float64 bounds: gymnasium warns on every access
warnings.filterwarnings("ignore", message=r".*Box (low|high)'s precision lowered")


@dataclass(frozen=True)
class EnvFacts:
    """What the harness needs before building an env (checked against the env in the tests)."""

    obs_dim: int
    horizon: int  # the env's max_episode_steps
    subgoals: int  # reward of a step with no sub-goal satisfied is -subgoals
    default_task: int


ENVS = {
    "cube-single": EnvFacts(obs_dim=28, horizon=200, subgoals=1, default_task=2),
    "cube-double": EnvFacts(obs_dim=37, horizon=500, subgoals=2, default_task=2),
    "scene": EnvFacts(obs_dim=40, horizon=750, subgoals=5, default_task=2),  # cube, 2 buttons, drawer, window
    "puzzle-3x3": EnvFacts(obs_dim=55, horizon=500, subgoals=9, default_task=4),  # 9 buttons
    "visual-cube-single": EnvFacts(obs_dim=3 * 64 * 64, horizon=200, subgoals=1, default_task=2),
}


@dataclass(frozen=True)
class Recipe:
    """The published data protocol (generate_manipspace.py's flags); `episodes` and
    `episode_steps` shrink it for tests and CPU studies."""

    dataset_type: str = "play"  # play: plan oracle (non-Markovian); noisy: Markov oracle + random actions
    episodes: int = 1000  # training episodes; episodes // 10 more go to the -val file, as OGBench
    episode_steps: int = 1001  # rows per episode (the last one only ends the trajectory)
    noise: float = 0.1  # play: plan noise; noisy: maximum per-episode Gaussian action noise
    noise_smoothing: float = 0.5  # play: temporal smoothing (Gaussian filter sigma) of the plan noise
    min_norm: float = 0.4  # noisy: Markov oracle's minimum action norm
    p_random_action: float = 0.0  # noisy: probability of a uniform random action
    seed: int = 0

    def __post_init__(self):
        if self.dataset_type not in ("play", "noisy"):
            raise ValueError(f"dataset_type must be 'play' or 'noisy', got '{self.dataset_type}'")
        if self.episodes < 1 or self.episode_steps < 2:
            raise ValueError(f"episodes must be >= 1 and episode_steps >= 2, got {self.episodes} and {self.episode_steps}")


def _ogbench():
    os.environ.setdefault("MUJOCO_GL", "egl")  # before OGBench imports mujoco; called before every env is made
    import ogbench  # noqa: F401  (registers the envs with gymnasium)
    import ogbench.manipspace  # noqa: F401

    return ogbench


def official_dirs() -> list[Path]:
    """Where the official files are looked for, in order."""
    from ogbench.utils import DEFAULT_DATASET_DIR

    return [data_dir() / "ogbench", Path(DEFAULT_DATASET_DIR).expanduser()]


class SingleTaskEnv(gym.Wrapper):
    """OGBench's single-task env with float32 (or uint8 row) observations, one seeded action
    space (OGBench builds a fresh one on every access) and `info["success"]` on every step."""

    def __init__(self, env: gym.Env, obs_dim: int, pixels: bool):
        super().__init__(env)
        self.pixels = pixels
        self.observation_space = (gym.spaces.Box(0, 255, (obs_dim,), np.uint8) if pixels
                                  else gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)

    def _obs(self, ob: np.ndarray) -> np.ndarray:
        return pixel_rows(ob) if self.pixels else np.asarray(ob, np.float32)

    def reset(self, *, seed=None, options=None):
        ob, _ = self.env.reset(seed=seed, options=options)
        return self._obs(ob), {"success": False}

    def step(self, action):
        ob, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float64))
        return self._obs(ob), float(reward), bool(terminated), bool(truncated), {"success": bool(info["success"])}

    def close(self):
        close_env(self.env)


def close_env(env: gym.Env) -> None:
    """OGBench's envs never free their renderer; freed here, while the GL context still exists
    (at interpreter exit it raises EGL errors)."""
    u = env.unwrapped
    if getattr(u, "_renderer", None) is not None:
        u._renderer.close()
        u._renderer = None
    env.close()


def pixel_rows(images_hwc: np.ndarray) -> np.ndarray:
    """(..., H, W, C) uint8 images -> (..., C*H*W) channel-first rows (no proprioception)."""
    from tasks.fetch import pack_obs

    images = np.asarray(images_hwc, np.uint8)
    return pack_obs(images, np.zeros((*images.shape[:-3], 0), np.float32))


# -- dataset generation (OGBench's generate_manipspace.py, seeded) ---------------------------------
def make_oracles(env: gym.Env, env_name: str, recipe: Recipe) -> dict:
    """The oracles generate_manipspace.py builds for this env and dataset type."""
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    markov = recipe.dataset_type == "noisy"
    plan = dict(noise=recipe.noise, noise_smoothing=recipe.noise_smoothing)
    m = dict(min_norm=recipe.min_norm)
    if "cube" in env_name:
        return {"cube": CubeMarkovOracle(env=env, **m) if markov else CubePlanOracle(env=env, **plan)}
    if "scene" in env_name:
        if markov:
            return {"cube": CubeMarkovOracle(env=env, max_step=100, **m), "button": ButtonMarkovOracle(env=env, **m),
                    "drawer": DrawerMarkovOracle(env=env, **m), "window": WindowMarkovOracle(env=env, **m)}
        return {"cube": CubePlanOracle(env=env, **plan), "button": ButtonPlanOracle(env=env, **plan),
                "drawer": DrawerPlanOracle(env=env, **plan), "window": WindowPlanOracle(env=env, **plan)}
    if "puzzle" in env_name:
        if markov:
            return {"button": ButtonMarkovOracle(env=env, gripper_always_closed=True, **m)}
        return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **plan)}
    raise ValueError(f"no oracle for env '{env_name}'")


def _p_stack(env_name: str) -> float:
    """Per-episode probability of stacking the target cube (generate_manipspace.py)."""
    if "single" in env_name:
        return 0.0
    if "double" in env_name:
        return np.random.uniform(0.0, 0.25)
    if "triple" in env_name:
        return np.random.uniform(0.05, 0.35)
    if "quadruple" in env_name:
        return np.random.uniform(0.1, 0.5)
    if "octuple" in env_name:
        return np.random.uniform(0.0, 0.35)
    return 0.5


def _healthy_scene(ep_qpos: np.ndarray) -> bool:
    """Scene's health check: the cube stays visible unless it is in the drawer."""
    block = ep_qpos[:, 14:17]
    if (block[:, 1] >= 0.29).any():
        return False
    return not ((block[:, 1] <= -0.3) & ((block[:, 2] < 0.06) | (block[:, 2] > 0.08))).any()


def collect(env_name: str, recipe: Recipe, progress: bool = True) -> tuple[dict, dict]:
    """generate_manipspace.py's loop for `<env_name>-v0` in data-collection mode: training and
    validation arrays in OGBench's layout. numpy's global generator (the oracles draw from it)
    is seeded with recipe.seed and restored afterwards; the env is seeded on its first reset."""
    from tqdm import trange

    _ogbench()
    env = gym.make(f"{env_name}-v0", terminate_at_goal=False, mode="data_collection",
                   max_episode_steps=recipe.episode_steps, disable_env_checker=True)
    random_actions = gym.spaces.Box(-1.0, 1.0, (5,), np.float32, seed=recipe.seed)
    saved_rng = np.random.get_state()
    np.random.seed(recipe.seed)
    try:
        agents = make_oracles(env, env_name, recipe)
        has_buttons = hasattr(env.unwrapped, "_cur_button_states")
        keys = ["observations", "actions", "terminals", "qpos", "qvel"] + (["button_states"] if has_buttons else [])
        episodes = []
        total = recipe.episodes + recipe.episodes // 10
        first = True
        for _ in trange(total, desc=f"{env_name} {recipe.dataset_type} data", unit="ep", disable=not progress):
            while True:  # scene: redo the rare episodes that fail the health check
                ob, info = env.reset(seed=recipe.seed if first else None)
                first = False
                p_stack = _p_stack(env_name)
                xi = np.random.uniform(0, recipe.noise) if recipe.dataset_type == "noisy" else 0.0
                agent = agents[info["privileged/target_task"]]
                agent.reset(ob, info)
                ep = {k: [] for k in keys}
                done = False
                while not done:
                    if np.random.rand() < recipe.p_random_action:
                        action = random_actions.sample()
                    else:
                        action = np.array(agent.select_action(ob, info))
                        if recipe.dataset_type == "noisy":
                            action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
                    action = np.clip(action, -1, 1)
                    next_ob, _, terminated, truncated, info = env.step(action)
                    done = terminated or truncated
                    if agent.done:  # a new target once the current one is done
                        agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
                        agent = agents[agent_info["privileged/target_task"]]
                        agent.reset(agent_ob, agent_info)
                    ep["observations"].append(ob)
                    ep["actions"].append(action)
                    ep["terminals"].append(done)
                    ep["qpos"].append(info["prev_qpos"])
                    ep["qvel"].append(info["prev_qvel"])
                    if has_buttons:
                        ep["button_states"].append(info["prev_button_states"])
                    ob = next_ob
                if "scene" not in env_name or _healthy_scene(np.array(ep["qpos"])):
                    break
            episodes.append(ep)
    finally:
        np.random.set_state(saved_rng)
        close_env(env)

    pixels = np.asarray(episodes[0]["observations"][0]).dtype == np.uint8

    def stack(eps: list[dict]) -> dict:
        out = {}
        for k in keys:
            dtype = (np.uint8 if k == "observations" and pixels else bool if k == "terminals"
                     else np.int64 if k == "button_states" else np.float32)
            rows = [row for ep in eps for row in ep[k]]
            out[k] = np.array(rows, dtype=dtype) if rows else np.zeros((0, *np.shape(episodes[0][k][0])), dtype)
        return out

    return stack(episodes[:recipe.episodes]), stack(episodes[recipe.episodes:])


def write_npz(path: Path, arrays: dict, metadata: dict | None = None) -> None:
    """np.savez_compressed into a private file next to `path`, then one rename: readers never
    see half a file, and of two concurrent writers of the same (deterministic) data one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    extra = {} if metadata is None else {"metadata": np.array(json.dumps(metadata, sort_keys=True))}
    try:
        np.savez_compressed(tmp, **arrays, **extra)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_metadata(path: Path) -> dict:
    """The `metadata` entry of a generated file ({} for official files)."""
    with np.load(path) as f:
        return json.loads(str(f["metadata"])) if "metadata" in f.files else {}


def _about(path: Path) -> dict:
    meta = read_metadata(path)
    return ({"generator": meta.get("generator"), "version": f"ogbench {meta.get('ogbench_version')}"} if meta
            else {"generator": "OGBench (official file)", "version": path.name})


# -- the task ---------------------------------------------------------------------------------------
class OGBenchTask(Task):
    act_dim = 5
    ref_min_score, ref_max_score = 0.0, 1.0
    goal_reaching = True  # success: every sub-goal satisfied

    def __init__(self, env_name: str, task_id: int | None = None, recipe: Recipe | None = None,
                 official: bool = True, name: str | None = None, domain: str = "ogbench"):
        facts = ENVS[env_name]
        self.env_name, self.facts, self.recipe, self.official = env_name, facts, recipe or Recipe(), official
        self.task_id = task_id or facts.default_task
        suffix = "" if task_id is None else f"-task{task_id}"
        self.env_id = f"{env_name}-singletask{suffix}-v0"  # OGBench's id (no suffix: the default task)
        self.dataset_name = f"{env_name}-{self.recipe.dataset_type}-v0"  # OGBench's dataset file stem
        self.name = name or f"{env_name}-{self.recipe.dataset_type}-singletask{suffix}"
        self.domain = domain
        self.obs_dim, self.horizon = facts.obs_dim, facts.horizon
        self.fail_reward = -float(facts.subgoals)
        self.pixels = env_name.startswith("visual-")
        if self.pixels:
            self.image_shape, self.vector_dim = (3, 64, 64), 0
        r = self.recipe
        generated = (f"generated by OGBench's {r.dataset_type} oracle ({r.episodes} episodes x {r.episode_steps} "
                     f"steps, seed {r.seed})")
        self.source = f"OGBench {self.dataset_name}.npz; else {generated}" if official else generated

    # -- environment -------------------------------------------------------------------------
    def make_env(self, seed: int) -> gym.Env:
        _ogbench()
        env = SingleTaskEnv(gym.make(self.env_id, disable_env_checker=True), self.obs_dim, self.pixels)
        env.action_space.seed(seed)
        return env

    def episode_score(self, episode_return: float, last_info: dict) -> float:
        return 100.0 * float(bool(last_info.get("success", False)))

    # -- dataset -----------------------------------------------------------------------------
    def generated_path(self) -> Path:
        r = self.recipe
        return (data_dir() / "ogbench" / "generated"
                / f"{self.dataset_name}-{r.episodes}ep-{r.episode_steps}steps-seed{r.seed}.npz")

    def sources(self) -> list[Source]:
        """OGBench's official file (if this task reads official data), else the generated one."""
        paths = [d / f"{self.dataset_name}.npz" for d in official_dirs()] if self.official else []
        return [Source(name, str(path), path.exists, lambda path=path: self.load_file(path),
                       about=lambda path=path: _about(path))
                for name, path in [*(("official", p) for p in paths), ("generated", self.generated_path())]]

    def dataset_path(self) -> Path | None:
        """The file the task reads: an official one if present, else the generated one if present."""
        source = self._first_present()
        return Path(source.where) if source else None

    def save_problem(self) -> str | None:
        """Why the regenerated file could not be saved (None: it can), asked before generating."""
        return data_dir_problem(self.generated_path().parent)

    def prepare(self) -> None:
        if not self.dataset_present():
            if problem := self.save_problem():
                raise DatasetError(f"task '{self.name}' needs its dataset generated, but {problem}")
            self.generate()

    def how_to_get(self) -> str:
        where = " or ".join(str(d) for d in official_dirs())
        official = f"put OGBench's {self.dataset_name}.npz in {where}, or " if self.official else ""
        return f"{official}`python -m tasks generate {self.name}` (done on first use)"

    def generate(self, progress: bool = True) -> Path:
        """Regenerate the data with OGBench's oracles (training and -val files). Returns the path."""
        from importlib.metadata import version

        path = self.generated_path()
        if path.exists():
            return path
        t0 = time.monotonic()
        train, val = collect(self.env_name, self.recipe, progress)
        seconds = time.monotonic() - t0
        r = self.recipe
        oracle = {"play": "PlanOracle", "noisy": "MarkovOracle"}[r.dataset_type]
        metadata = {"generator": "tasks/ogbench.py (OGBench data_gen_scripts/generate_manipspace.py, seeded)",
                    "env": f"{self.env_name}-v0", "dataset": self.dataset_name, "oracle": oracle,
                    "recipe": asdict(r), "ogbench_version": version("ogbench"),
                    "train_rows": int(len(train["actions"])), "val_rows": int(len(val["actions"])),
                    "collect_seconds": round(seconds, 1)}
        if len(val["actions"]):
            write_npz(path.with_name(path.name.replace(".npz", "-val.npz")), val, {**metadata, "split": "val"})
        write_npz(path, train, {**metadata, "split": "train"})  # last: its presence means complete
        return path

    def load_file(self, path: Path) -> Dataset:
        """An OGBench-layout file -> transitions with this task's single-task rewards, as
        `ogbench.make_env_and_datasets('<...>-singletask-...')` loads it."""
        _ogbench()
        from ogbench.relabel_utils import relabel_dataset
        from ogbench.utils import load_dataset

        try:
            ds = load_dataset(str(path), ob_dtype=np.uint8 if self.pixels else np.float32, compact_dataset=False,
                              add_info=True)
        except Exception as exc:  # missing keys, truncated or not an npz
            raise DatasetError(f"{path}: could not be read as an OGBench dataset ({type(exc).__name__}: {exc}); "
                               f"delete it and regenerate (`python -m tasks generate {self.name}`) or re-download it") from exc
        if "qpos" not in ds or ("puzzle" in self.env_name or "scene" in self.env_name) and "button_states" not in ds:
            raise DatasetError(f"{path}: has no 'qpos'/'button_states' arrays; single-task rewards need them "
                               f"(official OGBench files have them)")
        env = gym.make(self.env_id, disable_env_checker=True)
        try:
            relabel_dataset(self.env_id, env, ds)
        finally:
            env.close()
        terminal = ds["masks"] == 0.0
        obs, next_obs = ds["observations"], ds["next_observations"]
        if self.pixels:
            obs, next_obs = pixel_rows(obs), pixel_rows(next_obs)
        return Dataset(obs=obs, action=np.asarray(ds["actions"], np.float32),
                       reward=ds["rewards"].astype(np.float32), next_obs=next_obs, terminal=terminal,
                       timeout=ds["terminals"].astype(bool) & ~terminal)


def _register_all() -> None:
    for env_name in ENVS:
        domain = "ogbench_visual" if env_name.startswith("visual-") else "ogbench"
        register_task(OGBenchTask(env_name, domain=domain))
        for k in range(1, 6):
            register_task(OGBenchTask(env_name, task_id=k, domain=domain))
    for env_name in ("cube-single", "cube-double", "scene", "puzzle-3x3"):
        register_task(OGBenchTask(env_name, recipe=Recipe(episodes=MINI_EPISODES), official=False,
                                  name=f"{env_name}-play-singletask-mini", domain="ogbench_mini"))


_register_all()


def with_recipe(task: OGBenchTask, name: str, **changes) -> OGBenchTask:
    """A copy of `task` (unregistered) with another data recipe, e.g. fewer episodes for tests."""
    return OGBenchTask(task.env_name, None if task.env_id.endswith("singletask-v0") else task.task_id,
                       replace(task.recipe, **changes), official=False, name=name, domain=task.domain)
