"""Compiled and CUDA-graph-captured updates and actions, wrapped around a method from outside.

A method's `update` stays one readable eager function; `accelerate(algo, mode)` replaces the
instance's `update_seeds` and `policy` by wrappers that
  1. compile them with `torch.compile` (the default inductor backend), and
  2. on CUDA, once a few warm-up calls have built every optimizer state, capture one call as a
     CUDA graph and replay it for every later call: the batch is copied into the graph's static
     input tensors, the whole step (forward, backward, optimizer steps, target updates, random
     draws from each seed's generator) runs as one launch.
That is LeanRL's pattern (pytorch-labs/LeanRL, leanrl/sac_continuous_action_torchcompile.py:
`torch.compile` of the update, then tensordict's `CudaGraphModule` around it, Adam with
`capturable=True`), written here with `torch.cuda.CUDAGraph` directly.

A graph replays kernels, not Python: an update may be captured only if every call would run the
same Python path and keep no state on the host. `host_dependence` checks that on one real update
(the first one, eager): it fails on a read of a tensor's value on the host from the method's code
(`if loss.item() > 0`, `int(counter)`, `bool(mask)`: a branch the graph would freeze) and on a
change of the method's non-tensor attributes (counters, lists, dicts the next call reads). A
method that fails runs compiled without graphs and says so in one line; so does one whose compile
or capture raises (eager then). Graphs are keyed by `algo.finetuning` (a host flag methods branch
on, flipped once by the runner) and, for actions, by the observation shape and `deterministic`.

Modes (the config's `compile`): off = eager; on = compile everywhere, plus graphs on CUDA;
auto = on on CUDA, off on the CPU (docs/speed.md: compiling whole updates gained nothing there).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
import traceback
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

MODES = ("auto", "on", "off")
CALM_CALLS = 3  # calls that compile nothing new before a call runs without a state snapshot
WARMUP_CALLS = 3  # eager-in-graph-pool calls before capture: optimizer states exist, compile done
HOST_READS = frozenset({"__bool__", "item", "__int__", "__float__", "__index__", "tolist"})
_TORCH_DIR = os.path.dirname(torch.__file__)


def resolve(mode: str, device: torch.device) -> tuple[bool, bool]:
    """(compile, capture CUDA graphs) for a `compile` mode on a device."""
    if mode not in MODES:
        raise ValueError(f"compile must be one of {', '.join(MODES)}, got {mode!r}")
    on = mode == "on" or (mode == "auto" and device.type == "cuda")
    return on, on and device.type == "cuda"


class _HostReads(TorchFunctionMode):
    """Records where the method's own code reads a tensor's value on the host (torch's internals,
    e.g. a non-capturable Adam's step count, are the optimizer's business: `make_capturable`)."""

    def __init__(self):
        super().__init__()
        self.sites: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS and not self.sites:
            caller = traceback.extract_stack(limit=2)[0]  # the frame that asked for the value
            if not caller.filename.startswith(_TORCH_DIR):
                self.sites.append(f"{os.path.relpath(caller.filename)}:{caller.lineno} "
                                  f"({caller.line.strip() if caller.line else func.__name__})")
        return func(*args, **(kwargs or {}))


def _host_state(algo) -> dict[str, Any]:
    """The method's attributes that are not tensors, modules or optimizers: identity and length."""
    skip = (torch.Tensor, torch.nn.Module, torch.optim.Optimizer)
    return {k: (id(v), len(v) if hasattr(v, "__len__") else None, v if isinstance(v, (bool, int, float, str)) else None)
            for k, v in vars(algo).items() if not isinstance(v, skip) and not callable(v)}


def host_dependence(algo, call: Callable[[], Any]) -> tuple[Any, str]:
    """Runs `call()` (one real update or action of `algo`) and returns (its result, why it cannot
    be replayed as a graph: "" when it can)."""
    before = _host_state(algo)
    with _HostReads() as reads:
        out = call()
    if reads.sites:
        return out, f"reads a tensor's value on the host at {reads.sites[0]}"
    after = _host_state(algo)
    # a tensor attribute set by the update (e.g. this step's drawn members) is fine: a replay
    # rewrites the tensor it points to
    settled = {k for k, v in vars(algo).items() if isinstance(v, torch.Tensor)}
    changed = sorted(k for k in (before.keys() | after.keys()) - settled if before.get(k) != after.get(k))
    if changed:
        return out, f"changes host-side state ({', '.join(changed)}) that the next call reads"
    return out, ""


