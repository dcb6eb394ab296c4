#!/usr/bin/env python3
"""AdamW reference for xtrain's optimizer test: torch.optim.AdamW on a fixed sequence of gradients.

Two parameters, a [5, 3] matrix (weight decay 0.1) and a [4] bias (no decay), in two param groups with
the same schedule: linear warmup over 2 steps to 1e-2, cosine decay to 1e-5 by step 8 (xtrain's formula,
written out below). Before each step the gradients are clipped to global norm 1.0 with
torch.nn.utils.clip_grad_norm_. Writes Tests/Fixtures/adamw.safetensors: p0.*, grad.<step>.*, p.<step>.*, lr.
Rerun:  pip install torch safetensors && python3 Tools/reference/make_optimizer_fixture.py
"""
import math
import os

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
STEPS, WARMUP, PEAK, MINIMUM = 8, 2, 1e-2, 1e-5


def rate(step):
    if step < WARMUP:
        return PEAK * (step + 1) / WARMUP
    progress = min(1.0, (step - WARMUP) / max(1, STEPS - WARMUP - 1))
    return MINIMUM + (PEAK - MINIMUM) * 0.5 * (1 + math.cos(math.pi * progress))


def main():
    g = torch.Generator().manual_seed(5)
    weight = torch.nn.Parameter(torch.randn(5, 3, generator=g))
    bias = torch.nn.Parameter(torch.randn(4, generator=g))
    out = {"p0.weight": weight.detach().clone(), "p0.bias": bias.detach().clone()}
    optimizer = torch.optim.AdamW([{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}],
                                  lr=PEAK, betas=(0.9, 0.95), eps=1e-8)
    rates = []
    for step in range(STEPS):
        # Large gradients on some steps so that clipping acts.
        scale = 3.0 if step % 3 == 0 else 0.2
        weight.grad = scale * torch.randn(5, 3, generator=g)
        bias.grad = scale * torch.randn(4, generator=g)
        out[f"grad.{step}.weight"] = weight.grad.clone()
        out[f"grad.{step}.bias"] = bias.grad.clone()
        torch.nn.utils.clip_grad_norm_([weight, bias], 1.0)
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        rates.append(rate(step))
        optimizer.step()
        out[f"p.{step}.weight"] = weight.detach().clone()
        out[f"p.{step}.bias"] = bias.detach().clone()
    out["lr"] = torch.tensor(rates, dtype=torch.float64).float()
    save_file(out, os.path.join(ROOT, "adamw.safetensors"))


if __name__ == "__main__":
    main()
