"""From the command line and the Hydra tree to typed objects: the command line is parsed once
(`CommandLine`), and `read_config` turns the composed tree into a `RunConfig` (the front door's
options, the suite, the launcher, the cost table and the `JobGroup`s of its jobs), validated
before any work starts. Nothing downstream reads the DictConfig.

Every value of a job (method hyperparameters, buffer, reward transform, protocol) comes from one
order of sources, later ones winning (`job_layers`): the dataclass defaults < the task's yaml <
the suite's `protocol:` < the method's yaml < its `domains.<domain>` block < the suite's
`algorithm_overrides:` < the command line."""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import algorithms
import tasks
from harness.compile import MODES as COMPILE_MODES
from harness.job import (DEFAULT_COMPILE, DEFAULT_DEVICE, DEFAULT_THREADS, MAX_SEED, Job, JobGroup, Protocol,
                         ReplayConfig, ResolvedAlgorithm, RewardTransform, TaskRef, group_jobs, yaml_value)
from harness.schema import ConfigError, check_range, check_values, coerce, typed

CONF_DIR = Path(__file__).parent / "conf"
GROUPS = ("algorithm", "task", "suite", "launcher")
ALGORITHM_KEYS = ("name", "replay", "reward", "hparams", "protocol")  # protocol: the method's own (e.g. RLPD's UTD)


# -- the front door's own options, the suite, the launcher, the cost table ---------------------
@dataclass(frozen=True)
class RunOptions:
    """The front door's own options in conf/config.yaml."""

    seed: int | None = None  # one seed instead of the suite's seeds
    runs_dir: str = "runs"
    device: str = DEFAULT_DEVICE
    dry_run: bool = False
    progress: bool = True
    report: bool = True
    retries: int = 0
    threads: int = DEFAULT_THREADS  # torch threads per job (part of the job id)
    logger: tuple[str, ...] = ("csv",)  # csv first, then tensorboard / wandb
    compile: str = DEFAULT_COMPILE  # compiled / CUDA-graph updates (harness.compile): auto | on | off

    def __post_init__(self):
        try:
            threads = coerce(self.threads, int, "threads")
        except ConfigError:
            threads = 0
        if not 1 <= threads <= 4096:
            raise ConfigError(f"threads must be a whole number from 1 to 4,096 (torch threads per job), got {self.threads!r}")
        from harness.trackers import logger_names

        object.__setattr__(self, "logger", tuple(logger_names(self.logger)))
        typed(self, "")
        if self.seed is not None:
            check_range("seed", self.seed, 0, MAX_SEED)
        check_range("retries", self.retries, 0, 100)
        if not self.runs_dir.strip():
            raise ConfigError("runs_dir must be a folder path, got ''")
        object.__setattr__(self, "runs_dir", str(Path(self.runs_dir).expanduser()))  # runs_dir='~/x': the home's x
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")


@dataclass(frozen=True)
class LocalLauncher:
    name: str = "local"
    workers: int = 0  # worker processes (0: as many as the cores hold jobs of `threads` threads)

    def __post_init__(self):
        typed(self, "launcher")
        check_range("launcher.workers", self.workers, 0, 4096)


@dataclass(frozen=True)
class SlurmLauncher:
    """conf/launcher/slurm.yaml: its numbers are checked here, its cluster names by sbatch."""

    name: str = "slurm"
    partition: Any = None  # cluster names: sbatch judges them
    account: Any = None
    qos: Any = None
    job_name: Any = "o2o-bench"
    timeout_min: int = 240
    cpus_per_task: int = 1
    gpus_per_node: int | None = 1
    mem_gb: float | None = 16
    array_parallelism: int = 32
    signal_delay_s: int = 120
    grace_s: int = 60
    max_num_timeout: int = 20
    additional_parameters: dict = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    wait: bool = True
    poll_s: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "setup", tuple(self.setup or ()))
        object.__setattr__(self, "additional_parameters", dict(self.additional_parameters or {}))
        typed(self, "launcher")
        check_range("launcher.timeout_min", self.timeout_min, 0, low_open=True)
        for name in ("array_parallelism", "signal_delay_s", "grace_s", "max_num_timeout"):
            check_range(f"launcher.{name}", getattr(self, name), 0)
        check_range("launcher.poll_s", self.poll_s, 0, 3600, low_open=True)


LAUNCHERS = {"local": LocalLauncher, "slurm": SlurmLauncher}


