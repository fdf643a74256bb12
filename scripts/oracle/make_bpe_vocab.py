#!/usr/bin/env python3
"""Vocabulary-only GGUFs for the byte-level BPE pre-tokenizers that have no
small real model to test with: what tests/test_tokenizer_fixtures.c and its
fixtures (scripts/oracle/make_tokenizer_fixtures.sh) tokenize with.

  make_bpe_vocab.py OUTDIR
      OUTDIR/qwen35-vocab.gguf        tokenizer.ggml.pre = qwen35, Qwen's
                                      added tokens, no BOS
      OUTDIR/deepseek-llm-vocab.gguf  tokenizer.ggml.pre = deepseek-llm,
                                      DeepSeek's BOS/EOS, BOS added
      OUTDIR/gpt-4o-vocab.gguf        tokenizer.ggml.pre = gpt-4o, gpt-oss's
                                      (o200k_harmony) special tokens, no BOS

Each is GPT-2's 256 byte characters, then merges learned by plain BPE from
TRAINING below and tests/fixtures/tokenizer/corpus.txt (so merges fire on
the test texts: words, combining marks, digits, CJK, punctuation runs,
whitespace runs), then random merges of earlier tokens from a fixed seed
(tokens the pre-tokenizer usually keeps apart, as a real vocabulary has),
then the family's special tokens. The architecture is "llama" with made-up
sizes: llama.cpp's vocab-only load needs one, and the tokenizer reads none
of it. Deterministic; a second or so; needs numpy and gguf only.
"""
import re
import sys
from collections import Counter
from pathlib import Path

try:
    import numpy as np
    import gguf
except ImportError as e:
    # 77: CTest's "skipped", for the test step that runs this on a machine
    # without the packages.
    sys.stderr.write(f"make_bpe_vocab.py: {e}: pip install gguf (scripts/setup.sh installs it)\n")
    sys.exit(77)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dense_model import QWEN3_ADDED_TOKENS as QWEN_ADDED_TOKENS, gpt2_byte_chars  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEED = 20260517
N_LEARNED = 900
N_RANDOM = 300

# Text the merges are learned from, beside the test corpus: the scripts and
# shapes each pre-tokenizer treats differently.
TRAINING = """\
The tokenizer splits text into pieces before it merges bytes. It's what they're for; we'll see, you've
been told, I'd say, don't you think? THE END. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 42%.
    indented code(x, y) { return x + y; }\n\treturn None\r\n
caf\u00e9 cafe\u0301 e\u0301 a\u0300 o\u0308 n\u0303 u\u0308ber na\u00efve r\u00e9sum\u00e9 Ti\u1ebfng Vi\u1ec7t ti\u1ebfng vi\u1ec7t
\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u0928\u092e\u0938\u094d\u0924\u0947 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35
\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5 \u6211\u4eec\u4eca\u5929 \ud55c\uad6d\uc5b4 \ubb38\uc7a5 \u4ef7\u683c\u5143 \uc57d \uc6d0
\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03ba\u03b1\u03b9 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u044f\u0437\u044b\u043a \u0532\u0561\u0580\u0565\u057e \u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8
\uff21\uff22\uff23\uff01\uff08\u5168\u89d2\uff09\uff1a\uff5e\u3001\u3002\u300c\u5f15\u7528\u300d \u0663\u0664\u0665 \u096b\u096c \u00b9\u00b2\u00b3
... --- === !!! ??? ((( ))) [[ ]] {{ }} <= >= != == -> => :: // /* */ # ## ### ** __ ~~ \u2014 \u2026 \u201c \u201d
"""
# Where a regex engine's own idea of whitespace (U+180E, U+3000, U+2009 in
# CJK) or of case (the long s) would cut differently from llama.cpp; learned
# often enough that merges cross those cuts, so a difference shows in the ids.
CUTS = "!!\u180e!! x\u180eab it'ſt \u3000\u3000\u3002 \u4e2d\u2009\u6587\n"
# The same for gpt-4o (its own merges, so the other vocabularies stay as they
# are): where its tokenizer.json's \p{Lu}/\p{Ll} classes and \p{M} would cut
# differently from llama.cpp's rewrite, which counts a letter outside ASCII as
# both cases and a combining mark as no letter; case changes inside words,
# contractions after capitals, slashes after punctuation.
GPT4O_CUTS = ("na\u00efVE aÉcole ÉCOLEécole Führer FÜHRER \u01c5ungla \u0416\u0436 \u0436\u0416 cafe\u0301 "
              "Zalgo\u0336\u0337 \u00b5\u03a9 HTTPServer iPhone DON'T It'S x'Ll ://a/ </ 12345 \u0663\u0664\u0665\u0666\n")


