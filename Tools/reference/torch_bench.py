#!/usr/bin/env python3
"""The training step of an xtrain recipe in PyTorch: the same model (transformers' Blip2ForConditionalGeneration
from the recipe's model config), the same frozen parts, the same synthetic batch shape as `xtrain bench RECIPE`
(batch_size / gradient_accumulation sequences of sequence_length tokens, one image each, all text labelled),
AdamW with the recipe's per-part learning rates and clipping, the same thread count. With precision bf16 (the
recipe's field, or --precision) the forward runs under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's
mixed precision: bf16 matrix products (oneDNN, AMX where the CPU has it), fp32 weights and optimizer.

    python3 Tools/reference/torch_bench.py recipes/stageA.json [--threads 2] [--steps 10] [--warmup 3] [--precision bf16]

Prints the median step time and peak RSS. Needs: pip install torch transformers
"""
import argparse
import json
import os
import resource
import time

import torch
from transformers import Blip2Config, Blip2ForConditionalGeneration


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("XTRAIN_THREADS", os.cpu_count())))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    recipe = json.load(open(args.recipe))
    precision = args.precision or recipe.get("precision", "fp32")
    folder = os.path.dirname(os.path.abspath(args.recipe))
    if recipe.get("lora"):
        raise SystemExit("LoRA recipes are not mirrored here yet")
    config = Blip2Config.from_pretrained(os.path.join(folder, recipe["model"])) if os.path.isdir(os.path.join(folder, recipe["model"])) \
        else Blip2Config.from_dict(json.load(open(os.path.join(folder, recipe["model"]))))
    config._attn_implementation = "sdpa"
    model = Blip2ForConditionalGeneration(config)
    model.train()
    for module in model.modules():  # xtrain applies no dropout outside LoRA
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    parts = {"vision": [model.vision_model], "sampler": [model.qformer, model.language_projection], "decoder": [model.language_model]}
    frozen = set(recipe.get("freeze", []))
    groups = []
    for part, modules in parts.items():
        params = [p for m in modules for p in m.parameters()]
        if part == "sampler":
            params.append(model.query_tokens)
        for p in params:
            p.requires_grad_(part not in frozen)
        if part in frozen:
            continue
        decay = [p for p in params if p.dim() >= 2]
        rest = [p for p in params if p.dim() < 2]
        lr = recipe["optimizer"]["lr"][part]
        groups += [{"params": decay, "lr": lr, "weight_decay": recipe["optimizer"].get("weight_decay", 0.0)},
                   {"params": rest, "lr": lr, "weight_decay": 0.0}]
    betas = tuple(recipe["optimizer"].get("betas", [0.9, 0.95]))
    optimizer = torch.optim.AdamW(groups, betas=betas, eps=recipe["optimizer"].get("eps", 1e-8))
    clip = recipe["optimizer"].get("grad_clip")

    data = recipe["data"]
    b, t = data["batch_size"] // data.get("gradient_accumulation", 1), data["sequence_length"]
    q, image = config.num_query_tokens, config.image_token_index
    tokens = torch.randint(16, 272, (b, t))
    tokens[:, 0] = 1
    tokens[:, 1:1 + q] = image
    labels = tokens.clone()
    labels[:, 0] = -100
    labels[:, 1:1 + q] = -100
    side = config.vision_config.image_size
    pixels = torch.randn(b, 3, side, side)
    trained = [p for g in groups for p in g["params"]]

    def step():
        optimizer.zero_grad(set_to_none=True)
        for _ in range(data.get("gradient_accumulation", 1)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(pixel_values=pixels, input_ids=tokens, labels=labels).loss
            loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(trained, clip)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__}, {args.threads} threads, {precision}: step {1000 * times[len(times) // 2]:.1f} ms (median of {args.steps}) | "
          f"{data['batch_size'] * t / times[len(times) // 2]:.0f} tokens/s | peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
