"""Updates/s of every method on visual-pick-place image batches (uint8 replay -> encoder -> update),
with each method's `visual` domain settings from its yaml; also env step+render/s.
Usage: python scripts/bench_images.py [--batch 256] [--updates 10] [--small] [--methods calql,cql]"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
import torch  # noqa: E402

import algorithms  # noqa: E402
import tasks  # noqa: E402
from harness.config import load_group, resolve_algorithm, standalone_hparams  # noqa: E402
from harness.replay import Replay  # noqa: E402

SMALL = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "encoder_channels": [16, 16], "encoder_feature_dim": 32}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--small", action="store_true", help="CPU-sized nets: " + str(SMALL))
    p.add_argument("--methods", default=",".join(algorithms.available()))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    task = tasks.get("visual-pick-place")
    env = task.make_env(0)
    env.reset(seed=0)
    t0, n = time.perf_counter(), 0
    while n < 200:
        *_, term, trunc, _ = env.step(env.action_space.sample())
        n += 1
        if term or trunc:
            env.reset()
    print(f"env step+render: {n / (time.perf_counter() - t0):.0f}/s ({task.image_shape[1]}px)")
    env.close()
    data = task.load_dataset()
    device = torch.device(args.device)
    replay = Replay.from_dataset(data, 0, device, 0.99, 0.0)
    spec = algorithms.ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim)
    for name in args.methods.split(","):
        cfg = resolve_algorithm(load_group("algorithm", name), task.domain)
        hparams = standalone_hparams(cfg)
        if args.small:
            hparams.update({k: v for k, v in SMALL.items() if k in algorithms.get(name).Config.__dataclass_fields__})
        algo = algorithms.make(name, spec, algorithms.ActionSpec(task.act_dim), hparams, device)
        mc = "mc_return" in algo.needs
        algo.update(replay.sample(args.batch, "mix", 1.0, mc))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.updates):
            m = algo.update(replay.sample(args.batch, "mix", 1.0, mc))
        float(next(iter(m.values())))
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(f"{name:<6} batch {args.batch} {'small' if args.small else 'yaml'} nets: "
              f"{args.updates / (time.perf_counter() - t0):.2f} updates/s")


if __name__ == "__main__":
    main()
