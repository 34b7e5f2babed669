"""Update-step speed of every built-in method with K seeds in one process:
`python -m harness.bench [--threads 2] [--seconds 3] [--seeds 1,4,10]`.

For each method, shape set and K it prints gradient updates per second of the K-seed model,
seed-updates per second (K times that: what a study of many seeds gets) and their ratio to K = 1.
Shape sets:
  mini      the PointMaze mini tasks (obs 4, act 2) with each yaml's pointmaze networks and batch
  paper     AntMaze sizes (obs 29, act 8) with each yaml's antmaze networks and batch
  corl      CORL's AntMaze networks (CQL / Cal-QL: Q 5x256 twin, actor 3x256; IQL, TD3+BC 2x256;
            AWAC 3x256), batch 256 (the shapes `../shared/peers/compare.sh` times the public
            implementations at, side by side with ours)
With `--job-updates N`: the wall time of a short AntMaze-size job (Cal-QL's antmaze settings,
a 1M-transition dataset of AntMaze's shapes on the device, N offline updates drawing their
batches through `harness.replay.Replay` as a run does) for K = 1 and K = 10 seeds.
Runs on CPU, and on CUDA when present. A script that prints figures, not a test.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec, SeedStreams
from harness.jobs import load_group, resolve_algorithm
from harness.launch import configure_torch

METHODS = ("cql", "calql", "iql", "td3bc", "awac")
CORL = {"cql": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 5},
        "calql": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 5},
        "iql": {"actor_hidden": (256,) * 2, "critic_hidden": (256,) * 2, "value_hidden": (256,) * 2},
        "td3bc": {"actor_hidden": (256,) * 2, "critic_hidden": (256,) * 2},
        "awac": {"actor_hidden": (256,) * 3, "critic_hidden": (256,) * 3}}


def shapes(name: str, which: str) -> tuple[int, int, int, dict]:
    """(obs_dim, act_dim, batch, hparams) of one shape set."""
    domain = {"paper": "antmaze", "mini": "pointmaze", "corl": "antmaze"}[which]
    cfg = resolve_algorithm(load_group("algorithm", name), domain)
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["hparams"].items()}
    if which == "corl":
        hp.update(CORL[name])
        if name in ("cql", "calql"):
            hp["cql_n_actions"] = 10
    obs, act = (4, 2) if which == "mini" else (29, 8)
    return obs, act, 256 if which == "corl" else cfg["replay"]["batch_size"], hp


def make_batch(obs: int, act: int, B: int, device, seeds: int = 1) -> Batch:
    """A fixed random batch for each of `seeds` seeds: fields (seeds, B, ...)."""
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.randn(seeds, *s, generator=g).to(device)  # noqa: E731
    return Batch(obs=t(B, obs), action=(torch.rand(seeds, B, act, generator=g) * 2 - 1).to(device), reward=t(B),
                 next_obs=t(B, obs), done=torch.zeros(seeds, B, device=device), mc_return=t(B))


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def updates_per_s(algo, batch, seconds: float) -> float:
    for _ in range(3):
        algo.update(batch)
    sync(algo.device)
    rates = []
    for _ in range(3):  # best of three windows: the machine may be shared
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            algo.update(batch)
            n += 1
        sync(algo.device)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def job_wall_time(K: int, updates: int, device, rows: int = 1_000_000) -> float:
    """Seconds for `updates` offline updates of K Cal-QL seeds at AntMaze sizes, batches from Replay."""
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
    for _ in range(3):
        algo.update(replay.sample(B, "mix", 1.0, True, rng))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(updates):
        algo.update(replay.sample(B, "mix", 1.0, True, rng))
    sync(device)
    return time.perf_counter() - t0


def loadavg() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return " ".join(f"{x:.2f}" for x in load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sets", default="mini,paper,corl")
    ap.add_argument("--seeds", default="1,4,10", help="K values: seeds trained together")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--job-updates", type=int, default=0, help="also time a short AntMaze-size job (0: skip)")
    args = ap.parse_args()
    configure_torch(args.threads)  # as the launchers do
    devices = [d for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    ks = [int(k) for k in args.seeds.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads, load average {loadavg()}")
    for dev in map(torch.device, devices):
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        print(f"\n{name}")
        print(f"{'method':<7} {'shapes':<6} {'obs/act/B':<10} {'networks (Q | pi)':<18} {'K':>3} {'updates/s':>10} "
              f"{'seed-upd/s':>11} {'x K=1':>6}")
        for which in args.sets.split(","):
            for m in args.methods.split(","):
                obs, act, B, hp = shapes(m, which)
                nets = f"{len(hp['critic_hidden'])}x{hp['critic_hidden'][0]} | {len(hp['actor_hidden'])}x{hp['actor_hidden'][0]}"
                base = None
                for K in ks:
                    algo = algorithms.make(m, ObsSpec((obs,)), ActionSpec(act), hp, dev,
                                           SeedStreams.from_seeds(range(K), dev))
                    rate = updates_per_s(algo, make_batch(obs, act, B, dev, K), args.seconds)
                    base = rate if base is None and K == 1 else base
                    ratio = f"{K * rate / base:6.2f}" if base else "     -"
                    print(f"{m:<7} {which:<6} {f'{obs}/{act}/{B}':<10} {nets:<18} {K:>3} {rate:10.1f} "
                          f"{K * rate:11.1f} {ratio}", flush=True)
                    del algo
        if args.job_updates:
            one, ten = (job_wall_time(K, args.job_updates, dev) for K in (1, 10))
            print(f"\nAntMaze-size Cal-QL job, {args.job_updates} updates: K=1 {one:.1f} s, K=10 {ten:.1f} s "
                  f"(K=10 / K=1 wall time {ten / one:.2f}x; target <= 1.5x on a GPU)", flush=True)
    print(f"\nload average at the end {loadavg()}")


if __name__ == "__main__":
    main()
