#!/bin/sh
# Run the whole benchmark: 1 thread pinned to core 0, then 2 threads on cores 0,1.
# Each peer runs in its own subprocess (bench_mlp.py does that), so the thread
# pools of JAX, PyTorch and OpenBLAS never share a process.
#   usage: sh bench/run_all.sh [extra bench_mlp.py args, e.g. --peers numpy jax]
# PYTHON defaults to the benchmark venv.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/benchvenv/bin/python}
NETS="784-256-128-10 784-1024-1024-10"
PEERS="numpy torch jax sklearn fastnn"

taskset -c 0   "$PY" bench/bench_mlp.py --threads 1 --batch 32 256 --net $NETS \
    --peers $PEERS --repeat 3 --repeat-peer sklearn=1 --wait-quiet 600 --out bench/results_1t.json "$@"
taskset -c 0,1 "$PY" bench/bench_mlp.py --threads 2 --batch 32 256 --net $NETS \
    --peers $PEERS --repeat 3 --repeat-peer sklearn=1 --wait-quiet 600 --out bench/results_2t.json "$@"
"$PY" bench/plot.py bench/results_1t.json bench/results_2t.json --out bench/results.png
