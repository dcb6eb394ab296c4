#!/usr/bin/env python3
"""Checks an `xtrain export` directory in Hugging Face transformers (and PEFT).

    python3 Tools/reference/check_export.py DIR            # merged export: Blip2ForConditionalGeneration
    python3 Tools/reference/check_export.py DIR --adapter  # --adapter export: base + PeftModel(DIR/adapter)

It loads the model (failing on any missing or unexpected key), runs the sample input that xtrain stored
in DIR/xtrain_check.safetensors, and compares the logits with xtrain's. Exit status 0 when the largest
difference is within 1e-4 of the logits' scale.
Needs: pip install torch transformers safetensors peft
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import Blip2ForConditionalGeneration


def main():
    directory = sys.argv[1]
    adapter = "--adapter" in sys.argv[2:]
    model, info = Blip2ForConditionalGeneration.from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        print("loading problems:", problems)
        return 1
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, directory + "/adapter")
    model.eval()
    check = load_file(directory + "/xtrain_check.safetensors")
    with torch.no_grad():
        logits = model(input_ids=check["input_ids"].long(), pixel_values=check["pixel_values"]).logits
    reference = check["logits"]
    worst = (logits - reference).abs().max().item()
    scale = reference.abs().max().item()
    print(f"{'PEFT adapter' if adapter else 'merged'} export {directory}: max |logits - xtrain| = {worst:.3e}, "
          f"max |logits| = {scale:.3e}, relative {worst / scale:.2e}")
    return 0 if worst <= 1e-4 * scale else 1


if __name__ == "__main__":
    sys.exit(main())
