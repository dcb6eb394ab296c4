#!/usr/bin/env python3
"""Tokenizer fixtures for xtrain's tokenizer tests: small tokenizers trained with the reference libraries,
and what those libraries make of held-out text.

It generates a training corpus itself (English-like sentences, Chinese, digits; seeded, no downloads),
trains with `sentencepiece` and `tokenizers`, and writes Tests/Fixtures/tokenizers/:

  sp-bpe.model         SentencePiece BPE, byte fallback, identity normalizer, no whitespace collapsing,
                       split digits (the shape of InternLM's and Llama's tokenizer.model)
  sp-bpe-nfkc.model    SentencePiece BPE without byte fallback, a small custom normalization rule table
                       (a precompiled charsmap), extra whitespace removed
  sp-unigram.model     SentencePiece unigram, the default nmt_nfkc normalizer (its full charsmap)
  sp-unigram-bf.model  SentencePiece unigram with byte fallback, identity normalizer
  hf-bytelevel.json    tokenizers byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder)
  hf-llama3.json       byte-level BPE with LLaMA-3's Split regex, ByteLevel(use_regex=False), ignore_merges
  hf-sp-bpe.json       SentencePiece-style BPE: Prepend("▁") + Replace(" ", "▁") normalizer, byte fallback,
                       decoder Replace / ByteFallback / Fuse / Strip (Llama's tokenizer.json)
  hf-metaspace.json    the same BPE behind a Metaspace pre-tokenizer and decoder (prepend_scheme "first"),
                       as newer transformers convert Llama-style models

Each model has NAME.expected.json: for every held-out line its ids and the library's decode of them, and
for random id sequences (control, byte and unknown pieces included) the library's decode. Every tokenizer
knows the conversation template's tokens (<|User|> <|Bot|> <eou> <eob> <image>) as user-defined symbols or
added tokens. Output is deterministic.

Rerun:  pip install sentencepiece tokenizers && python3 Tools/reference/make_tokenizer_fixtures.py
"""
import io
import json
import os
import random
import tempfile

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers, Regex, AddedToken

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "tokenizers")
TEMPLATE = ["<|User|>", "<|Bot|>", "<eou>", "<eob>", "<image>"]
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

WORDS = ("the a an of to in and is was for on with as by at from that this it be are were has have had not but "
         "or which one all their there can more when will would about if out up so what time some into than "
         "them only other new could these two may first then do any like now my such make over our even most "
         "image model train token text data shape circle square triangle red green blue yellow small large "
         "left right top bottom picture describe answer question user bot learning vision language layer "
         "weight gradient batch sequence encoder decoder attention query key value sampler checkpoint "
         "don't it's we're they've I'm you'll she'd Hello World Python Swift London Paris January").split()
CHINESE = "的一是不了在人有我他这个们中来上大为和国地到以说时要就出也得里后自会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感图像模型训练数据"


def sentence(rng):
    kind = rng.random()
    if kind < 0.6:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice([".", "!", "?", ",", ";", " :)", "..."])
    if kind < 0.85:
        return "".join(rng.choice(CHINESE) for _ in range(rng.randint(5, 30))) + rng.choice(["。", "，", "！", "？"])
    return rng.choice(WORDS) + " " + "".join(rng.choice(CHINESE) for _ in range(rng.randint(2, 8))) + " " + str(rng.randint(0, 9999))


def corpus():
    rng = random.Random(1234)
    return [sentence(rng) for _ in range(6000)]


HELD_OUT = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces and two trailing  ",
    "tabs\tand\ttabs\t\tdouble",
    "multiple   spaces    between     words",
    "new\nlines\n\nand\r\ncarriage returns\n",
    "\n\n\n",
    "   ",
    " ",
    "",
    "digits 0 12 345 6789 1234567890 3.14159 -42 1e10",
    "2024-06-01 12:34:56",
    "我们训练了一个模型。这是中文测试。",
    "混合 mixed 文本 text 123 个",
    "罕见字：龘靐齉爩 and 𠀀𪚥",
    "emoji 😀🦜👩‍👩‍👧‍👦 🇫🇷 ❤️ done",
    "Ünïcödé àccénts: café naïve façade Æsir Øresund",
    "Cyrillic Привет мир, Greek Γειά σου, Arabic مرحبا, Hindi नमस्ते",
    "full-width ＡＢＣ１２３ and ligature ﬁ ﬂ, circled ① ②, superscript x² and ½",
    "Ｈｅｌｌｏ　ｗｏｒｌｄ（全角）",
    "it's don't we're they've I'm you'll she'd IT'S DON'T",
    "symbols !@#$%^&*()_+-=[]{}|;':\",./<>?`~ \\ end",
    "<|User|>: what is this?<eou>\n<|Bot|>: a red circle<eob>\n",
    "<image><image><image> captioned",
    "<s> not a control </s> <unk> <pad>",
    "<0x41> looks like a byte piece",
    "zero\u200bwidth\u200dspace and\u00a0nbsp and\u3000ideographic",
    "trailing tab\t",
    "\tleading tab",
    "a",
    "Z",
    "  ",
    "x  \n  y",
    "email@example.com https://example.org/path?q=1&r=2",
    "snake_case camelCase kebab-case SCREAMING_CASE",
    "回答：小的红色圆形在左上角。",
    "The year 1999 had 365 days; π≈3.14159 and e≈2.71828.",
    "\u00e9 vs e\u0301 (composed vs decomposed)",
    "Ǆ ǅ ǆ ﬀ ﬃ ㍿ ㌀ ℡ ™",
    "한국어 텍스트 and 日本語のテキスト",
    "word" * 40,
    " ".join(["spaces"] * 30),
    "1" * 50,
    "\U0001F600" * 5 + "end",
    "\x7f\x01control chars\x1b[0m",
    "don''t 'Sup 'LL 'VE o'clock '",
    "x\u00a0\u00a0y \u2003 z",
    " \n \n x",
    "(hello) [world] {1234567} ((nested))",
    "end with spaces   ",
    "line\r\n\r\n  indented\n\tcode()",
    "ℕ number Ⅻ roman ٣ arabic-indic ²³",
]


