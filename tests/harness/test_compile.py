"""The compiled update path (`harness.compile`) on the CPU: for every registered method the
compiled update gives the eager one's metrics and parameters, its shapes stay static (no
recompilation once every branch has run), and the check that decides whether an update may be
replayed as a CUDA graph finds Python branches on tensor values and host-side state. The CUDA
graph capture itself needs a GPU: `scripts/gpu_check.sh`.

Compiled here with AOTAutograd and eager kernels (`aot_eager`: dynamo's tracing, graph breaks,
guards and the joint forward/backward graph, without inductor's C++ code generation, which costs
tens of seconds per method on the CPU); one method also goes through inductor."""
import io
from contextlib import redirect_stderr

import pytest
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

import algorithms
from algorithms import ActionSpec, ObsSpec, SeedStreams
from harness.compile import accelerate, host_dependence, resolve
from algorithms.conformance import ACT, OBS, batch, small_hparams

# aot_eager's kernels are eager torch's, but decomposed ops and the traced joint graph may
# reorder float sums: metrics and parameters agree to fp32 rounding over a few Adam steps
RTOL, ATOL = 1e-4, 1e-5
STEPS, CALM, K = 6, 4, 2  # updates per phase, the first one that must compile nothing new; seeds


class Counting:
    """aot_eager that counts the graphs it compiles."""

    def __init__(self):
        self.graphs = 0

        def compiler(gm, _inputs):
            return make_boxed_func(gm.forward)

        self.backend = aot_autograd(fw_compiler=compiler)

    def __call__(self, gm, inputs):
        self.graphs += 1
        return self.backend(gm, inputs)


def build(name, seeds=(0, 1)):
    return algorithms.make(name, ObsSpec((OBS,)), ActionSpec(ACT), small_hparams(name), "cpu",
                           SeedStreams.from_seeds(list(seeds)))


def params(algo):
    return {f"{k}.{n}": p.detach().clone() for k, m in algo.modules().items() if isinstance(m, torch.nn.Module)
            for n, p in m.named_parameters()}


def close(a, b, what):
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


def test_modes_resolve_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve("auto", cpu) == (False, False) and resolve("auto", cuda) == (True, True)
    assert resolve("on", cpu) == (True, False) and resolve("on", cuda) == (True, True)
    assert resolve("off", cuda) == (False, False)
    with pytest.raises(ValueError, match="compile must be one of auto, on, off, got 'yes'"):
        resolve("yes", cpu)


def test_off_and_cpu_auto_leave_the_method_untouched():
    algo = build("iql")
    assert accelerate(algo, "off") == (False, False) and accelerate(algo, "auto") == (False, False)
    assert "update_seeds" not in vars(algo) and "policy" not in vars(algo)


@pytest.mark.parametrize("name", algorithms.available())
def test_compiled_update_equals_eager_and_compiles_once(name):
    """Same seeds, same batches: STEPS offline and STEPS fine-tuning updates, then actions; the
    compiled method's metrics, parameters and actions match the eager one's, and updates CALM..
    of each phase compile nothing new (static shapes; each branch, e.g. the actor every 2 steps,
    compiled once). A method whose compile fails falls back to eager in one line: only AWAC, whose
    actor step trips torch 2.13's AOTAutograd (an AssertionError replaying an output alias,
    `gen_alias_from_base`) on the CPU."""
    torch._dynamo.reset()  # every method shares Algorithm.update_seeds' code: past dynamo's cache limit it runs eager
    eager, fast = build(name), build(name)
    counter = Counting()
    assert accelerate(fast, "on", backend=counter) == (True, False)
    err = io.StringIO()
    with redirect_stderr(err):
        run_both(name, eager, fast, counter)
    fell_back = [line for line in err.getvalue().splitlines() if line.startswith("compile: ")]
    assert len(fell_back) <= 1 and (not fell_back or name == "awac"), fell_back
    if not fell_back:
        assert counter.graphs > 0
    want, got = params(eager), params(fast)
    for key in want:
        close(got[key], want[key], f"{name} parameter {key}")
    obs = batch(9, K).obs.numpy()
    close(torch.as_tensor(fast.act(obs, True)), torch.as_tensor(eager.act(obs, True)), f"{name} action")


def run_both(name, eager, fast, counter):
    for phase in ("offline", "online"):
        if phase == "online":
            eager.on_finetune_start()
            fast.on_finetune_start()
        for i in range(STEPS):
            if i == CALM:
                graphs = counter.graphs
            b = batch(i, K, chunk=eager.chunk)
            want, got = eager.update_seeds(b), fast.update_seeds(b)
            assert want.keys() == got.keys()
            for key in want:
                close(got[key], want[key], f"{name} {phase} update {i} metric {key}")
        assert counter.graphs == graphs, f"{name} recompiled during {phase} updates {CALM}..{STEPS - 1}"


def test_inductor_update_equals_eager():
    """The default backend (inductor's generated C++ kernels), on IQL: within the same tolerance."""
    torch._dynamo.reset()
    eager, fast = build("iql"), build("iql")
    accelerate(fast, "on")
    for i in range(3):
        want, got = eager.update_seeds(batch(i, K)), fast.update_seeds(batch(i, K))
        for key in want:
            close(got[key], want[key], f"iql update {i} metric {key}")
    want, got = params(eager), params(fast)
    for key in want:
        close(got[key], want[key], f"iql parameter {key}")


CAPTURABLE = {"awac", "calql", "cql", "iql"}  # no host read of a tensor, no host-side state


