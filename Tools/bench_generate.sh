#!/usr/bin/env bash
# xtrain and transformers' generate on the same checkpoint (exported), prompt and image, greedy with the key/value
# cache, back to back on the same threads; prints both, whether the tokens agree, and the tokens/s ratios.
# Usage: Tools/bench_generate.sh CHECKPOINT [threads] [tokens]     (needs a release build and torch + transformers)
set -euo pipefail
checkpoint=${1:?checkpoint}
threads=${2:-$(nproc)}
tokens=${3:-128}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.build/release/xtrain export "$checkpoint" --out "$work/hf" >/dev/null
ours=$(XTRAIN_THREADS=$threads .build/release/xtrain bench generate "$checkpoint" --tokens "$tokens" --dump "$work/prompt.safetensors" | tail -1)
theirs=$(python3 "$(dirname "$0")/reference/torch_generate_bench.py" "$work/hf" "$work/prompt.safetensors" --threads "$threads" 2>/dev/null)
line=$(echo "$theirs" | head -1)
echo "xtrain:       $ours"
echo "transformers: $line"
echo "$theirs" | tail -1
rate() { echo "$1" | sed -E "s/.*\| $2 ([0-9.]+) tokens\/s.*/\1/"; }
python3 -c "print(f'xtrain tokens/s / transformers tokens/s: decode {$(rate "$ours" decode) / $(rate "$line" decode):.2f}, total {$(rate "$ours" total) / $(rate "$line" total):.2f}')"