def refuse_repeats(where: str, values: list) -> None:
    """A suite's list naming one method, task or seed twice would train it twice into one run
    directory (and count it twice): refused."""
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ConfigError(f"{where} lists {repeated[0]!r} more than once, got {list(values)}; list each once")


@dataclass(frozen=True)
class Suite:
    name: str
    algorithms: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    algorithm_seeds: dict[str, list[int]] = field(default_factory=dict)  # some methods' seeds instead of `seeds`
    # seeds of one (method, task) trained together in one process, as one batched model; auto: 1 on
    # the CPU, on CUDA all of them up to GPU_GROUP_BYTES of replay (`seeds_per_process`)
    seeds_per_process: int | str = "auto"
    protocol: dict[str, Any] = field(default_factory=dict)  # the suite's protocol (above the tasks')
    algorithm_overrides: dict[str, Any] = field(default_factory=dict)  # for every method (above their yamls)

    def __post_init__(self):
        for key in ("algorithms", "tasks", "seeds"):
            values = getattr(self, key)
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"suite.{key} must be a non-empty list, got {values!r}")
        for name in (*self.algorithms, *self.tasks):
            if not isinstance(name, str):
                raise ConfigError(f"suite.algorithms and suite.tasks must be lists of names, got {name!r}")
        object.__setattr__(self, "seeds", [coerce(s, int, "suite.seeds") for s in self.seeds])
        for key in ("algorithms", "tasks", "seeds"):
            refuse_repeats(f"suite.{key}", getattr(self, key))
        for seed in self.seeds:
            check_range("suite.seeds", seed, 0, MAX_SEED)
        if not isinstance(self.algorithm_seeds, dict):
            raise ConfigError(f"suite.algorithm_seeds must map method names to seed lists, got {self.algorithm_seeds!r}")
        for name, seeds in self.algorithm_seeds.items():
            where = f"suite.algorithm_seeds.{name}"
            if name not in self.algorithms:
                raise ConfigError(f"{where}: '{name}' is not in suite.algorithms ({', '.join(self.algorithms)})")
            if not isinstance(seeds, (list, tuple)) or not seeds:
                raise ConfigError(f"{where} must be a non-empty list of seeds, got {seeds!r}")
            for seed in seeds:
                check_range(where, coerce(seed, int, where), 0, MAX_SEED)
            refuse_repeats(where, [coerce(seed, int, where) for seed in seeds])
        if self.seeds_per_process != "auto":
            per_process = coerce(self.seeds_per_process, int, "suite.seeds_per_process")
            check_range("suite.seeds_per_process", per_process, 1, 4096)
            object.__setattr__(self, "seeds_per_process", per_process)

    def seeds_of(self, algorithm: str) -> list[int]:
        return [int(s) for s in self.algorithm_seeds.get(algorithm, self.seeds)]


@dataclass(frozen=True)
class Cost:
    """The dry run's cost table (conf/config.yaml `cost:`)."""

    gpu_updates_per_s: dict[str, float] = field(default_factory=dict)
    default_updates_per_s: float = 100
    env_steps_per_s: float = 1000


@dataclass(frozen=True)
class RunConfig:
    """Everything the front door needs after Hydra, typed."""

    options: RunOptions
    suite: Suite
    launcher: LocalLauncher | SlurmLauncher
    cost: Cost
    groups: tuple[JobGroup, ...]

    @property
    def jobs(self) -> list[Job]:
        return [job for group in self.groups for job in group.jobs]


# -- the command line, parsed once -----------------------------------------------------------
@dataclass(frozen=True)
class Override:
    """One command-line argument: `[prefix]key[=value]` (prefix: +, ++ or ~)."""

    prefix: str
    key: str
    value: str | None

    @classmethod
    def parse(cls, arg: str) -> Override:
        head, eq, value = arg.partition("=")
        key = head.lstrip("+~")
        return cls(head[:len(head) - len(key)], key, value if eq else None)

    @property
    def group(self) -> str:
        return self.key.partition(".")[0]


PASSED_THROUGH = ("algorithm.", "task.", "suite.protocol.", "suite.algorithm_overrides.", "suite.algorithm_seeds.",
                  "suite.seeds_per_process")  # keys a yaml may not hold: given to Hydra as ++key=value


