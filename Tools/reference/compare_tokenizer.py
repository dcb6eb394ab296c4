#!/usr/bin/env python3
"""Checks xtrain's encoding of a text file against the reference library, line by line.

    .build/release/xtrain bench tokenizer TOKENIZER --text TEXT --ids ids.jsonl --seconds 0
    python3 Tools/reference/compare_tokenizer.py TOKENIZER TEXT ids.jsonl

TOKENIZER is a SentencePiece .model (encoded with `sentencepiece`) or a tokenizer.json (with `tokenizers`,
no special tokens added). Prints how many lines agree and the first few that do not; exits 1 on any
difference. Use it on your own model's tokenizer (e.g. InternLM's tokenizer.model) and text.
Needs:  pip install sentencepiece tokenizers
"""
import json
import sys


def main(tokenizer_path, text_path, ids_path):
    with open(tokenizer_path, "rb") as f:
        is_json = f.read(64).lstrip().startswith(b"{")
    if is_json:
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(tokenizer_path)
        encode = lambda line: tokenizer.encode(line, add_special_tokens=False).ids
    else:
        import sentencepiece as spm
        processor = spm.SentencePieceProcessor(model_file=tokenizer_path)
        encode = processor.encode
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    with open(ids_path, encoding="utf-8") as f:
        ours = [json.loads(line) for line in f]
    if len(ours) != len(lines):
        sys.exit(f"{ids_path}: {len(ours)} lines, {text_path} has {len(lines)}")
    wrong = 0
    for n, (line, ids) in enumerate(zip(lines, ours), 1):
        expected = encode(line)
        if ids != expected:
            wrong += 1
            if wrong <= 5:
                print(f"line {n}: {line[:80]!r}\n  xtrain    {ids[:40]}\n  reference {expected[:40]}")
    print(f"{len(lines) - wrong} of {len(lines)} lines identical ({sum(map(len, ours))} tokens)")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
