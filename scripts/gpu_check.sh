#!/usr/bin/env bash
# Every GPU figure of the compiled / CUDA-graph update path in one command of at most 8 minutes:
#   1. CORL's Cal-QL, CQL and IQL (PyTorch, unmodified files) at CORL's AntMaze shapes, on the GPU;
#   2. the official Cal-QL JAX update (nakamotoo/Cal-QL, JaxCQL) at the paper's and CORL's shapes;
#   3. updates/s per seed of every method at CORL's and the paper's shapes, K = 1 and 10 seeds in
#      one process, eager vs compiled vs compiled + CUDA graphs (`harness.bench --modes`; compiled
#      rows stop after --budget seconds, each row says how long its warm-up and compile took);
#   4. the wall time of a short AntMaze-size Cal-QL job with K = 1 and K = 10, eager and compile=auto.
# It runs with whatever torch the machine's python has (a GPU image's own CUDA build) and prints
# its version. Output goes to stdout and, when $OUT is set, to $OUT/gpu_check.txt.
#
#   bash scripts/gpu_check.sh --prepare PEERS_DIR CALQL_GIT_DIR
#       on a machine with PyPI access: fills the git-ignored .gpu_peers/ (CORL's files and the
#       peers' driver from PEERS_DIR, i.e. ../shared/peers; JaxCQL from a clone or mirror of
#       nakamotoo/Cal-QL; wheels of the pure-Python packages the GPU image may lack). The GPU
#       machine gets only the checkout, so .gpu_peers must travel with it (e.g. as a carried path).
#   bash scripts/gpu_check.sh [SECONDS_PER_FIGURE=1] [COMPILED_BUDGET_S=150] [JOB_UPDATES=1000]
#       on the GPU machine, from the repository root.
#   bash scripts/gpu_check.sh --dry
#       the same steps on the CPU at toy sizes (seconds, not minutes): checks the script, the
#       prepared folder and the drivers without a GPU.
set -uo pipefail
peers=.gpu_peers
if [ "${1:-}" = "--prepare" ]; then
  src=${2:?usage: --prepare PEERS_DIR CALQL_GIT_DIR}; calql=${3:?usage: --prepare PEERS_DIR CALQL_GIT_DIR}
  set -e
  rm -rf "$peers" && mkdir -p "$peers/corl" "$peers/calql_jax/JaxCQL" "$peers/wheels"
  cp "$src"/corl/*.py "$src"/corl/LICENSE "$peers/corl/"
  # the peers' driver, on the device PEER_DEVICE (default cpu, as the original)
  sed -e 's/device="cpu"/device=DEV/' \
      -e 's/^import torch  # noqa: E402$/import torch  # noqa: E402\nDEV = os.environ.get("PEER_DEVICE", "cpu")\ntorch.set_default_device(DEV)/' \
      "$src/corl_updates.py" > "$peers/corl_updates.py"
  grep -q 'set_default_device(DEV)' "$peers/corl_updates.py" || { echo "corl_updates.py changed: adapt --prepare"; exit 1; }
  for f in __init__.py conservative_sac.py model.py jax_utils.py; do
    git --git-dir="$calql" show "HEAD:JaxCQL/$f" > "$peers/calql_jax/JaxCQL/$f"
  done
  git --git-dir="$calql" rev-parse HEAD > "$peers/calql_jax/COMMIT"
  # JaxCQL imports ml_collections and distrax (-> tfp -> dm-tree, gast, decorator); the bench
  # imports omegaconf, gymnasium, tqdm. dm-tree and wrapt are compiled: one wheel per CPython.
  pip download -q --no-deps -d "$peers/wheels" distrax==0.1.5 tensorflow-probability==0.25.0  # jax < 0.7
  pip download -q --no-deps -d "$peers/wheels" distrax==0.1.9 tfp-nightly ml-collections==1.1.0 decorator==5.3.1 gast==0.7.0 attrs==26.1.0 \
      six==1.17.0 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 gymnasium==1.4.0 farama-notifications==0.0.6 \
      tqdm==4.70.1 cloudpickle==2.1.0 chex==0.1.92 toolz==1.2.0
  for v in 310 311 312 313; do
    pip download -q --no-deps --only-binary=:all: --python-version $v --platform manylinux_2_28_x86_64 \
        -d "$peers/wheels" dm-tree==0.1.10 wrapt==2.1.2
  done
  du -sh "$peers"
  exit 0
fi

dry=0
if [ "${1:-}" = "--dry" ]; then dry=1; shift; fi
secs=${1:-1}; budget=${2:-150}; updates=${3:-1000}
out=${OUT:-}
log() { if [ -n "$out" ]; then tee -a "$out/gpu_check.txt"; else cat; fi; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
{
echo "gpu_check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), dry=$dry"
python -c "import sys, torch; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, '
                                   f'device {torch.cuda.get_device_name() if torch.cuda.is_available() else None}')"
if [ $dry = 0 ]; then
  python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 1
  nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader || true
fi
[ -d "$peers/corl" ] || echo "no $peers/: CORL and JAX rows skipped (bash scripts/gpu_check.sh --prepare ... first)"

# The packages this python lacks, from the carried wheels, into $peers/site (nothing downloaded).
if [ -d "$peers/wheels" ]; then
  need=$(python - <<'EOF'
import importlib.util as u
wanted = {"omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime", "gymnasium": "gymnasium",
          "farama_notifications": "farama-notifications", "tqdm": "tqdm", "cloudpickle": "cloudpickle",
          "ml_collections": "ml-collections", "tree": "dm-tree", "wrapt": "wrapt", "attr": "attrs",
          "decorator": "decorator", "gast": "gast", "six": "six", "toolz": "toolz"}
missing = [dist for mod, dist in wanted.items() if u.find_spec(mod) is None]
if u.find_spec("distrax") is None and u.find_spec("jax") is not None:
    import jax
    new = tuple(int(x) for x in jax.__version__.split(".")[:2]) >= (0, 7)  # distrax 0.1.9, chex 0.1.92 need jax >= 0.7
    missing += ["distrax==0.1.9", "tfp-nightly"] if new else ["distrax==0.1.5", "tensorflow-probability==0.25.0"]
    if u.find_spec("chex") is None:
        missing.append("chex==0.1.92" if new else "chex")
print(" ".join(missing))
EOF
)
  if [ -n "$need" ]; then
    echo "installing from $peers/wheels into $peers/site: $need"
    python -m pip install -q --no-index --no-deps --no-build-isolation --find-links "$peers/wheels" \
        --target "$peers/site" $need 2>&1 | grep -v "^WARNING" | tail -3
  fi
  export PYTHONPATH="$PYTHONPATH:$PWD/$peers/site"
fi

if [ $dry = 1 ]; then dev=cpu; psecs=0.5; jsecs=0.5; else dev=cuda; psecs=$((secs * 3)); jsecs=$((secs * 3)); fi
echo; echo "== 1. CORL (PyTorch) at CORL's AntMaze shapes, device $dev, one process each =="
if [ -f "$peers/corl_updates.py" ]; then
  for m in $([ $dry = 1 ] && echo iql || echo calql cql iql); do  # dry: CQL's 10 warm-up updates take minutes on a CPU
    f=$(case $m in calql) echo cal_ql.py;; cql) echo cql.py;; iql) echo iql.py;; esac)
    PEER_DEVICE=$dev timeout 90 python "$peers/corl_updates.py" $m "$peers/corl/$f" $psecs 2 2>&1 | grep -E "^corl_|Error" \
      || echo "corl_$m: failed or timed out"
  done
fi

echo; echo "== 2. official Cal-QL (JAX) update =="
if [ -d "$peers/calql_jax/JaxCQL" ] && python -c "import jax" 2>/dev/null; then
  echo "JaxCQL at $(cat $peers/calql_jax/COMMIT 2>/dev/null)"
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python scripts/calql_jax_bench.py "$peers/calql_jax" $jsecs 2>&1 \
    | grep -E "^calql_jax|^jax |Error" || echo "calql_jax: failed or timed out"
else
  echo "calql_jax: skipped (no $peers/calql_jax or no jax in this python)"
fi

echo; echo "== 3-4. this code: eager vs compiled vs compiled + CUDA graphs; the AntMaze-size job =="
if [ $dry = 1 ]; then
  timeout 600 python -m harness.bench --devices cpu --threads 2 --seconds 0.3 --sets mini --methods iql,calql \
      --seeds 1,2 --modes eager,compiled --budget 0 --job-updates 3 2>&1 | grep -v "^W[0-9]"
else
  left=$((470 - $(date +%s) + start))  # the whole script within 8 minutes
  timeout $((left > 60 ? left : 60)) python -m harness.bench --devices cuda --seconds "$secs" --sets corl,paper \
      --seeds 1,10 --modes eager,compiled,graphs --budget "$budget" --job-updates "$updates" 2>&1 | grep -v "^W[0-9]"
fi
echo; echo "gpu_check: done in $(( $(date +%s) - start )) s"
} 2>&1 | log