@dataclass(frozen=True)
class CommandLine:
    """The front door's arguments, parsed once: checked (`check`), given to Hydra (`hydra_args`),
    and the keys they set inside the chosen method and task (`keys_set`) applied last to every job."""

    args: tuple[str, ...] = ()
    overrides: tuple[Override, ...] = ()

    @classmethod
    def parse(cls, argv: list[str] | tuple[str, ...]) -> CommandLine:
        return cls(tuple(argv), tuple(Override.parse(a) for a in argv))

    def hydra_args(self) -> list[str]:
        """The arguments for Hydra, with options of the chosen method or task and the suite's
        overrides passed as `++key=value`: the yamls hold only what differs from the dataclass
        defaults, so a key such as algorithm.hparams.cql_alpha may be absent from the composed
        yaml; the schema then checks it. A `~` in a value is quoted (`home_quoted`)."""
        out = []
        for a, o in zip(self.args, self.overrides):
            if o.value is not None and not a.startswith("-"):
                a = f"{o.prefix}{o.key}={home_quoted(o.key, o.value)}"
            out.append("++" + a if o.value is not None and not o.prefix and o.key.startswith(PASSED_THROUGH) else a)
        return out

    def keys_set(self) -> list[str]:
        """The keys set inside the chosen method (`algorithm.*`, not its domain blocks) and task
        (`task.protocol.*`); deletions act on the composed yaml itself."""
        return [o.key for o in self.overrides if o.value is not None and "~" not in o.prefix and (
            (o.group == "algorithm" and "." in o.key and not o.key.startswith("algorithm.domains."))
            or o.key.startswith("task.protocol."))]

    def check(self) -> None:
        """One-line errors Hydra would give as long ones: unknown group choices and option names,
        and options of an algorithm or task when none is chosen."""
        check_syntax(self.hydra_args())
        check_group_choices(self.overrides)
        check_option_names(self.overrides)
        chosen = {o.key for o in self.overrides if o.value is not None and "~" not in o.prefix}
        for o in self.overrides:
            if "." in o.key and o.group in ("algorithm", "task") and o.group not in chosen:
                rest = o.key.partition(".")[2]
                hint = (f"suite.algorithm_overrides.{rest}=... for every method of the suite" if o.group == "algorithm"
                        else f"protocol.{o.key.rpartition('.')[2]}=... for every task")
                raise ConfigError(f"{o.key} needs {o.group}=NAME on the command line (the {o.group} it changes); "
                                  f"or use {hint}")


def home_quoted(key: str, value: str) -> str:
    """`runs_dir=~/x` reaches Python unexpanded from a shell that expands `~` only at a word's
    start (sh, zsh) or when quoted, and `~` is not a character of Hydra's unquoted values (its
    grammar gives a long LexerNoViableAltException). A `~` has no other meaning there, so a value,
    or an element of a flat list, holding one is passed quoted: the front door expands it where it
    is a path (`RunOptions.runs_dir`), and Hydra's own paths (`hydra.searchpath=[file://~/conf]`,
    `hydra.sweep.dir`) are expanded here, as Hydra reads them literally."""
    if "~" not in value or value[:1] in "'\"":
        return value

    def one(text: str) -> str:
        text = text.strip()
        if "~" not in text or text[:1] in "'\"":
            return text
        if key.startswith("hydra."):
            scheme, sep, path = text.rpartition("://")
            text = scheme + sep + str(Path(path).expanduser()) if path.startswith("~") else text
        return next((f"{q}{text}{q}" for q in "'\"" if q not in text), text)

    if value.startswith("[") and value.endswith("]") and not any(c in value[1:-1] for c in "[]{}"):
        return "[" + ",".join(one(e) for e in value[1:-1].split(",")) + "]"
    return value if value[:1] in "[{" else one(value)


