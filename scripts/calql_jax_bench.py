"""Updates per second of the official Cal-QL update (nakamotoo/Cal-QL, JAX: JaxCQL/conservative_sac.py
with its model.py networks), on one fixed random batch, at the shapes `harness.bench` times ours:

    python scripts/calql_jax_bench.py JAXCQL_PARENT [SECONDS=3]

JAXCQL_PARENT: a folder holding the official `JaxCQL` package (`scripts/gpu_check.sh --prepare`
copies it into the git-ignored `.gpu_peers/calql_jax`). Settings as the official AntMaze script
(scripts/run_antmaze.sh): cql_min_q_weight 5, Lagrange with target gap 0.8, 10 CQL actions, max
target backup, enable_calql, batch 256; networks per shape set: paper = its policy 256-256 and Q
256-256-256-256, corl = CORL's policy 3x256 and Q 5x256. The first calls (jit compilation) are
not timed; each window ends with `block_until_ready` on the metrics. With a JAX that dropped
`jnp.clip(a_min=, a_max=)` (which the official code calls), those names are mapped to min / max. Prints one line per set:
`calql_jax <set> <updates/s>`. No code of the official repository is here: it is imported.
"""
import sys
import time

S, A, B = 29, 8, 256
SETS = {"paper": ("256-256", "256-256-256-256"), "corl": ("256-256-256", "256-256-256-256-256")}


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.splitlines()[3].strip())
    sys.path.insert(0, sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    import inspect

    import jax
    import jax.numpy as jnp
    import numpy as np

    clip = jnp.clip
    if "a_min" not in inspect.signature(clip).parameters:
        # newer JAX dropped clip's a_min / a_max names, which the official code passes: the same clip
        jnp.clip = lambda a, a_min=None, a_max=None, **kw: clip(a, kw.pop("min", a_min), kw.pop("max", a_max), **kw)  # noqa: E731
    from JaxCQL.conservative_sac import ConservativeSAC
    from JaxCQL.jax_utils import batch_to_jax, init_rng
    from JaxCQL.model import FullyConnectedQFunction, TanhGaussianPolicy

    print(f"jax {jax.__version__} on {jax.devices()[0]}", flush=True)
    init_rng(0)
    g = np.random.default_rng(0)
    batch = batch_to_jax({"observations": g.standard_normal((B, S), np.float32),
                          "actions": g.uniform(-1, 1, (B, A)).astype(np.float32),
                          "rewards": g.standard_normal(B).astype(np.float32),
                          "next_observations": g.standard_normal((B, S), np.float32),
                          "dones": np.zeros(B, np.float32), "mc_returns": g.standard_normal(B).astype(np.float32)})
    for name, (policy_arch, qf_arch) in SETS.items():
        policy = TanhGaussianPolicy(S, A, policy_arch, True, 1.0, -1.0)
        qf = FullyConnectedQFunction(S, A, qf_arch, True)
        config = ConservativeSAC.get_default_config({"cql_lagrange": True, "cql_target_action_gap": 0.8,
                                                     "target_entropy": -float(A)})
        sac = ConservativeSAC(config, policy, qf)
        step = lambda: sac.train(batch, use_cql=True, cql_min_q_weight=5.0, enable_calql=True)  # noqa: E731
        t0 = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(step())
        warm = time.perf_counter() - t0
        best = 0.0
        for _ in range(3):  # best of three windows
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3:
                metrics = step()
                n += 1
            jax.block_until_ready(metrics)
            best = max(best, n / (time.perf_counter() - t0))
        print(f"calql_jax {name} {best:.1f} updates/s (policy {policy_arch}, Q {qf_arch}, batch {B}; "
              f"jit + 3 warm-up updates {warm:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
