"""Update-step speed of every built-in method with K seeds in one process:
`python -m harness.bench [--threads 2] [--seconds 3] [--seeds 1,4,10]`.

For each method, shape set and K it prints gradient updates per second of the K-seed model,
seed-updates per second (K times that: what a study of many seeds gets), their ratio to K = 1,
the matrix-multiply FLOPs of one seed's update (counted by torch's FlopCounterMode at K = 1:
forward and backward) and the fraction of the matmul peak measured in the same run (a 2048^3
fp32 matmul) that the K seeds reach together.
Shape sets:
  mini      the PointMaze mini tasks (obs 4, act 2) with each yaml's pointmaze networks and batch
  paper     AntMaze sizes (obs 29, act 8) with each yaml's antmaze networks and batch
  ogbench   OGBench manipulation sizes (cube-double: obs 37, act 5) with each yaml's ogbench networks
            and batch: FQL's official sizes (4x512 networks, batch 256; QC / QC-FQL on chunks of 5)
  corl      CORL's AntMaze networks (CQL / Cal-QL: Q 5x256 twin, actor 3x256; IQL, TD3+BC 2x256;
            AWAC 3x256), batch 256 (the shapes `../shared/peers/compare.sh` times the public
            implementations at, side by side with ours)
  checkpoint  one checkpoint of an AntMaze-size run (1M offline transitions, online buffer empty,
            half and full at 1M steps, Cal-QL's paper networks, one seed): its size, the time to
            write it and its share of the run time between checkpoints (the task yaml's
            checkpoint_every), at the update rate measured here (K = 1) and at the config's GPU
            rate; goal: at most 2%
The update measured is the pre-training one (WSRL: Cal-QL's with its ensemble); `--finetune`
measures the fine-tuning update instead (after `on_finetune_start`; WSRL: its SAC step).
With `--job-updates N`: the wall time of a short AntMaze-size job (Cal-QL's antmaze settings,
a 1M-transition dataset of AntMaze's shapes on the device, N offline updates drawing their
batches through `harness.replay.Replay` as a run does) for K = 1 and K = 10 seeds.
Runs on CPU, and on CUDA when present. A script that prints figures, not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec, SeedStreams
from harness.compile import CALM_CALLS, WARMUP_CALLS, accelerate
from harness.config import CONF_DIR, load_group, resolve_algorithm, standalone_hparams
from harness.launch import configure_torch

# --modes: eager; compiled (harness.compile without CUDA graphs); graphs (compiled + CUDA graphs, CUDA only)
MODE_OF = {"eager": "off", "compiled": "on", "graphs": "on"}
WARMUP = {"off": 3, "on": 2 + CALM_CALLS + WARMUP_CALLS + 3, "auto": 2 + CALM_CALLS + WARMUP_CALLS + 3}  # past capture
METHODS = ("cql", "calql", "iql", "td3bc", "awac", "rlpd", "wsrl", "fql", "qc", "qcfql")
FLOP_UPDATES = 20  # FLOPs averaged over this many updates: a multiple of every actor period (2, 4, 20)
CORL = {"cql": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 5},
        "calql": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 5},
        "iql": {"actor_hidden": (256,) * 2, "critic_hidden": (256,) * 2, "value_hidden": (256,) * 2},
        "td3bc": {"actor_hidden": (256,) * 2, "critic_hidden": (256,) * 2},
        "awac": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 3}}


SET_DOMAINS = {"paper": "antmaze", "mini": "pointmaze", "corl": "antmaze", "ogbench": "ogbench"}  # --sets: shapes of


def shapes(name: str, which: str) -> tuple[int, int, int, dict]:
    """(obs_dim, act_dim, batch, hparams) of one shape set."""
    domain = SET_DOMAINS[which]
    cfg = resolve_algorithm(load_group("algorithm", name), domain)
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in standalone_hparams(cfg).items()}
    if which == "corl":
        hp.update(CORL[name])
        if name in ("cql", "calql"):
            hp["cql_n_actions"] = 10
    obs, act = {"mini": (4, 2), "ogbench": (37, 5)}.get(which, (29, 8))
    return obs, act, 256 if which == "corl" else cfg["replay"]["batch_size"], hp


def make_batch(obs: int, act: int, B: int, device, seeds: int = 1, chunk: int = 1) -> Batch:
    """A fixed random batch for each of `seeds` seeds: fields (seeds, B, ...); chunks of `chunk`
    actions (every step valid) for a method with chunk > 1."""
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.randn(seeds, *s, generator=g).to(device)  # noqa: E731
    return Batch(obs=t(B, obs), action=(torch.rand(seeds, B, chunk * act, generator=g) * 2 - 1).to(device),
                 reward=t(B), next_obs=t(B, obs), done=torch.zeros(seeds, B, device=device), mc_return=t(B),
                 valid=torch.ones(seeds, B, chunk, device=device) if chunk > 1 else None)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def updates_per_s(algo, batch, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        algo.update_seeds(batch)
    sync(algo.device)
    rates = []
    for _ in range(3):  # best of three windows: the machine may be shared
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            algo.update_seeds(batch)
            n += 1
        sync(algo.device)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def job_wall_time(K: int, updates: int, device, rows: int = 1_000_000, compile: str = "off") -> float:
    """Seconds for `updates` offline updates of K Cal-QL seeds at AntMaze sizes, batches from Replay
    (`compile`: harness.compile's mode; its warm-up, compiling and capturing, is not timed)."""
    import numpy as np

    from harness.replay import Replay

    obs, act, B, hp = shapes("calql", "paper")
    g = np.random.default_rng(0)
    data = {"obs": g.standard_normal((rows, obs), np.float32), "action": g.uniform(-1, 1, (rows, act)).astype(np.float32),
            "reward": g.standard_normal(rows).astype(np.float32), "next_obs": g.standard_normal((rows, obs), np.float32),
            "done": np.zeros(rows, np.float32), "mc_return": g.standard_normal(rows).astype(np.float32)}
    rng = SeedStreams.from_seeds(range(K), device)
    replay = Replay(data, 0, device, 0.99, None, K)
    algo = algorithms.make("calql", ObsSpec((obs,)), ActionSpec(act), hp, device, rng)
    accelerate(algo, compile)
    for _ in range(WARMUP[compile]):
        algo.update_seeds(replay.sample(B, "mix", 1.0, True, rng))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(updates):
        algo.update_seeds(replay.sample(B, "mix", 1.0, True, rng))
    sync(device)
    return time.perf_counter() - t0


def update_flops(algo, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        for _ in range(FLOP_UPDATES):  # actors that step every k-th update: TD3+BC 2, WSRL 4, RLPD 20
            algo.update(batch)
    return counter.get_total_flops() // FLOP_UPDATES


def matmul_peak(device, n: int = 2048) -> float:
    """fp32 FLOP/s of an n^3 matmul (best of a few)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def loadavg() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return " ".join(f"{x:.2f}" for x in load)


def checkpoint_costs(device, rates: dict[str, float], n_offline: int = 1_000_000,
                     online_steps: int = 1_000_000, task: str = "antmaze-large-diverse") -> None:
    """Prints, per fill of the online buffer, the size and writing time of a checkpoint as the
    runner writes it (networks, optimizers, the online buffer's filled rows; torch.save, then an
    atomic write with fsync) and its share of the run time between two checkpoints."""
    import io
    import tempfile
    from pathlib import Path

    import numpy as np

    from harness.replay import Replay
    from harness.store import atomic_write

    protocol = load_group("task", task).protocol
    every, utd = int(protocol.checkpoint_every), int(protocol.utd)
    obs, act, _, hp = shapes("calql", "paper")
    algo = algorithms.make("calql", ObsSpec((obs,)), ActionSpec(act), hp, device)
    rng = np.random.default_rng(0)
    rows = lambda n: {"obs": rng.standard_normal((n, obs), np.float32), "action": rng.uniform(-1, 1, (n, act)).astype(np.float32),  # noqa: E731
                      "reward": np.zeros(n, np.float32), "next_obs": rng.standard_normal((n, obs), np.float32),
                      "done": np.zeros(n, np.float32), "mc_return": np.zeros(n, np.float32)}
    replay = Replay(rows(n_offline), online_steps, device, 0.99, 0.0)
    online = rows(online_steps)
    print(f"\ncheckpoint of a {task}-size run ({n_offline:,} offline transitions, {online_steps:,} online steps, "
          f"calql paper networks), one every {every:,} steps (utd {utd}):")
    print(f"{'online rows':>12} {'size MB':>9} {'write s':>8}  share of run time between checkpoints")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for fill in (0.0, 0.5, 1.0):
            n = int(fill * online_steps)
            for key, arr in online.items():  # the filled rows, as commit() writes them
                replay.storage[key][replay.n_offline:replay.n_offline + n] = torch.as_tensor(arr[:n], device=device)
            replay.n_online = [n]
            t0 = time.perf_counter()
            buf = io.BytesIO()
            torch.save({"algorithm": algo.state_dict(), "replay": replay.online_state()}, buf)
            atomic_write(Path(tmp) / "state.pt", buf.getvalue())
            seconds = time.perf_counter() - t0
            shares = ", ".join(f"{100 * seconds / (every * utd / rate + seconds):.3f}% at {rate:g} updates/s ({where})"
                               for where, rate in rates.items())
            print(f"{n:>12,} {len(buf.getvalue()) / 2**20:9.1f} {seconds:8.2f}  {shares}", flush=True)


def method_rates(args, dev: torch.device, ks: list[int], peak: float, modes: list[str],
                 started: float) -> dict[tuple[str, str], float]:
    """One table row per (method, shape set, K, mode): updates/s, their ratio to K = 1 and to eager,
    FLOP use and the seconds of warm-up (compiling, capturing); returns the eager K = 1 rates."""
    measured = {}
    for which in args.sets.split(","):
        if which == "checkpoint":
            continue
        for m in args.methods.split(","):
            if which == "corl" and m not in CORL:  # methods CORL has no implementation of
                continue
            obs, act, B, hp = shapes(m, which)
            nets = f"{len(hp['critic_hidden'])}x{hp['critic_hidden'][0]} | {len(hp['actor_hidden'])}x{hp['actor_hidden'][0]}"
            base, flops = {}, None
            for K in ks:
                if flops is None:  # one seed's update; K seeds cost K times that
                    one = algorithms.make(m, ObsSpec((obs,)), ActionSpec(act), hp, dev, SeedStreams.from_seeds([0], dev))
                    if args.finetune:
                        one.on_finetune_start()
                    flops = update_flops(one, make_batch(obs, act, B, dev, 1, one.chunk))
                for mode in modes:
                    label = f"{m:<7} {which:<6} {f'{obs}/{act}/{B}':<10} {nets:<18} {K:>3} {mode:<8}"
                    if mode != "eager" and time.monotonic() - started > args.budget:
                        print(f"{label} skipped: past --budget {args.budget:g} s", flush=True)
                        continue
                    algo = algorithms.make(m, ObsSpec((obs,)), ActionSpec(act), hp, dev,
                                           SeedStreams.from_seeds(range(K), dev))
                    if args.finetune:
                        algo.on_finetune_start()
                    accelerate(algo, MODE_OF[mode], graphs=mode == "graphs")
                    batch = make_batch(obs, act, B, dev, K, algo.chunk)
                    t0 = time.monotonic()
                    rate = updates_per_s(algo, batch, args.seconds, WARMUP[MODE_OF[mode]])
                    warm = time.monotonic() - t0 - args.seconds
                    base.setdefault((mode, 1), rate if K == 1 else None)
                    if K == 1 and mode == "eager":
                        measured[(m, which)] = rate
                    one_k = base.get((mode, 1))
                    ratio = f"{K * rate / one_k:6.2f}" if one_k else "     -"
                    vs_eager = base.get(("eager", K))
                    print(f"{label} {rate:10.1f} {K * rate:11.1f} {ratio} "
                          f"{(f'{rate / vs_eager:6.2f}' if vs_eager and mode != 'eager' else '     -')} "
                          f"{flops / 1e6:15.1f} {100 * K * rate * flops / peak:6.1f}% {warm:7.1f}", flush=True)
                    base[(mode, K)] = rate
                    del algo
    return measured


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)  # the front door's code for bad input


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sets", default="mini,paper,ogbench,corl,checkpoint")
    ap.add_argument("--seeds", default="1,4,10", help="K values: seeds trained together")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--job-updates", type=int, default=0, help="also time a short AntMaze-size job (0: skip)")
    ap.add_argument("--finetune", action="store_true", help="measure the fine-tuning update")
    ap.add_argument("--modes", default="eager", help="eager,compiled,graphs (harness.compile; graphs: CUDA only)")
    ap.add_argument("--budget", type=float, default=float("inf"),
                    help="seconds after which compiled rows are skipped (compiling costs seconds per row)")
    args = ap.parse_args()
    sets = set(args.sets.split(","))
    if sets - {*SET_DOMAINS, "checkpoint"}:
        refuse(f"unknown --sets {sorted(sets - {*SET_DOMAINS, 'checkpoint'})}; choose from "
               f"{', '.join([*SET_DOMAINS, 'checkpoint'])}")
    unknown = sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        refuse(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    started = time.monotonic()
    configure_torch(args.threads)  # as the launchers do
    devices = [d for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    ks = [int(k) for k in args.seeds.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads, load average {loadavg()}")
    for dev in map(torch.device, devices):
        modes = [mode for mode in args.modes.split(",") if mode != "graphs" or dev.type == "cuda"]
        unknown = sorted(set(modes) - set(MODE_OF))
        if unknown:
            refuse(f"unknown --modes {unknown}; choose from {', '.join(MODE_OF)}")
        peak = matmul_peak(dev)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        print(f"\n{name}: matmul peak {peak / 1e9:.0f} GFLOP/s (fp32, 2048^3)")
        print(f"{'method':<7} {'shapes':<6} {'obs/act/B':<10} {'networks (Q | pi)':<18} {'K':>3} {'mode':<8} "
              f"{'updates/s':>10} {'seed-upd/s':>11} {'x K=1':>6} {'x eager':>6} {'MFLOP/seed-upd':>15} {'% peak':>7} "
              f"{'warm s':>7}")
        measured = method_rates(args, dev, ks, peak, modes, started)
        if "checkpoint" in args.sets.split(","):
            from omegaconf import OmegaConf

            cost = OmegaConf.load(CONF_DIR / "config.yaml").cost
            rates = {"measured here": measured[("calql", "paper")]} if ("calql", "paper") in measured else {}
            rates["config cost table"] = float(cost.gpu_updates_per_s.get("calql", cost.default_updates_per_s))
            checkpoint_costs(dev, rates)
        if args.job_updates:
            for compile in (["off", "auto"] if dev.type == "cuda" else ["off"]):
                one, ten = (job_wall_time(K, args.job_updates, dev, compile=compile) for K in (1, 10))
                print(f"\nAntMaze-size Cal-QL job, {args.job_updates} updates, compile={compile}: K=1 {one:.1f} s, "
                      f"K=10 {ten:.1f} s (K=10 / K=1 wall time {ten / one:.2f}x; target <= 1.5x on a GPU)", flush=True)
    print(f"\nload average at the end {loadavg()}")


if __name__ == "__main__":
    main()
