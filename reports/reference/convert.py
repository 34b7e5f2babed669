"""Converters: each regenerates one source's CSV in reports/reference/ from its public files.

    python -m reports.reference.convert qc   --git /path/to/ColinQiyangLi/qc.git
    python -m reports.reference.convert qam  --dir /path/to/qam-checkout --commit <sha>
    python -m reports.reference.convert corl --git /path/to/tinkoff-ai/CORL.git

`--git` reads the files at the repository's HEAD (a bare clone is enough) and records its commit;
`--dir` reads a checkout (or a folder of files in the published layout) and `--commit` names it.
The published pickles are read with an unpickler that builds numpy arrays and nothing else, and
are never copied into this repository: only the numbers, as CSV.

Sources (what each file holds is documented on its converter):
- qc: ColinQiyangLi/qc `plot_data/` (Li, Zhou, Levine 2025, "Reinforcement Learning with Action
  Chunking"): mean success and 95% bootstrap CI per (task, method), every 100K steps.
- qam: ColinQiyangLi/qam `exp_data/` (Li, Levine 2026, "Q-learning with Adjoint Matching"):
  success of 12 seeds every 50K steps per (task, method).
- corl: tinkoff-ai/CORL `results/bin/finetune_scores.pickle` with the protocol of each run from
  `configs/finetune/` (Tarasov et al. 2023): per-seed offline-to-online normalized scores and regret.
"""
from __future__ import annotations

import argparse
import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reports.reference import COLUMNS, REFERENCE_DIR

REPOSITORIES = {"qc": "ColinQiyangLi/qc", "qam": "ColinQiyangLi/qam", "corl": "tinkoff-ai/CORL"}


# -- reading the published files ------------------------------------------------------------------
class Files:
    """The files of one source: a checkout / folder (`root`) or a git directory (`git`, at HEAD)."""

    def __init__(self, root=None, git=None, commit: str = ""):
        if (root is None) == (git is None):
            raise ValueError("give exactly one of a folder (--dir) or a git directory (--git)")
        self.root, self.git = (Path(root) if root else None), (Path(git) if git else None)
        self.commit = commit or (self._git("rev-parse", "HEAD").decode().strip() if git else "")
        if not self.commit:
            raise ValueError("name the commit the files come from with --commit SHA")

    def _git(self, *args) -> bytes:
        r = subprocess.run(["git", "-C", str(self.git), *args], capture_output=True)
        if r.returncode:
            raise FileNotFoundError(f"git {' '.join(args)} in {self.git}: {r.stderr.decode().strip()}")
        return r.stdout

    def read(self, path: str) -> bytes:
        if self.git:
            return self._git("show", f"HEAD:{path}")
        return (self.root / path).read_bytes()

    def listdir(self, folder: str) -> list[str]:
        if self.git:
            return self._git("ls-tree", "-r", "--name-only", "HEAD", folder).decode().split()
        base = self.root / folder
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())