def check_syntax(args: list[str]) -> None:
    """An argument outside Hydra's override grammar (`runs_dir=[a`, an unknown `f(x)`), refused in
    one line naming it, instead of Hydra's several lines after the command line is read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue  # Hydra's flags (-m, --config-name=...) and `~key` deletions
        try:
            parser.parse_overrides([arg])
        except HydraException as exc:
            lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith(("See ", "Error parsing"))]
            key = arg.partition("=")[0].lstrip("+")
            raise ConfigError(f"argument {arg!r} is not in Hydra's override syntax ({lines[0].strip() if lines else exc}); "
                              f"quote a value that holds special characters, e.g. \"{key}='...'\"") from None


SEARCH_DIRS: list[Path] = []  # conf folders of the command line's hydra.searchpath (`check_searchpath`)


def searchpath_dirs(value: str) -> list[Path]:
    """The folders of a `hydra.searchpath=[file://DIR,pkg://a.conf]` value that exist here."""
    from importlib.util import find_spec

    out = []
    for entry in (e.strip().strip("'\"") for e in value.strip("[] ").split(",") if e.strip()):
        if entry.startswith("file://"):
            out.append(Path(entry[len("file://"):]).expanduser().absolute())
        elif entry.startswith("pkg://"):
            try:
                spec = find_spec(entry[len("pkg://"):])
            except (ImportError, ValueError):
                spec = None
            out += [Path(loc) for loc in (spec.submodule_search_locations or [])] if spec else []
        else:
            out.append(Path(entry).expanduser().absolute())
    return [d for d in out if d.is_dir()]


def check_searchpath(overrides: tuple[Override, ...]) -> None:
    """A yaml on the user's hydra.searchpath with a built-in's name would be ignored (Hydra reads
    the built-in tree first), and one that is not valid YAML would fail later, or never be read:
    both refused in one line. The others become choices of their group (`SEARCH_DIRS`)."""
    SEARCH_DIRS.clear()
    for o in overrides:
        if not o.key.startswith("hydra.searchpath") or not o.value:
            continue
        for folder in searchpath_dirs(o.value):
            for group in GROUPS:
                for path in sorted((folder / group).glob("*.yaml")):
                    if (CONF_DIR / group / path.name).exists():
                        raise ConfigError(f"hydra.searchpath: {path} has the name of the built-in "
                                          f"{CONF_DIR / group / path.name}, which Hydra reads first, so yours would be "
                                          f"ignored; rename yours (e.g. {path.stem}_mine.yaml) and choose it by that name")
                    try:
                        OmegaConf.load(path)
                    except Exception as exc:  # yaml's scanner and parser errors, OmegaConf's
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        raise ConfigError(f"hydra.searchpath: {path} is not valid YAML ({first}); fix it") from None
            SEARCH_DIRS.append(folder)


def check_group_choices(overrides: tuple[Override, ...]) -> None:
    """One-line errors for unknown group choices, before Hydra prints its long ones."""
    check_searchpath(overrides)
    searchpath = any(o.key.startswith("hydra.searchpath") for o in overrides)
    for o in overrides:
        if o.key not in GROUPS or not o.value or o.value == "null":
            continue
        names = group_names(o.key)
        for choice in o.value.split(","):  # multirun sweeps: algorithm=calql,cql
            if choice not in names:
                raise ConfigError(f"unknown {o.key} '{choice}'; choose one of: {', '.join(names)}")
            plugin = package_yamls(o.key).get(choice)
            if plugin and (CONF_DIR / o.key / f"{choice}.yaml") != plugin and not searchpath:
                package = plugin.parents[2].name  # <package>/conf/<group>/<name>.yaml
                raise ConfigError(f"{o.key} '{choice}' comes from the installed package '{package}'; add "
                                  f"'hydra.searchpath=[pkg://{package}.conf]' so Hydra finds its yaml")


def check_option_names(overrides: tuple[Override, ...]) -> None:
    """Misspelled options (`protcol.utd=2`, `launcher.workerz=2`) as one line naming the valid ones;
    additions (+key) are checked against the schema after composition."""
    base = OmegaConf.load(CONF_DIR / "config.yaml")
    default = next(d["launcher"] for d in base.defaults if not isinstance(d, str) and "launcher" in d)
    launcher = next((o.value for o in overrides if o.key == "launcher" and not o.prefix), default)
    sections = {"protocol": set(base.protocol)}
    if (CONF_DIR / "launcher" / f"{launcher}.yaml").exists():
        sections["launcher"] = set(OmegaConf.load(CONF_DIR / "launcher" / f"{launcher}.yaml"))
    known = (set(base) - {"defaults"}) | set(GROUPS) | {"hydra"}
    for o in overrides:
        if o.value is None or o.prefix or o.key.startswith("-"):
            continue
        top, _, rest = o.key.partition(".")
        if top not in known:
            raise ConfigError(f"unknown option '{o.key}'; valid: {', '.join(sorted(known - {'hydra'}))}")
        if rest and top in sections and rest.partition(".")[0] not in sections[top]:
            raise ConfigError(f"unknown option '{o.key}'; valid: {', '.join(f'{top}.{k}' for k in sorted(sections[top]))}")


# -- the yamls of a group ---------------------------------------------------------------------
def package_yamls(group: str) -> dict[str, Path]:
    """Yamls shipped by installed method packages: `<top package>/conf/algorithm/<name>.yaml` for
    each `o2o_bench.algorithms` entry point `<name>` (so such a method needs no edit here)."""
    if group != "algorithm":
        return {}
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    found = {}
    for ep in entry_points(group=algorithms.base.ENTRY_POINT_GROUP):
        spec = find_spec(ep.value.split(":")[0].split(".")[0])
        for loc in (spec.submodule_search_locations or []) if spec else []:
            path = Path(loc) / "conf" / group / f"{ep.name}.yaml"
            if path.exists():
                found.setdefault(ep.name, path)
    return found


def group_names(group: str) -> list[str]:
    """A group's choices; yamls named `_<name>` are parents others inherit (e.g. task/_antmaze.yaml)."""
    own = {p.stem for d in (CONF_DIR, *SEARCH_DIRS) for p in (d / group).glob("*.yaml") if not p.stem.startswith("_")}
    return sorted(own | set(package_yamls(group)))