def expected(encode, decode, vocab_size, rng, lines=HELD_OUT):
    out = {"lines": [], "decode": []}
    for line in lines:
        ids = encode(line)
        out["lines"].append({"text": line, "ids": ids, "decoded": decode(ids)})
    for _ in range(40):
        ids = [rng.randrange(vocab_size) for _ in range(rng.randint(1, 12))]
        out["decode"].append({"ids": ids, "decoded": decode(ids)})
    return out


def write(name, data):
    with open(os.path.join(ROOT, name), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=0)
        f.write("\n")


def train_sp(lines, name, **options):
    """Trains from memory, so the model records no file paths and the output is the same on every run."""
    path = os.path.join(ROOT, name + ".model")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, num_threads=1, minloglevel=2,
                                   user_defined_symbols=TEMPLATE, **options)
    with open(path, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=path)
    write(name + ".expected.json", expected(lambda s: sp.encode(s), lambda ids: sp.decode(ids), sp.get_piece_size(), random.Random(name)))


def hf_expected(name, tokenizer):
    tokenizer.save(os.path.join(ROOT, name + ".json"))
    # Reload from the file, as xtrain does.
    tokenizer = Tokenizer.from_file(os.path.join(ROOT, name + ".json"))
    write(name + ".expected.json", expected(lambda s: tokenizer.encode(s, add_special_tokens=False).ids,
                                            lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
                                            tokenizer.get_vocab_size(), random.Random(name)))


def byte_level(lines, name, pre_tokenizer, ignore_merges=False):
    tokenizer = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>"] + TEMPLATE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines, trainer)
    hf_expected(name, tokenizer)


def sp_style_bpe(lines):
    """A BPE trained on ▁-escaped text, then rebuilt with the 256 byte pieces in its vocabulary (not as added
    tokens, as in Llama's tokenizer.json), saved with two front ends: Prepend + Replace normalizers with the
    Replace / ByteFallback / Fuse / Strip decoders, and a Metaspace pre-tokenizer with the Metaspace decoder."""
    trainer = trainers.BpeTrainer(vocab_size=800, show_progress=False, special_tokens=["<unk>", "<s>", "</s>"])
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    base.train_from_iterator(lines, trainer)
    trained = json.loads(base.to_str())["model"]
    vocab = dict(trained["vocab"])
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m) for m in trained["merges"]]
    specials = [AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"] + TEMPLATE]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens(specials)
    hf_expected("hf-sp-bpe", tokenizer)

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.add_special_tokens(specials)
    hf_expected("hf-metaspace", tokenizer)


def main():
    os.makedirs(ROOT, exist_ok=True)
    lines = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        # The model records the rule file's path: a relative one keeps it the same on every run.
        os.chdir(tmp)
        rules = "rules.tsv"
        with open(rules, "w", encoding="utf-8") as f:
            # source code points <TAB> target code points; a few NFKC-like rules.
            for source, target in [("FF21", "41"), ("FF22", "42"), ("FF23", "43"), ("FF11", "31"), ("FF12", "32"), ("FF13", "33"),
                                   ("FB01", "66 69"), ("FB02", "66 6C"), ("2460", "31"), ("3000", "20"), ("9", "20"),
                                   ("65 301", "E9"), ("2122", "54 4D")]:
                f.write(f"{source}\t{target}\n")
        train_sp(lines, "sp-bpe", model_type="bpe", vocab_size=1000, byte_fallback=True, split_digits=True,
                       normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
                       allow_whitespace_only_pieces=True, character_coverage=0.9995)
        train_sp(lines, "sp-bpe-nfkc", model_type="bpe", vocab_size=800, normalization_rule_tsv=rules, character_coverage=0.999)
        train_sp(lines, "sp-unigram", model_type="unigram", vocab_size=1000, character_coverage=0.999)
        train_sp(lines, "sp-unigram-bf", model_type="unigram", vocab_size=1000, byte_fallback=True,
                 normalization_rule_name="identity", character_coverage=0.999)
        byte_level(lines, "hf-bytelevel", pre_tokenizers.ByteLevel(add_prefix_space=False))
        byte_level(lines, "hf-llama3", pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]), ignore_merges=True)
        sp_style_bpe(lines)
    for name in sorted(os.listdir(ROOT)):
        print(f"{name}: {os.path.getsize(os.path.join(ROOT, name))} bytes")


if __name__ == "__main__":
    main()
