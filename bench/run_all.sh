#!/bin/sh
# The whole benchmark, as recorded in bench/README.md: 1 thread pinned to
# core 0, then 2 threads on cores 0,1.  Each peer runs in its own subprocess
# (bench_mlp.py does that), so the thread pools of JAX, PyTorch and OpenBLAS
# never share a process.  PYTHON defaults to the benchmark venv, which has
# fastnn installed (pip install ".[bench]").
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/benchvenv/bin/python}
ALL="numpy numpy-ref torch jax sklearn fastnn fastnn-blas fastnn-avx2 fastnn-generic"
FAST="numpy torch jax fastnn fastnn-blas"

taskset -c 0 "$PY" bench/bench_mlp.py --threads 1 --batch 32 256 --net 784-256-128-10 \
    --peers $ALL --repeat 3 --repeat-peer sklearn=1 --repeat-peer numpy-ref=1 --out bench/results_1t.json "$@"
taskset -c 0 "$PY" bench/bench_mlp.py --threads 1 --batch 256 --net 784-1024-1024-10 \
    --peers $FAST --repeat 2 --out bench/results_1t.json --append "$@"
taskset -c 0,1 "$PY" bench/bench_mlp.py --threads 2 --batch 32 256 \
    --net 784-256-128-10 784-1024-1024-10 --peers numpy torch jax fastnn \
    --repeat 2 --out bench/results_2t.json "$@"
"$PY" bench/plot.py bench/results_1t.json bench/results_2t.json --out bench/results.png
