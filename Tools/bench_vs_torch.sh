#!/usr/bin/env bash
# xtrain and PyTorch on the same training step, back to back on the same threads; prints both and the ratio.
# Usage: Tools/bench_vs_torch.sh recipes/stageA.json [threads]     (needs a release build and torch + transformers)
set -euo pipefail
recipe=${1:?recipe}
threads=${2:-$(nproc)}
ours=$(XTRAIN_THREADS=$threads .build/release/xtrain bench "$recipe" --steps 10 | tail -1)
theirs=$(python3 "$(dirname "$0")/reference/torch_bench.py" "$recipe" --threads "$threads" --steps 10 2>/dev/null | tail -1)
echo "xtrain:  $ours"
echo "PyTorch: $theirs"
a=$(echo "$ours" | sed -E 's/^step ([0-9.]+) ms.*/\1/')
b=$(echo "$theirs" | sed -E 's/.*step ([0-9.]+) ms.*/\1/')
python3 -c "print(f'xtrain step time / PyTorch step time = {$a / $b:.2f}')"