def load_group(group: str, name: str) -> DictConfig:
    """A group's yaml as Hydra composes it: a `defaults: [other, _self_]` list (e.g. calql.yaml
    inheriting cql.yaml, a task inheriting its domain's `_<domain>.yaml`) merges those configs of
    the same group first."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        path = next((p for d in SEARCH_DIRS if (p := d / group / f"{name}.yaml").exists()), path)
    if not path.exists():
        path = package_yamls(group).get(name, path)
    if not path.exists():
        raise ConfigError(f"unknown {group} '{name}'; choose one of: {', '.join(group_names(group))}")
    cfg = OmegaConf.load(path)
    defaults = cfg.pop("defaults", None)
    if not defaults:
        return cfg
    parts = [cfg if entry == "_self_" else load_group(group, str(entry)) for entry in defaults]
    return OmegaConf.merge(*parts, *([] if "_self_" in defaults else [cfg]))


# -- one job's values: the layers, merged in one order ----------------------------------------
def plain(x) -> dict[str, Any]:
    """A plain dict (of a DictConfig, a dict or None)."""
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else dict(x or {})


def set_values(d) -> dict[str, Any]:
    """A plain dict without the keys left at null (null means: not set here)."""
    return {k: v for k, v in plain(d).items() if v is not None}


def job_layers(task_cfg, suite: Suite, algo_cfg, domain: str, command_line: dict[str, Any],
               task: str | None = None) -> list[tuple[str, dict]]:
    """The sources of one job's values, lowest precedence first; each may set the method's
    `name`, `replay`, `reward`, `hparams` and the `protocol`. The method's own protocol (RLPD: no
    pre-training, UTD 20) beats the task's and the suite's; its `tasks.<pattern>` blocks whose
    pattern (fnmatch) matches the task's name (per-task values such as FQL's alpha) beat its
    domain block, in the yaml's order; the suite's overrides of every method beat the method's
    yaml; the command line beats everything."""
    algo = plain(algo_cfg)
    algo.pop("defaults", None)
    domains = algo.pop("domains", None) or {}
    per_task = algo.pop("tasks", None) or {}
    known = {t.domain for t in tasks.TASKS.values()}
    if set(domains) - known:
        raise ConfigError(f"algorithm '{algo.get('name')}': domains.{sorted(set(domains) - known)[0]} is not a "
                          f"task domain; known: {', '.join(sorted(known))}")
    for pattern in per_task:
        if not fnmatch.filter(tasks.TASKS, pattern):
            raise ConfigError(f"algorithm '{algo.get('name')}': tasks.{pattern} matches no task name; "
                              f"see `python -m tasks list`")
    matching = [(f"algorithm.tasks.{pattern}", plain(block)) for pattern, block in per_task.items()
                if task is not None and fnmatch.fnmatchcase(task, pattern)]
    return [("task", {"protocol": set_values(plain(task_cfg).get("protocol"))}),
            ("suite", {"protocol": set_values(suite.protocol)}),
            ("algorithm", algo),
            (f"algorithm.domains.{domain}", plain(domains.get(domain))),
            *matching,
            ("suite.algorithm_overrides", suite_overrides_for(suite, algo.get("name"), task)),
            ("command line", command_line)]


def suite_overrides_for(suite: Suite, name: str | None, task: str | None = None) -> dict:
    """The suite's overrides of every method, their hparams narrowed to those method `name` has: a
    suite may set e.g. tau for its methods that have one and run a method without it beside them.
    A hparam that none of the suite's methods has is refused. They are the design of the suite's
    own tasks: a task the command line picks outside them runs with each method's own settings."""
    overrides = plain(suite.algorithm_overrides)
    if task is not None and task not in suite.tasks:
        return {}
    hparams = overrides.get("hparams") or {}
    if not hparams or name not in algorithms.REGISTRY:
        return overrides
    fields = {n: set(algorithms.get(n).Config.__dataclass_fields__) for n in suite.algorithms
              if n in algorithms.REGISTRY}
    unused = sorted(k for k in hparams if not any(k in f for f in fields.values()))
    if unused:
        raise ConfigError(f"suite.algorithm_overrides.hparams.{unused[0]}: none of the suite's methods "
                          f"({', '.join(suite.algorithms)}) has it")
    own = algorithms.get(name).Config.__dataclass_fields__
    overrides["hparams"] = {k: v for k, v in hparams.items() if k in own}
    return overrides