def training_words(reserved, cuts):
    """Whitespace-led chunks of the training text, as byte strings, counted;
    the reserved (special token) texts left out, so no normal token is one."""
    corpus = (ROOT / "tests" / "fixtures" / "tokenizer" / "corpus.txt").read_bytes()
    text = TRAINING.encode("utf-8") * 3 + cuts.encode("utf-8") * 20 + corpus.replace(b"\n__ggml_vocab_test__\n", b"\n")
    for r in reserved:
        text = text.replace(r.encode("utf-8"), b" ")
    return Counter(re.findall(rb" ?\S+|\s+", text))


def learn_merges(byte_chars, n_merges, reserved, cuts):
    """Plain BPE: merge the most frequent adjacent pair, ties to the pair that
    sorts first, n_merges times."""
    words = [([byte_chars[b] for b in w], c) for w, c in training_words(reserved, cuts).items()]
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for syms, count in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + " " + kv[0][1]]))[0]
        merges.append(best)
        for syms, _ in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == best[0] and syms[i + 1] == best[1]:
                    syms[i:i + 2] = [best[0] + best[1]]
                i += 1
    return merges


def make_vocab(rng, reserved, cuts=CUTS):
    """Byte characters, learned merges, then random merges of earlier tokens."""
    byte_chars = gpt2_byte_chars()
    # gpt2_byte_chars lists the printable bytes' characters first, then the rest.
    printable = [b for b in range(256) if 0x21 <= b < 0x7F or 0xA1 <= b < 0xAD or 0xAE <= b]
    moved = [b for b in range(256) if b not in printable]
    by_byte = [None] * 256
    for b, ch in zip(printable + moved, byte_chars):
        by_byte[b] = ch
    tokens = list(byte_chars)
    seen = set(tokens) | set(reserved)
    merges = []
    for a, b in learn_merges(by_byte, N_LEARNED, reserved, cuts):
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    n_target = len(tokens) + N_RANDOM
    while len(tokens) < n_target:
        a = tokens[int(rng.randint(0, len(tokens)))]
        b = tokens[int(rng.randint(0, len(tokens))) // (1 + int(rng.randint(0, 4)))]
        if a + b in seen or len(a + b) > 16:
            continue
        seen.add(a + b)
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    return tokens, merges


def write_vocab(path, pre, tokens, merges, specials, bos, eos, add_bos):
    """specials: (text, token type) appended after the normal tokens; bos and
    eos name two of them."""
    texts = tokens + [t for t, _ in specials]
    types = [gguf.TokenType.NORMAL] * len(tokens) + [t for _, t in specials]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"{pre} vocabulary (synthetic)")
    w.add_block_count(1)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(texts)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(texts.index(bos))
    w.add_eos_token_id(texts.index(eos))
    w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    qwen = [(t, gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.USER_DEFINED)
            for t in QWEN_ADDED_TOKENS]
    deepseek = [("<\uff5cbegin\u2581of\u2581sentence\uff5c>", gguf.TokenType.CONTROL),
                ("<\uff5cend\u2581of\u2581sentence\uff5c>", gguf.TokenType.CONTROL)]
    tokens, merges = make_vocab(np.random.RandomState(SEED), [t for t, _ in qwen + deepseek])
    vocabs = [
        ("qwen35-vocab.gguf", "qwen35", qwen, "<|endoftext|>", "<|im_end|>", False),
        ("deepseek-llm-vocab.gguf", "deepseek-llm", deepseek, deepseek[0][0], deepseek[1][0], True),
    ]
    # gpt-oss's added tokens in their order (ids 199998-200018 there), all
    # control tokens; BOS <|startoftext|>, EOS <|return|>, no BOS added.
    harmony = ["<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
               "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>"]
    harmony += [f"<|reserved_{i}|>" for i in range(200009, 200012)] + ["<|call|>"]
    harmony += [f"<|reserved_{i}|>" for i in range(200013, 200018)] + ["<|endofprompt|>"]
    harmony = [(t, gguf.TokenType.CONTROL) for t in harmony]
    o200k_tokens, o200k_merges = make_vocab(np.random.RandomState(SEED), [t for t, _ in harmony], CUTS + GPT4O_CUTS)
    vocabs = [(name, pre, specials, bos, eos, add_bos, tokens, merges)
              for name, pre, specials, bos, eos, add_bos in vocabs]
    vocabs.append(("gpt-4o-vocab.gguf", "gpt-4o", harmony, "<|startoftext|>", "<|return|>", False, o200k_tokens,
                   o200k_merges))
    for name, pre, specials, bos, eos, add_bos, tokens, merges in vocabs:
        # Written under a temporary name: a test never sees half a file.
        path = outdir / name
        partial = path.with_suffix(".gguf.partial")
        write_vocab(partial, pre, tokens, merges, specials, bos, eos, add_bos)
        partial.replace(path)
        print(f"wrote {path} ({len(tokens) + len(specials)} tokens, {len(merges)} merges)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
