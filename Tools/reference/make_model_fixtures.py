#!/usr/bin/env python3
"""Golden fixtures for xtrain's model tests, computed by Hugging Face transformers.

For each case it builds a small random Blip2ForConditionalGeneration (EVA ViT + Q-Former + Llama decoder
with attention bias), runs forward and backward on a fixed batch, and writes Tests/Fixtures/<case>/:
  config.json, model.safetensors   the model, as save_pretrained writes it
  io.safetensors                   input_ids, attention_mask, labels (I64), pixel_values, logits, loss,
                                   and grad.<name> for every parameter (F32)
plus blip2-crossfreq2-sharded/ (the same model in several shards with model.safetensors.index.json) and
dtypes.safetensors (the same values as F32, F16 and BF16, and the F16/BF16 values widened by torch).
Rerun:  pip install torch transformers safetensors && python3 Tools/reference/make_model_fixtures.py
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig,
                          LlamaConfig)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
IMAGE_TOKEN = 63
PAD = 0


def make_config(cross_attention_frequency, qformer_layers):
    # Widths all differ (vision 32, Q-Former 24, LLM 40) so that no transposed shape can pass by accident.
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                               image_size=56, patch_size=14, layer_norm_eps=1e-6, qkv_bias=True)
    qformer = Blip2QFormerConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=qformer_layers,
                                 num_attention_heads=3, encoder_hidden_size=32, layer_norm_eps=1e-12,
                                 cross_attention_frequency=cross_attention_frequency)
    text = LlamaConfig(hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=5,
                       num_key_value_heads=5, vocab_size=64, max_position_embeddings=64, rms_norm_eps=1e-6,
                       attention_bias=True, tie_word_embeddings=False, pad_token_id=PAD)
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=4, image_token_index=IMAGE_TOKEN)


def randomize(model, generator):
    """Moderate random values everywhere (the default init leaves query tokens zero and the ViT near zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:  # norm weights
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            elif name.endswith("patch_embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=generator) / (p[0].numel() ** 0.5))
            elif p.dim() == 2 and "embed_tokens" not in name:  # Linear [out, in]
                p.copy_(torch.randn(p.shape, generator=generator) / (p.shape[1] ** 0.5))
            else:  # token, class and position embeddings, query tokens
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))


def make_batch(q):
    """Three samples padded on the right to 16: one image; two images; text only."""
    img = [IMAGE_TOKEN] * q
    rows = [
        [1] + img + [5, 6, 7, 8, 9, 10, 2],
        [1] + img + [11, 12] + img + [13, 14, 15, 2],
        [1] + list(range(20, 31)) + [2],
    ]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        attention_mask[i, :len(r)] = 1
    labels = input_ids.clone()
    labels[(attention_mask == 0) | (input_ids == IMAGE_TOKEN)] = -100
    labels[:, 0] = -100
    return input_ids, attention_mask, labels, 3


def write_case(name, cross_attention_frequency, qformer_layers, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = make_config(cross_attention_frequency, qformer_layers)
    config._attn_implementation = "eager"
    model = Blip2ForConditionalGeneration(config)
    randomize(model, generator)
    model.eval()  # no dropout; gradients still flow

    input_ids, attention_mask, labels, images = make_batch(config.num_query_tokens)
    pixel_values = torch.randn((images, 3, 56, 56), generator=generator)
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out.loss.backward()

    directory = os.path.join(ROOT, name)
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    tensors = {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "pixel_values": pixel_values, "logits": out.logits.detach().contiguous(),
        "loss": out.loss.detach().reshape(1),
    }
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.detach().contiguous()
    save_file(tensors, os.path.join(directory, "io.safetensors"))
    print(f"{name}: loss {out.loss.item():.6f}, {sum(p.numel() for p in model.parameters())} parameters -> {directory}")
    return model


def write_dtypes():
    generator = torch.Generator().manual_seed(3)
    values = torch.cat([3 * torch.randn(40, generator=generator),
                        torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-6, -3e-7, 65504.0, 1e-40, 3.0e38])])
    half, brain = values.half(), values.bfloat16()
    save_file({"f32": values, "f16": half, "bf16": brain, "f16_as_f32": half.float(), "bf16_as_f32": brain.float()},
              os.path.join(ROOT, "dtypes.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = write_case("blip2-crossfreq2", cross_attention_frequency=2, qformer_layers=2, seed=1)
    model.save_pretrained(os.path.join(ROOT, "blip2-crossfreq2-sharded"), max_shard_size="100KB")
    write_case("blip2-crossfreq1", cross_attention_frequency=1, qformer_layers=3, seed=2)
    write_dtypes()
    sys.exit(0)