def merge_layers(layers: list[tuple[str, dict]]) -> dict[str, Any]:
    """The layers merged, later ones winning; a protocol value left null in a layer is not set there."""
    parts = []
    for _, layer in layers:
        layer = dict(layer)
        if "protocol" in layer:
            layer["protocol"] = set_values(layer["protocol"])
        parts.append(layer)
    return OmegaConf.to_container(OmegaConf.merge(*parts), resolve=True)


def command_line_layer(cfg: DictConfig, cli: CommandLine | None) -> dict[str, Any]:
    """The values the command line set inside the chosen method and task (`algorithm.hparams.x=1`,
    `task.protocol.utd=2`), as Hydra composed them, and the front door's `protocol.*`."""
    out = OmegaConf.create({})
    for key in cli.keys_set() if cli is not None else []:
        OmegaConf.update(out, key, OmegaConf.select(cfg, key), force_add=True)
    values = plain(out)
    layer = values.get("algorithm", {})
    layer["protocol"] = {**set_values(layer.get("protocol")), **set_values(values.get("task", {}).get("protocol")),
                         **set_values(cfg.get("protocol"))}
    return layer


def validate_algorithm(algo: dict[str, Any]) -> ResolvedAlgorithm:
    """A method's merged values checked against its schema (its Config dataclass, ReplayConfig,
    RewardTransform) and built; fields that follow the protocol stay as given (null: a job fills
    them in, `follow`)."""
    name = algo.get("name")
    unknown = sorted(set(algo) - set(ALGORITHM_KEYS))
    try:
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join('algorithm.' + k for k in unknown)}; "
                              f"valid: {', '.join(ALGORITHM_KEYS)}")
        try:
            cls = algorithms.get(name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        hparams = check_values(cls.Config, algo.get("hparams") or {}, "algorithm.hparams")
        try:
            config = algorithms.base.build_config(cls, hparams)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc.args[0] if exc.args else exc).replace(
                f"{cls.Config.__qualname__}.", "algorithm.hparams.")) from None
        replay = ReplayConfig(**check_values(ReplayConfig, algo.get("replay") or {}, "algorithm.replay"))
        reward = RewardTransform(**check_values(RewardTransform, algo.get("reward") or {}, "algorithm.reward"))
    except ConfigError as exc:
        raise ConfigError(f"algorithm '{name}': {exc}") from None
    return ResolvedAlgorithm(name, config, replay, reward)


def follow(method: ResolvedAlgorithm, protocol: Protocol) -> ResolvedAlgorithm:
    """`method` in a job: each Config field that follows the protocol (metadata "protocol") and is
    left null takes the protocol's value (RLPD's actor steps once per env step: actor_every
    follows protocol.utd)."""
    config = method.config
    filled = {k: getattr(protocol, p) for k, p in algorithms.base.protocol_followers(type(config)).items()
              if getattr(config, k) is None}
    return dataclasses.replace(method, config=dataclasses.replace(config, **filled)) if filled else method


def method_protocol(layers: list[tuple[str, dict]]) -> None:
    """Refuse unknown protocol options in the method's own layers (`algorithm.protocol.*`)."""
    for label, layer in layers[2:]:
        try:
            check_values(Protocol, set_values(layer.get("protocol")), "algorithm.protocol")
        except ConfigError as exc:
            raise ConfigError(f"algorithm '{layers[2][1].get('name')}': {exc}") from None


def unused_protocol_fields(layers: list[tuple[str, dict]]) -> None:
    """Refuse a command-line protocol value for a phase the method's own protocol turns off (RLPD:
    `offline_steps: 0`, no pre-training): it would give the method a phase it does not have."""
    own = merge_layers(layers[2:5]).get("protocol") or {}
    given = (layers[-1][1].get("protocol") or {}) if layers[-1][0] == "command line" else {}
    name = layers[2][1].get("name")
    for field_name in ("offline_steps", "online_steps"):
        if own.get(field_name) == 0 and given.get(field_name):
            raise ConfigError(f"protocol.{field_name}={given[field_name]}: algorithm '{name}' has no such phase (its "
                              f"yaml sets protocol.{field_name}: 0); drop it, or for the suite's other methods set "
                              f"suite.protocol.{field_name}={given[field_name]} (a method's own protocol beats the suite's)")


