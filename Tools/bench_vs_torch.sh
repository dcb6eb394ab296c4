#!/usr/bin/env bash
# xtrain and PyTorch on the same training step, back to back on the same threads; prints both and the ratio.
# Usage: Tools/bench_vs_torch.sh recipes/stageA.json [threads] [xtrain precision] [PyTorch precision]
# Precisions are fp32 or bf16 (mixed: bf16 products, fp32 weights); the default is the recipe's, else fp32.
# Needs a release build and torch + transformers.
set -euo pipefail
recipe=${1:?recipe}
threads=${2:-$(nproc)}
ours_precision=${3:-$(python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get('precision', 'fp32'))" "$recipe")}
theirs_precision=${4:-$ours_precision}
ours=$(XTRAIN_THREADS=$threads .build/release/xtrain bench "$recipe" --steps 10 --set precision="$ours_precision" | grep '^step')
theirs=$(python3 "$(dirname "$0")/reference/torch_bench.py" "$recipe" --threads "$threads" --steps 10 --precision "$theirs_precision" 2>/dev/null | tail -1)
echo "xtrain ($ours_precision):  $ours"
echo "PyTorch: $theirs"
a=$(echo "$ours" | sed -E 's/^step ([0-9.]+) ms.*/\1/')
b=$(echo "$theirs" | sed -E 's/.*step ([0-9.]+) ms.*/\1/')
python3 -c "print(f'xtrain step time / PyTorch step time = {$a / $b:.2f}')"
