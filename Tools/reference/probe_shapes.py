#!/usr/bin/env python3
"""Probes (linear, and a trained attention reader): how much of each object's shape and size the frozen ViT and the Perceive Sampler pass on.

    .build/release/xtrain export Checkpoints/stageA/step-0001000.h5 --out /tmp/stageA-hf
    python3 Tools/reference/probe_shapes.py /tmp/stageA-hf [--scenes 1200]

Renders scenes of the bundled shapes world with an object in every quadrant (as Sources/Datasets/Shapes.swift
draws them), runs the exported model's ViT and Q-Former + projection in transformers, and fits a logistic
regression per attribute on each quadrant's tokens: concatenated (what a position-aware reader could use),
mean-pooled (what one attention average over the quadrant gives) and, for the sampler, one token at a time
(the mean over the quadrant's token positions, and the best). Then it trains an attention reader,
the way a decoder reads image tokens: one layer of 8-head attention from a learned query per quadrant over
all of the image's RMS-normed tokens, and an MLP, with AdamW at 1e-3 on batches of 64 objects, for
`--reader-steps`. Prints held-out accuracy; chance is 33% for shape and 50% for size.
Needs: pip install torch transformers scikit-learn
"""
import argparse
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from transformers import Blip2ForConditionalGeneration

COLORS = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 30)]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def render(objects, background):
    """objects: (shape 0 circle / 1 square / 2 triangle, color, size 0 small / 1 large, quadrant, dx, dy)."""
    image = np.full((224, 224, 3), background, np.uint8)
    y, x = np.mgrid[0:224, 0:224]
    for shape, color, size, quadrant, dx, dy in objects:
        cx, cy, r = (quadrant % 2) * 112 + 56 + dx, (quadrant // 2) * 112 + 56 + dy, 42 if size else 22
        u, v = x - cx, y - cy
        inside = [u * u + v * v <= r * r, np.ones_like(u, bool), 2 * np.abs(u) <= v + r][shape]
        image[(np.abs(u) <= r) & (np.abs(v) <= r) & inside] = COLORS[color]
    return image


def quadrant_tokens(tokens, side, quadrant, z_order=False):
    """The (N, side/2 * side/2, D) tokens of one quadrant of a side x side grid of (N, side*side, D) tokens,
    given row by row or, with `z_order`, in Z-order (each quadrant a contiguous run, as `init.query_order` "z")."""
    if z_order:
        run = side * side // 4
        return tokens[:, quadrant * run:(quadrant + 1) * run]
    grid = tokens.reshape(tokens.shape[0], side, side, -1)
    half = side // 2
    r, c = (quadrant // 2) * half, (quadrant % 2) * half
    return grid[:, r:r + half, c:c + half].reshape(tokens.shape[0], half * half, -1)


class Reader(torch.nn.Module):
    """One attention layer from a learned query per quadrant over an image's tokens, then an MLP to
    3 shape + 2 size logits."""

    def __init__(self, width, heads=8):
        super().__init__()
        self.norm = torch.nn.RMSNorm(width)
        self.query = torch.nn.Embedding(4, width)
        self.attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.SiLU(), torch.nn.Linear(4 * width, 5))

    def forward(self, tokens, quadrants):
        t = self.norm(tokens)
        read, _ = self.attention(self.query(quadrants)[:, None], t, t)
        return self.mlp(read[:, 0])


def attention_reader(tokens, scenes, train, steps):
    """Held-out (shape, size) accuracy of a Reader trained on the objects of the first `train` scenes."""
    torch.manual_seed(0)
    objects = [(i, q, scenes[i][q][0], scenes[i][q][2]) for i in range(len(scenes)) for q in range(4)]
    split = 4 * train
    reader = Reader(tokens.shape[-1])
    optimizer = torch.optim.AdamW(reader.parameters(), 1e-3)
    rng = np.random.default_rng(1)
    columns = lambda rows: [torch.tensor([objects[r][k] for r in rows]) for k in range(4)]
    for _ in range(steps):
        scene, quadrant, shape, size = columns(rng.integers(split, size=64))
        logits = reader(tokens[scene], quadrant)
        loss = torch.nn.functional.cross_entropy(logits[:, :3], shape) + torch.nn.functional.cross_entropy(logits[:, 3:], size)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scene, quadrant, shape, size = columns(range(split, len(objects)))
    with torch.no_grad():
        logits = reader(tokens[scene], quadrant)
    return (logits[:, :3].argmax(-1) == shape).float().mean().item(), (logits[:, 3:].argmax(-1) == size).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an xtrain export directory (Blip2ForConditionalGeneration)")
    parser.add_argument("--scenes", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reader-steps", type=int, default=1500)
    parser.add_argument("--query-order", choices=["z", "rows"], default="z",
                        help="the order of the sampler's grid queries (the recipe's init.query_order; z in the bundled recipes)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    scenes = [[(rng.integers(3), rng.integers(4), rng.integers(2), q, rng.integers(17) - 8, rng.integers(17) - 8)
               for q in range(4)] for _ in range(args.scenes)]
    model = Blip2ForConditionalGeneration.from_pretrained(args.model, attn_implementation="eager").eval()
    vit, sampler = [], []
    with torch.no_grad():
        for start in range(0, args.scenes, 50):
            batch = scenes[start:start + 50]
            images = np.stack([render(s, 225 + rng.integers(30)) for s in batch]).astype(np.float32) / 255
            pixels = torch.tensor(((images - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2), dtype=torch.float32)
            v = model.vision_model(pixel_values=pixels).last_hidden_state
            q = model.qformer(query_embeds=model.query_tokens.expand(len(batch), -1, -1), encoder_hidden_states=v).last_hidden_state
            vit.append(v[:, 1:].numpy())
            sampler.append(model.language_projection(q).numpy())
    train = int(args.scenes * 0.75)
    print(f"{args.scenes} scenes, 4 objects each; probes fit on {train}, scored on {args.scenes - train}")
    print("tokens   pooling  shape  size")

    def linear_probe(features, attribute):
        """Held-out accuracy of a logistic regression from each quadrant's features to its object's attribute."""
        x_train = np.concatenate([f[:train] for f in features])
        x_test = np.concatenate([f[train:] for f in features])
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        labels = [np.array([s[q][attribute] for s in scenes]) for q in range(4)]
        y_train = np.concatenate([y[:train] for y in labels])
        y_test = np.concatenate([y[train:] for y in labels])
        return LogisticRegression(max_iter=500, C=0.1).fit(x_train, y_train).score(x_test, y_test)

    for name, tokens in [("vit", np.concatenate(vit)), ("sampler", np.concatenate(sampler))]:
        side = int(round(tokens.shape[1] ** 0.5))
        quadrants = [quadrant_tokens(tokens, side, q, z_order=name == "sampler" and args.query_order == "z") for q in range(4)]
        for pooling in ["concat", "mean"]:
            features = [f.reshape(len(f), -1) if pooling == "concat" else f.mean(1) for f in quadrants]
            scores = [linear_probe(features, attribute) for attribute in (0, 2)]
            print(f"{name:8s} {pooling:8s} {scores[0]:5.1%} {scores[1]:5.1%}", flush=True)
        if name == "sampler":   # one token: the probe of each of a quadrant's token positions on its own
            singles = np.array([[linear_probe([f[:, j] for f in quadrants], attribute) for attribute in (0, 2)]
                                for j in range(quadrants[0].shape[1])])
            print(f"{name:8s} {'one':8s} {singles[:, 0].mean():5.1%} {singles[:, 1].mean():5.1%}  "
                  f"(the best position {singles[:, 0].max():.1%} {singles[:, 1].max():.1%})", flush=True)
        scores = attention_reader(torch.tensor(tokens), scenes, train, args.reader_steps)
        print(f"{name:8s} {'reader':8s} {scores[0]:5.1%} {scores[1]:5.1%}", flush=True)


if __name__ == "__main__":
    main()