def resolve_job_values(layers: list[tuple[str, dict]]) -> tuple[ResolvedAlgorithm, Protocol]:
    """One job's method and protocol from its layers (`job_layers`), checked and built."""
    method_protocol(layers)
    merged = merge_layers(layers)
    protocol_values = merged.pop("protocol", {})
    method = validate_algorithm(merged)  # the method's errors first, then the protocol's
    try:
        protocol = Protocol(**check_values(Protocol, protocol_values, "protocol"))
    except TypeError as exc:
        raise ConfigError(f"bad protocol option: {exc}; valid: {', '.join(Protocol.__dataclass_fields__)}") from None
    unused_protocol_fields(layers)  # after the method's and the protocol's own errors
    return follow(method, protocol), protocol


def resolve_algorithm(algo_cfg, domain: str, *overrides: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """A method's values outside a job (tests, the bench), as plain data: its yaml < its
    `domains.<domain>` block < its `tasks.<pattern>` blocks matching `task` < each of `overrides`;
    every field filled in, those that follow the protocol left null; the method's own `protocol:`
    kept apart."""
    layers = job_layers({}, Suite("-", ["-"], ["-"], [0]), algo_cfg, domain, {}, task)[2:-2]
    layers += [("override", dict(o)) for o in overrides if o]
    method_protocol([("task", {}), ("suite", {})] + layers)
    merged = merge_layers(layers)
    own = set_values(merged.pop("protocol", None))
    out = validate_algorithm(merged).to_dict()
    return {**out, **({"protocol": own} if own else {})}


def standalone_hparams(algo: dict[str, Any]) -> dict[str, Any]:
    """A resolved method's hparams for building it outside a job (the bench, scripts): fields that
    follow the protocol take the method's own protocol (its yaml's `protocol:`, else the defaults)."""
    own = Protocol(**{"offline_steps": 0, "online_steps": 0, **(algo.get("protocol") or {})})
    return algorithms.base.follow_protocol(algorithms.get(algo["name"]), algo["hparams"], own)


# -- the whole run ----------------------------------------------------------------------------
def read_options(cfg: DictConfig) -> tuple[RunOptions, Suite, LocalLauncher | SlurmLauncher, Cost]:
    """The front door's own options, the suite, the launcher and the cost table, before any job."""
    options = RunOptions(**{f: cfg[f] for f in RunOptions.__dataclass_fields__ if f in cfg and f != "logger"},
                         logger=cfg.get("logger"))
    raw = plain(cfg.suite)
    suite = Suite(**{k: raw[k] for k in ("name", "algorithms", "tasks", "seeds", "seeds_per_process") if k in raw},
                  algorithm_seeds=set_values(raw.get("algorithm_seeds")), protocol=set_values(raw.get("protocol")),
                  algorithm_overrides=set_values(raw.get("algorithm_overrides")))
    launcher_raw = plain(cfg.get("launcher"))
    schema = LAUNCHERS.get(launcher_raw.get("name"))
    if schema is None:
        raise ConfigError(f"unknown launcher '{launcher_raw.get('name')}'; choose one of: {', '.join(LAUNCHERS)}")
    launcher = schema(**{k: v for k, v in launcher_raw.items() if k in schema.__dataclass_fields__})
    cost = Cost(**{k: v for k, v in plain(cfg.get("cost")).items() if k in Cost.__dataclass_fields__})
    return options, suite, launcher, cost


def read_config(cfg: DictConfig, cli: CommandLine | None = None) -> RunConfig:
    """The composed config as typed objects: every job of algorithm x task x seed, each resolved
    and validated, in groups. With `suite.seeds_per_process` K > 1 the seeds of each (algorithm,
    task) are split, in order, into groups of up to K trained together in one process; each job of
    a group of more than one records the group's seeds (`seed_group`), so its id says how the seed
    was trained. `cli`: the front door's command line (its values win over every yaml)."""
    options, suite, launcher, cost = read_options(cfg)
    command_line = command_line_layer(cfg, cli)
    algo_cfgs = [cfg.algorithm] if cfg.get("algorithm") else [load_group("algorithm", n) for n in suite.algorithms]
    task_cfgs = [cfg.task] if cfg.get("task") else [load_group("task", n) for n in suite.tasks]
    groups = []
    on_gpu = runs_on_cuda(options.device)
    sharded = any(tasks.TASKS[t.name].shards for t in task_cfgs if t.name in tasks.TASKS)
    for task_cfg in task_cfgs:
        try:
            task = tasks.get(task_cfg.name)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        for algo_cfg in algo_cfgs:
            method, protocol = resolve_job_values(job_layers(task_cfg, suite, algo_cfg, task.domain, command_line,
                                                             task.name))
            protocol = shard_protocol(task, protocol, sharded)
            seeds = [options.seed] if options.seed is not None else suite.seeds_of(method.name)
            per_process = suite.seeds_per_process if suite.seeds_per_process != "auto" else \
                seeds_per_process(method.name, task, protocol, len(seeds), on_gpu)
            seed_groups = [seeds[i:i + per_process] for i in range(0, len(seeds), per_process)]
            if max(map(len, seed_groups)) > 1:
                check_seed_groups(method.name, task, per_process)
            for seed_group in seed_groups:
                groups.append(JobGroup(tuple(
                    Job(suite.name, seed, method, TaskRef(task.name, task.domain), protocol, options.threads,
                        options.device, options.logger, seed_group if len(seed_group) > 1 else None,
                        options.compile)
                    for seed in seed_group)))
    return RunConfig(options, suite, launcher, cost, tuple(groups))


def shard_protocol(task, protocol: Protocol, sharded: bool) -> Protocol:
    """`protocol.shard_every` acts on sharded datasets only: set where no task of the run has one it
    is refused; on a task without one it keeps its default, so that it leaves that job's id alone."""
    default = Protocol.shard_every
    if protocol.shard_every != default and not sharded:
        raise ConfigError(f"protocol.shard_every={protocol.shard_every:,}: no task of this run has a sharded dataset "
                          f"(OGBench's *-play-100m-* tasks have one); drop it")
    return protocol if task.shards else dataclasses.replace(protocol, shard_every=default)


def expand(cfg: DictConfig, cli: CommandLine | None = None) -> list[Job]:
    """Every job of the composed config (`read_config`), in order."""
    return read_config(cfg, cli).jobs


GPU_GROUP_BYTES = 16 * 2**30  # replay memory of one process's seeds on a GPU (any current card holds it)
SEED_OVERHEAD_BYTES = 256 * 2**20  # networks, optimizer states and activations of one seed (CQL's: ~100 MB)


def runs_on_cuda(device: str) -> bool:
    """Whether jobs of `device` (the config's auto | cpu | cuda[:N]) train on a GPU here."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def seeds_per_process(algorithm: str, task, protocol, n_seeds: int, on_gpu: bool) -> int:
    """`seeds_per_process: auto`: one seed per process on the CPU (grouping CQL-family seeds costs
    more than it saves there: docs/many-seeds.md); on a GPU, where one seed leaves it mostly idle,
    every seed of the (method, task) in one process, as many as GPU_GROUP_BYTES of online buffers
    (online_steps rows of obs, next_obs, action and 4 scalars per seed, fp32) plus
    SEED_OVERHEAD_BYTES each hold. Methods written for one seed and image tasks: 1. A function of
    the config only (never of the free memory now), so job ids are the same on every machine."""
    if not on_gpu or not algorithms.get(algorithm).multi_seed or task.image_shape is not None:
        return 1
    per_seed = protocol.online_steps * (2 * task.obs_dim + task.act_dim + 4) * 4 + SEED_OVERHEAD_BYTES
    return max(1, min(n_seeds, GPU_GROUP_BYTES // per_seed))


def check_seed_groups(algorithm: str, task, per_process: int) -> None:
    """Refuse seed groups where they cannot be trained as one batched model."""
    if not algorithms.get(algorithm).multi_seed:
        raise ConfigError(f"algorithm '{algorithm}' trains one seed per process (multi_seed = False), "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")
    if task.image_shape is not None:
        raise ConfigError(f"task '{task.name}' has image observations, which train one seed per process, "
                          f"got suite.seeds_per_process={per_process}; set suite.seeds_per_process=1")


__all__ = ["CONF_DIR", "CommandLine", "ConfigError", "Cost", "LocalLauncher", "RunConfig", "RunOptions", "SlurmLauncher",
           "Suite", "asdict", "expand", "group_jobs", "group_names", "load_group", "read_config", "resolve_algorithm",
           "standalone_hparams", "validate_algorithm", "yaml_value"]
