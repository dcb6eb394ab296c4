#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same recipe on 1 rank x 1 thread, then 2 ranks x 1 thread
# (mpirun), back to back; prints the median step time, throughput and communication time per step of each.
# Usage: Tools/bench_ranks.sh recipes/stageA.json [steps]          (needs a release build and openmpi-bin)
set -euo pipefail
recipe=${1:?recipe}
steps=${2:-30}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 XTRAIN_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
settings=(--set "steps=$steps" --set checkpoint.every=100000 --set eval.every=100000 --set log_every=100000)
.build/release/xtrain pretrain "$recipe" "${settings[@]}" --set "checkpoint.dir=$work/one" >/dev/null
mpirun --oversubscribe -np 2 .build/release/xtrain pretrain "$recipe" "${settings[@]}" --set "checkpoint.dir=$work/two" >/dev/null
python3 - "$work" <<'PY'
import json, statistics, sys
def summary(run):
    lines = [json.loads(l) for l in open(f"{sys.argv[1]}/{run}/metrics.jsonl") if '"loss"' in l][5:]  # after warm-up
    seconds = statistics.median(b["elapsed_s"] - a["elapsed_s"] for a, b in zip(lines, lines[1:]))
    median = lambda key: statistics.median(l.get(key, 0) for l in lines)
    return seconds, median("tokens_per_s"), median("communication_s"), median("rank_wait_s")
one, two = summary("one"), summary("two")
for name, (seconds, tokens, comm, wait) in (("1 rank x 1 thread ", one), ("2 ranks x 1 thread", two)):
    print(f"{name}: {1000 * seconds:6.1f} ms/step | {tokens:6.0f} tokens/s | gradient all-reduce {1000 * comm:5.1f} ms/step | waiting for the other rank {1000 * wait:5.1f} ms/step")
print(f"throughput 2 ranks / 1 rank: {one[0] / two[0]:.2f}x")
PY
