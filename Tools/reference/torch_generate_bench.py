#!/usr/bin/env python3
"""Greedy generation with the key/value cache in transformers, on the prompt and image that
`xtrain bench generate CHECKPOINT --dump FILE` used, to compare speed and tokens with xtrain.

    python3 Tools/reference/torch_generate_bench.py DIR FILE [--threads 2] [--warmup 1] [--repeats 5]

DIR is `xtrain export CHECKPOINT --out DIR` (Blip2ForConditionalGeneration). It generates as many new tokens
as xtrain did (N): model.generate(max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=True) with
no end-of-sequence token, as xtrain generates without a stop token. Prefill is the time to the first new
token; decode tokens/s counts the other N - 1 tokens over the rest of the time, as xtrain counts them.
Prints one line like xtrain's, then whether the greedy tokens equal xtrain's (else the first index where
they differ). Needs: pip install torch transformers safetensors
"""
import argparse
import os
import resource
import time

import torch
import transformers
from safetensors.torch import load_file
from transformers import Blip2ForConditionalGeneration
from transformers.generation.streamers import BaseStreamer


class Clock(BaseStreamer):
    """Notes the time of every `put`: generate puts the prompt first, then each new token as it is chosen."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("dump")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("XTRAIN_THREADS", os.cpu_count())))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = Blip2ForConditionalGeneration.from_pretrained(args.directory, attn_implementation="sdpa").eval()
    model.language_model.generation_config.eos_token_id = None  # xtrain's bench has no stop token either
    dump = load_file(args.dump)
    input_ids, pixels = dump["input_ids"].long(), dump["pixel_values"]
    theirs = dump["tokens"].long()[0].tolist()
    n = len(theirs)

    prefills, decodes, totals = [], [], []
    for run in range(args.warmup + args.repeats):
        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(pixel_values=pixels, input_ids=input_ids, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, use_cache=True, streamer=clock)
        end = time.perf_counter()
        ours = out[0, -n:].tolist()
        if out.shape[1] != input_ids.shape[1] + n or len(clock.times) != n + 1:
            raise SystemExit(f"generate returned {out.shape[1] - input_ids.shape[1]} new tokens, not {n}")
        if run >= args.warmup:
            first = clock.times[1]
            prefills.append(first - start)
            decodes.append((n - 1) / (end - first))
            totals.append(n / (end - start))

    def median(values):
        return sorted(values)[len(values) // 2]

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transformers {transformers.__version__} (torch {torch.__version__}), {args.threads} threads: prompt {input_ids.shape[1]} + {n} new tokens, "
          f"median of {args.repeats} | prefill {1000 * median(prefills):.1f} ms | decode {median(decodes):.1f} tokens/s | "
          f"total {median(totals):.1f} tokens/s | peak RSS {rss:.0f} MiB | first ids {' '.join(map(str, ours[:8]))}")
    differ = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    print(f"greedy tokens: all {n} equal xtrain's" if differ is None else
          f"greedy tokens: differ from xtrain's from index {differ} ({differ} of {n} equal)")


if __name__ == "__main__":
    main()
