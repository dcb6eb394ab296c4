#!/usr/bin/env bash
# xtrain and PyTorch on the same training step, back to back on the same threads, in alternating rounds;
# prints each round's two step times and ratio, then the median ratio.
# Usage: Tools/bench_vs_torch.sh recipes/stageA.json [threads] [xtrain precision] [PyTorch precision] [rounds]
# Precisions are fp32 or bf16 (mixed: bf16 products, fp32 weights); the default is the recipe's, else fp32.
# Needs a release build and torch + transformers.
set -euo pipefail
recipe=${1:?recipe}
threads=${2:-$(nproc)}
ours_precision=${3:-$(python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get('precision', 'fp32'))" "$recipe")}
theirs_precision=${4:-$ours_precision}
rounds=${5:-3}
ratios=()
for round in $(seq "$rounds"); do
    ours=$(XTRAIN_THREADS=$threads .build/release/xtrain bench "$recipe" --steps 10 --set precision="$ours_precision" | grep '^step')
    theirs=$(python3 "$(dirname "$0")/reference/torch_bench.py" "$recipe" --threads "$threads" --steps 10 --precision "$theirs_precision" 2>/dev/null | tail -1)
    echo "round $round xtrain ($ours_precision): $ours"
    echo "round $round PyTorch: $theirs"
    a=$(echo "$ours" | sed -E 's/^step ([0-9.]+) ms.*/\1/')
    b=$(echo "$theirs" | sed -E 's/.*step ([0-9.]+) ms.*/\1/')
    ratios+=("$(python3 -c "print(f'{$a / $b:.3f}')")")
    echo "round $round xtrain step time / PyTorch step time = ${ratios[-1]}"
done
python3 -c "import statistics, sys; r = sorted(map(float, sys.argv[1:])); print(f'median ratio over {len(r)} rounds: {statistics.median(r):.2f} (range {r[0]:.2f}-{r[-1]:.2f})')" "${ratios[@]}"