def make_capturable(algo) -> None:
    """Every non-fused Adam of `algo` keeps its step count on the device (`capturable=True`), so
    that its step is a pure device computation a graph can replay (fused Adam already is)."""
    for opt in algo.modules().values():
        if isinstance(opt, torch.optim.Optimizer):
            for group in opt.param_groups:
                if "capturable" in group and not group.get("fused"):
                    group["capturable"] = True
                    for p in group["params"]:
                        state = opt.state.get(p, {})
                        if "step" in state:
                            state["step"] = torch.as_tensor(state["step"], dtype=torch.float32, device=p.device)


def _graph_count() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _say(algo, text: str) -> None:
    print(f"compile: {algo.name}: {text}", file=sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    exc = getattr(exc, "inner_exception", None) or exc  # a backend's own error inside dynamo's wrapper
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


def _tensors(x):
    """The tensors of an argument (a Batch, a tensor), in a fixed order."""
    if isinstance(x, torch.Tensor):
        return [x]
    if dataclasses.is_dataclass(x):
        return [v for f in dataclasses.fields(x) if isinstance(v := getattr(x, f.name), torch.Tensor)]
    return []


def _clone(x):
    if isinstance(x, torch.Tensor):
        return x.clone()
    if dataclasses.is_dataclass(x):
        return dataclasses.replace(x, **{f.name: v.clone() for f in dataclasses.fields(x)
                                         if isinstance(v := getattr(x, f.name), torch.Tensor)})
    return x


def _detach_out(out):
    """A replay's outputs copied out of the graph's static tensors (the next replay overwrites them)."""
    if isinstance(out, dict):
        return {k: v.clone() for k, v in out.items()}
    return out.clone()


class CudaGraph:
    """One call of `fn(static, *flags)` captured as a CUDA graph; `replay()` reruns it on whatever
    the static input tensors hold and returns copies of its outputs."""

    def __init__(self, fn, static, flags, generators):
        self.graph = torch.cuda.CUDAGraph()
        for g in generators:
            self.graph.register_generator_state(g)  # each seed's stream advances on every replay
        with torch.cuda.graph(self.graph):
            self.out = fn(static, *flags)

    def replay(self):
        self.graph.replay()
        return _detach_out(self.out)

    @staticmethod
    def warm(fn, *args):
        """A warm-up call on a side stream, as torch.cuda.graphs' docs ask before a capture."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = fn(*args)
        torch.cuda.current_stream().wait_stream(stream)
        return out


class _Graphed:
    """`fn(arg, *flags)` replayed as one graph per key: warm-up calls, one capture, replays."""

    graph_type = CudaGraph

    def __init__(self, algo, fn, what: str, ready: Callable[[], bool]):
        self.algo, self.fn, self.what, self.ready = algo, fn, what, ready  # ready: compiling is over
        self.slots: dict[Any, dict] = {}
        self.disabled = ""  # the reason graphs were given up for good

    def __call__(self, key, arg, *flags):
        slot = self.slots.setdefault(key, {"calls": 0, "graph": None, "why_not": ""})
        if self.disabled or slot["why_not"]:
            return self.fn(arg, *flags)
        if slot["graph"] is not None:
            for static, x in zip(slot["inputs"], _tensors(arg)):
                static.copy_(x)
            return slot["graph"].replay()
        if slot["calls"] < WARMUP_CALLS or not self.ready():
            slot["calls"] += 1
            return self.graph_type.warm(self.fn, arg, *flags)
        try:
            make_capturable(self.algo)
            static = _clone(arg)
            graph = self.graph_type(self.fn, static, flags, self.algo.rng.generators or [])
        except Exception as exc:  # noqa: BLE001 (any failure: say it once, run without graphs)
            self.disabled = f"CUDA graph capture of its {self.what} failed ({_reason(exc)})"
            _say(self.algo, f"{self.disabled}; running it compiled, without graphs")
            return self.fn(arg, *flags)
        slot.update(graph=graph, inputs=_tensors(static))
        return graph.replay()  # the capture recorded this call's step; the replay performs it


def _compiled_or_eager(algo, what: str, compiled, eager, failed: dict, watch: dict):
    """`compiled`, falling back to `eager` (one line, same state) if it fails while graphs compile."""
    def call(*args):
        if what in failed:
            return eager(*args)
        # While calls still compile new graphs, each runs on a snapshot of the method's state: a
        # graph that fails on its first run (a compiler bug) may follow graphs that already
        # stepped an optimizer, so the fallback restores the state and redoes the call eagerly.
        key = algo.finetuning
        if watch["key"] != key:
            watch.update(key=key, calm=0)
        guarded = watch["calm"] < CALM_CALLS
        snapshot = (copy.deepcopy(algo.state_dict()), algo.rng.state()) if guarded else None
        graphs = _graph_count()
        try:
            out = compiled(*args)
        except Exception as exc:  # noqa: BLE001 (say it once, run eager from the same state)
            if snapshot is None:
                raise RuntimeError(f"algorithm '{algo.name}': torch.compile of its {what} failed after its "
                                   f"warm-up ({_reason(exc)}); rerun with compile=off") from exc
            algo.load_state_dict(snapshot[0])
            algo.rng.load_state(snapshot[1])
            failed[what] = _reason(exc)
            _say(algo, f"torch.compile of its {what} failed ({failed[what]}); running it eager")
            return eager(*args)
        watch["calm"] = watch["calm"] + 1 if _graph_count() == graphs else 0
        return out
    return call


def _graphed_update_seeds(algo, graphed_update, eager_update):
    """`update_seeds` through CUDA graphs, one per phase; each phase's first update runs eager,
    watched for what a graph cannot replay."""
    def update_seeds(batch):
        key = algo.finetuning
        slot = graphed_update.slots.get(key)
        if slot is None:
            make_capturable(algo)  # before anything compiles (after a resume's load_state_dict)
            out, why = host_dependence(algo, lambda: eager_update(batch))
            graphed_update.slots[key] = {"calls": 0, "graph": None, "why_not": why}
            if why:
                phase = "fine-tuning update" if key else "update"
                _say(algo, f"no CUDA graph of its {phase}: it {why}; running it compiled, without graphs")
            return out
        return graphed_update(key, batch)
    return update_seeds


def accelerate(algo, mode: str = "auto", backend: Any = "inductor", graphs: bool = True) -> tuple[bool, bool]:
    """Wraps `algo.update_seeds` and `algo.policy` as `mode` asks on the method's device (see the
    module's docstring; `backend`: torch.compile's, the tests use lighter ones; graphs=False: no
    CUDA graphs, for the bench). Returns (compiled, graphs) as planned; a later failure says so in
    one line and falls back."""
    do_compile, do_graphs = resolve(mode, algo.device)
    do_graphs = do_graphs and graphs
    if not do_compile:
        return False, False
    eager_update, eager_policy = algo.update_seeds, algo.policy
    failed = {}  # what -> the reason its compile failed
    watch = {"key": None, "calm": 0}  # calls since the last one that compiled a new graph
    update = _compiled_or_eager(algo, "update", torch.compile(eager_update, backend=backend), eager_update,
                                failed, watch)
    policy = _compiled_or_eager(algo, "action", torch.compile(eager_policy, backend=backend), eager_policy,
                                failed, watch)
    if not do_graphs:
        algo.update_seeds, algo.policy = update, policy
        return True, False

    def ready() -> bool:
        return watch["key"] == algo.finetuning and watch["calm"] >= CALM_CALLS

    graphed_update, graphed_policy = (_Graphed(algo, update, "update", ready),
                                      _Graphed(algo, policy, "action", ready))

    def policy_(obs, deterministic):
        return graphed_policy((tuple(obs.shape), obs.dtype, deterministic), obs, deterministic)

    algo.update_seeds, algo.policy = _graphed_update_seeds(algo, graphed_update, eager_update), policy_
    return True, True
