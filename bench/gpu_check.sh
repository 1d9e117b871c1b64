#!/usr/bin/env bash
# The prepared GPU check (issue 19). On a machine with one CUDA GPU, from the repository root (or anywhere):
#     bench/gpu_check.sh                 # at most 8 minutes: throughput (A), a paper-preset run of each method (B),
#                                        # the Fashion-MNIST benchmark at one seed (C); one table out
#     bench/gpu_check.sh --cpu           # smoke version on the CPU, under 2 minutes: every path runs, figures mean nothing
# Options after these go to bench/gpu_check.py (--out DIR, --budget SECONDS). The table is printed and written to
# <out>/gpu_check.md (default runs/gpu_check). bench/gpu_check.py's docstring says what each row measures and what to
# look at for speed. Fashion-MNIST (part C) needs its files: `apt-get install dataset-fashion-mnist`, or run
# `cil_nb_run --dataset fashion-mnist --download --epochs 1` once; without them part C reports one 'error' row.
# The notebooks' long cells are separate (hours on a GPU):  CIL_NB_SLOW=1 nbdev_test --flags "slow cuda" --n_workers 1
set -euo pipefail
cd "$(dirname "$0")/.."
limit=475                                   # seconds: the whole check ends within 8 minutes, table included
for a in "$@"; do
  if [ "$a" = "--cpu" ]; then
    limit=115
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
  fi
done
exec timeout --signal=INT --kill-after=5 "$limit" python3 bench/gpu_check.py "$@"