class _ArraysOnly(pickle.Unpickler):
    """Builds dicts, lists, tuples, numbers and numpy arrays; refuses every other class."""
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype")} | {
        (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a reference pickle holds only numpy arrays")


def load_pickle(data: bytes):
    return _ArraysOnly(io.BytesIO(data)).load()


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in ("score", "ci_low", "ci_high"):  # the published values are rounded far coarser
        if col in frame:
            frame[col] = frame[col].astype(float).round(4)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = np.nan if col not in ("notes",) else ""
    return frame[COLUMNS]


# -- qc ---------------------------------------------------------------------------------------------
# QC's README (commands) and main.py / main_online.py defaults: offline 1M + online 1M, 50 eval
# episodes; action chunk h = 5 for QC, QC-FQL, QC-IFQL, RLPD-AC, QC-RLPD; FQL-n and BFN-n use
# 5-step returns with single actions (chunk 1); RLPD, RLPD-AC, QC-RLPD, SUPE-GT run online only.
QC_CHUNKED = {"QC", "QC-FQL", "QC-IFQL", "RLPD-AC", "QC-RLPD"}
QC_ONLINE_ONLY = {"RLPD", "RLPD-AC", "QC-RLPD", "SUPE-GT"}
QC_FILES = ["plot_data/ogbench-individual.pkl", "plot_data/robomimic-individual.pkl"]
# QC's requirements.txt pins ogbench==1.1.2, whose single-task envs reward s' ('post'); its README:
# "For `scene` and `puzzle-3x3` domains, use `--sparse=True`" (main.py's -1 / 0 reward).
QC_TIMING = "post"
QC_SPARSE = ("scene", "puzzle-3x3")


def qc_dataset(task: str) -> str:
    """QC's dataset per task: OGBench's play data (the 100M-transition one for cube-quadruple,
    QC's README), robomimic's multi-human low-dim data."""
    if task in ("lift", "can", "square"):
        return f"robomimic {task}/mh/low_dim_v15"
    env = task.rsplit("-task", 1)[0]
    return f"{env}-100m-v0" if env.startswith("cube-quadruple") else f"{env}-v0"


def convert_qc(files: Files) -> pd.DataFrame:
    """QC's plot data: per (task, method) the mean success and its 95% bootstrap CI (5000
    samples) at 21 points, 0 to 2M steps every 100K (11 points, 1M to 2M, for the online-only
    baselines, whose step here counts from their start: QC's x axis minus 1M). Seeds are not
    published: every row is `aggregate`. The domain averages (`ogbench-agg.pkl`) are left out:
    the report averages the per-task rows of the tasks it compares. Scores x 100."""
    rows = []
    for path in QC_FILES:
        data = load_pickle(files.read(path))
        for (task, method), entry in sorted(data.items()):
            chunk = 5 if method in QC_CHUNKED else 1
            online_only = method in QC_ONLINE_ONLY
            ogbench = task not in ("lift", "can", "square")
            sparse = task.startswith(QC_SPARSE)
            steps = np.asarray(entry["steps"], float) * 1e6 - (1e6 if online_only else 0.0)
            for s, m, lo, hi in zip(steps, *(np.asarray(entry[k], float) for k in ("means", "ci_lows", "ci_highs"))):
                rows.append({"source": "qc", "repository": REPOSITORIES["qc"], "commit": files.commit, "file": path,
                             "key": repr((task, method)), "method": method, "task": task,
                             "dataset": qc_dataset(task), "success_timing": QC_TIMING if ogbench else "n/a",
                             "reward": ("sparse" if sparse else "dense") if ogbench else "n/a",
                             "offline_steps": 0 if online_only else 1_000_000,
                             "online_steps": 1_000_000, "eval_episodes": 50, "chunk": chunk,
                             "metric": "normalized_score", "step": int(round(s)), "seed": "aggregate",
                             "score": 100 * m, "ci_low": 100 * lo, "ci_high": 100 * hi})
    return _frame(rows)


# -- qam --------------------------------------------------------------------------------------------
# QAM's experiments/reproduce.py and reproduce_rlpd.py: offline 1M + online 500K (RLPD: online
# 500K only), evaluation every 50K steps with 50 episodes (main.py), chunk 5 on manipulation and 1
# on antmaze/humanoidmaze, the 100M-transition data for cube-quadruple and puzzle-4x4, sparse
# rewards (`--sparse=True`, main.py) on its "-sparse" domains: scene, puzzle-3x3 and puzzle-4x4.
# Success timing unknown: requirements.txt (and README: `pip install -r requirements.txt`) leaves
# ogbench unpinned and main.py / envs/ passes no success_timing, so the runs used whatever ogbench
# was installed ('post' up to 1.1.5, 'pre' from 1.2.0 of 2025-10-20; the repository appeared
# 2026-01-20): left empty, which never matches (ColinQiyangLi/qam@f93efd2).
QAM_SPARSE = ("scene", "puzzle-3x3", "puzzle-4x4")
QAM_FILE = "exp_data/qam-exp-data.pkl"
QAM_METHODS = ("FQL", "RLPD")  # the methods with a counterpart in our registry (names.METHODS)
QAM_OFFLINE_EVERY = 200_000  # offline evaluations kept (every online one is kept)


def qam_dataset(task: str) -> str:
    env = task.split("-singletask")[0]
    return f"{env}-100m-v0" if env.startswith(("cube-quadruple", "puzzle-4x4")) else f"{env}-v0"


def convert_qam(files: Files, methods=QAM_METHODS, offline_every: int = QAM_OFFLINE_EVERY) -> pd.DataFrame:
    """QAM's main results: per (task, method) an array (evaluations, 12 seeds) of success rates,
    evaluation k (from 1) at k x 50K steps. Kept: the per-task keys (`...-singletask-taskN-v0`;
    the domain and `all` averages are left out) of `methods` (default: those we can compare,
    QAM_METHODS; all 17 would be ~50 MB of CSV), every online evaluation and the offline ones at
    multiples of `offline_every` (the end of pre-training included). The quality and sensitivity ablations
    (`qam-exp-data-{quality,sensitive}.pkl`) are not converted. Scores x 100."""
    data = load_pickle(files.read(QAM_FILE))
    rows = []
    for (task, method), arr in sorted(data.items()):
        if "-singletask-" not in task or (methods and method not in methods):
            continue
        arr = np.asarray(arr, float)
        online_only = method == "RLPD"
        offline = 0 if online_only else 1_000_000
        chunk = 1 if task.startswith(("antmaze", "humanoidmaze")) else 5
        sparse = task.startswith(QAM_SPARSE)
        for k, evals in enumerate(arr, start=1):
            if 50_000 * k < offline and (50_000 * k) % offline_every:
                continue
            for seed, v in enumerate(evals):
                rows.append({"source": "qam", "repository": REPOSITORIES["qam"], "commit": files.commit,
                             "file": QAM_FILE, "key": repr((task, method)), "method": method, "task": task,
                             "dataset": qam_dataset(task), "success_timing": np.nan,
                             "reward": "sparse" if sparse else "dense", "offline_steps": offline, "online_steps": 500_000,
                             "eval_episodes": 50, "chunk": chunk, "metric": "normalized_score",
                             "step": 50_000 * k, "seed": str(seed), "score": 100 * v})
    return _frame(rows)


# -- corl -------------------------------------------------------------------------------------------
CORL_FILE = "results/bin/finetune_scores.pickle"
CORL_CONFIG_DIR = {"AWAC": "awac", "CQL": "cql", "IQL": "iql", "SPOT": "spot", "Cal-QL": "cal_ql"}
CORL_EVERY = 50_000  # keep one evaluation per 50K steps (Adroit is evaluated every 5K: 400 points)


def corl_config(files: Files, method: str, dataset: str) -> dict:
    """(offline, online, eval interval, eval episodes) of CORL's config for a method and dataset,
    e.g. configs/finetune/cal_ql/antmaze/large_diverse_v2.yaml (AWAC names its keys differently)."""
    domain, rest = dataset.split("-", 1)
    path = f"configs/finetune/{CORL_CONFIG_DIR[method]}/{domain}/{rest.replace('-', '_')}.yaml"
    cfg = yaml.safe_load(files.read(path))
    return {"offline_steps": int(cfg["offline_iterations"]), "online_steps": int(cfg["online_iterations"]),
            "eval_every": int(cfg.get("eval_freq", cfg.get("eval_frequency"))),
            "eval_episodes": int(cfg.get("n_episodes", cfg.get("n_test_episodes")))}


def convert_corl(files: Files, every: int = CORL_EVERY) -> pd.DataFrame:
    """CORL's offline-to-online results: {method: {dataset: [(offline scores, online scores,
    regret) per seed]}}, the D4RL normalized score of every evaluation (one per `eval_freq`
    steps, offline then online) and the run's final `eval/regret`. The README's tables are
    these numbers (last offline -> last online, mean ± std of 4 seeds). Kept: every evaluation
    at a multiple of `every` steps (all of AntMaze's; every tenth of Adroit's), the regret at
    the last step. Protocol from configs/finetune/<method>/<domain>/<dataset>.yaml."""
    data = load_pickle(files.read(CORL_FILE))
    rows = []
    for method, by_dataset in sorted(data.items()):
        for dataset, runs in sorted(by_dataset.items()):
            cfg = corl_config(files, method, dataset)
            base = {"source": "corl", "repository": REPOSITORIES["corl"], "commit": files.commit, "file": CORL_FILE,
                    "method": method, "task": dataset, "dataset": dataset, "success_timing": "n/a", "reward": "n/a",
                    "offline_steps": cfg["offline_steps"],
                    "online_steps": cfg["online_steps"], "eval_episodes": cfg["eval_episodes"], "chunk": 1}
            total = cfg["offline_steps"] + cfg["online_steps"]
            for seed, (offline, online, regret) in enumerate(runs):
                scores = np.concatenate([np.asarray(offline, float), np.asarray(online, float)])
                steps = cfg["eval_every"] * np.arange(1, len(scores) + 1)
                key = repr((method, dataset, seed))
                for s, v in zip(steps, scores):
                    if s % every == 0 or s == total:
                        rows.append({**base, "key": key, "metric": "normalized_score", "step": int(s),
                                     "seed": str(seed), "score": float(v)})
                if regret is not None:
                    rows.append({**base, "key": key, "metric": "regret", "step": total, "seed": str(seed),
                                 "score": float(regret), "notes": "CORL eval/regret: 1 - success rate of the "
                                                                  "online training episodes"})
    return _frame(rows)


CONVERTERS = {"qc": convert_qc, "qam": convert_qam, "corl": convert_corl}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.reference.convert", description=__doc__.split("\n")[0])
    p.add_argument("source", choices=sorted(CONVERTERS))
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--git", help="git directory of the source repository (read at HEAD)")
    where.add_argument("--dir", help="checkout or folder of the source's files in the published layout")
    p.add_argument("--commit", default="", help="the commit the --dir files come from")
    p.add_argument("--out", default=None, help="CSV to write (default reports/reference/<source>.csv)")
    args = p.parse_args(argv)
    try:
        files = Files(root=args.dir, git=args.git, commit=args.commit)
        frame = CONVERTERS[args.source](files)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError, yaml.YAMLError) as exc:
        print(f"error: converting {args.source}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else REFERENCE_DIR / f"{args.source}.csv"
    from reports.files import write_csv
    write_csv(frame, out)
    print(f"{out}: {len(frame)} rows from {REPOSITORIES[args.source]}@{files.commit[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