@pytest.mark.parametrize("name", algorithms.available())
def test_host_dependence_of_every_method(name):
    """Which updates a CUDA graph may replay, checked on one real update per phase."""
    algo = build(name)
    reasons = []
    for finetune in (False, True):
        if finetune:
            algo.on_finetune_start()
        _, why = host_dependence(algo, lambda: algo.update_seeds(batch(0, K, chunk=algo.chunk)))
        reasons.append(why)
    if name in CAPTURABLE:
        assert reasons == ["", ""], reasons
    elif name in ("td3bc", "rlpd"):  # the actor every policy_freq / actor_every steps: a host counter
        assert all(f"algorithms/{name}.py" in r and "int(self.updates)" in r for r in reasons), reasons
    elif name == "wsrl":  # Cal-QL's update offline; online, batches gathered on the host for the actor step
        assert reasons[0] == "" and "changes host-side state (block)" in reasons[1], reasons
    else:  # a method added later: its probe must run and give a verdict (str)
        assert all(isinstance(r, str) for r in reasons)


class PlantedBranch(algorithms.REGISTRY["iql"]):
    """IQL with a Python branch on a loss value: a graph would freeze whichever side it took."""

    def update(self, batch):
        metrics = super().update(batch)
        if metrics["critic_loss"].sum().item() > 0:
            metrics = {**metrics, "positive": torch.ones_like(metrics["critic_loss"])}
        return metrics


class PlantedCounter(algorithms.REGISTRY["iql"]):
    """IQL counting its updates in a Python int: a graph's replays would not count."""

    calls = 0

    def update(self, batch):
        self.calls += 1
        return super().update(batch)


def test_planted_branch_and_host_state_are_found():
    for cls, expected in ((PlantedBranch, "reads a tensor's value on the host at tests/harness/test_compile.py"),
                          (PlantedCounter, "changes host-side state (calls)")):
        algo = cls(ObsSpec((OBS,)), ActionSpec(ACT), cls.Config(**small_hparams("iql")), "cpu",
                   SeedStreams.from_seeds([0, 1]))
        _, why = host_dependence(algo, lambda: algo.update_seeds(batch(0, K)))
        assert why.startswith(expected), why
        if cls is PlantedBranch:
            assert "if metrics[\"critic_loss\"].sum().item() > 0" in why


def test_a_failing_compile_falls_back_in_one_line():
    def broken(gm, inputs):
        raise RuntimeError("no compiler here")

    eager, fast = build("awac"), build("awac")
    accelerate(fast, "on", backend=broken)
    err = io.StringIO()
    with redirect_stderr(err):
        for i in range(2):
            want, got = eager.update_seeds(batch(i, K)), fast.update_seeds(batch(i, K))
            for key in want:
                assert torch.equal(got[key], want[key]), key  # eager, exactly
    lines = [line for line in err.getvalue().splitlines() if line.startswith("compile: ")]
    assert len(lines) == 1 and lines[0].startswith("compile: awac: torch.compile of its update failed (")
    assert "no compiler here" in lines[0] and lines[0].endswith("running it eager")


class Rerun:
    """A CPU stand-in for `harness.compile.CudaGraph` (a real capture needs a GPU: gpu_check.sh):
    capturing runs nothing, and each replay reruns the captured call on the static inputs, which is
    what a graph's replay computes. It checks the wrapper's bookkeeping: warm-up, one capture per
    phase, each batch copied into the static inputs, the probe per phase."""

    captures: list = []

    def __init__(self, fn, static, flags, generators):
        self.fn, self.static, self.flags = fn, static, flags
        Rerun.captures.append(fn)

    def replay(self):
        return self.fn(self.static, *self.flags)

    @staticmethod
    def warm(fn, *args):
        return fn(*args)


@pytest.mark.parametrize("name, captured", [("iql", 2), ("wsrl", 1), ("td3bc", 0)])
def test_graph_bookkeeping_replays_the_eager_updates(monkeypatch, name, captured):
    """With graphs forced on the CPU (the stand-in above; capturable Adam is CUDA-only, left out),
    2 x 12 updates give the eager metrics; IQL is captured in both phases, WSRL only offline
    (its fine-tuning update gathers batches on the host), TD3+BC never (a host counter), each
    refusal said in one line."""
    import harness.compile as hc

    monkeypatch.setattr(hc._Graphed, "graph_type", Rerun)
    monkeypatch.setattr(hc, "resolve", lambda mode, device: (True, True))
    monkeypatch.setattr(hc, "make_capturable", lambda algo: None)
    Rerun.captures = []
    eager, fast = build(name), build(name)
    assert accelerate(fast, "on", backend="eager") == (True, True)
    err = io.StringIO()
    with redirect_stderr(err):
        for phase in ("offline", "online"):
            if phase == "online":
                eager.on_finetune_start()
                fast.on_finetune_start()
            for i in range(12):
                want, got = eager.update_seeds(batch(i, K, chunk=eager.chunk)), fast.update_seeds(batch(i, K, chunk=eager.chunk))
                for key in want:
                    close(got[key], want[key], f"{name} {phase} update {i} metric {key}")
    assert len(Rerun.captures) == captured
    lines = [line for line in err.getvalue().splitlines() if line.startswith("compile: ")]
    assert len(lines) == {"iql": 0, "wsrl": 1, "td3bc": 2}[name], lines
    assert all(line.startswith(f"compile: {name}: no CUDA graph of its ") for line in lines)
