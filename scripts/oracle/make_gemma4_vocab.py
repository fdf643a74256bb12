#!/usr/bin/env python3
"""A vocabulary-only GGUF of Gemma 4's shape (tokenizer.ggml.model =
"gemma4"), small enough to make in CI: what tests/test_tokenizer_gemma4.c
and its fixtures (scripts/oracle/make_tokenizer_fixtures.sh, name
gemma4-synth) tokenize with, beside the real vocabulary llama.cpp ships.

  make_gemma4_vocab.py OUTDIR
      OUTDIR/gemma4-vocab.gguf

Laid out as the converter (conversion/gemma.py, Gemma4Model.set_vocab)
writes the real one, which came from a SentencePiece model through Hugging
Face's BPE conversion:
  - ids 0-4 <pad> <eos> <bos> <unk> <mask>, control; [multimodal] and
    <unusedN> normal; <|tool> <tool|> <|think|> <|turn> <turn|> control;
    the tool-call, tool-response, string-quote and channel markers
    user-defined (the converter's "visible" tokens);
  - whitespace runs (U+2581, tab, newline), <s> and </s> (normal), the 256
    <0xNN> byte tokens, then pieces learned by plain BPE from the training
    text of make_bpe_vocab.py and tests/fixtures/tokenizer/corpus.txt
    (spaces as U+2581, so they fire on the test texts), random joins of
    earlier pieces (across words, as SentencePiece pieces can be), the
    single characters seen at least twice (rarer ones fall back to bytes;
    so does NUL, never in a piece: llama.cpp reads a token's text up to it),
    and the image/audio/video markers, control;
  - merges for every piece, one per split into two pieces, ordered by the
    piece's id then the halves' (how the conversion lists them), so a piece
    is often reachable by more than one path;
  - every score -1000, BOS 2, EOS 1, UNK 3, PAD 0, add_bos_token true,
    add_space_prefix false, no tokenizer.ggml.pre.
The newline run of three is left out, so a run of three newlines is merged
from single ones instead of being taken whole. The architecture is "llama"
with made-up sizes: llama.cpp's vocab-only load needs one. Deterministic; a
few seconds; needs numpy and gguf only.
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
    sys.stderr.write(f"make_gemma4_vocab.py: {e}: pip install gguf (scripts/setup.sh installs it)\n")
    sys.exit(77)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bpe_vocab import CUTS, ROOT, TRAINING  # noqa: E402

SEED = 20261125
N_LEARNED = 900
N_RANDOM = 300
SPACE = "\u2581"
C, N, U = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL, gguf.TokenType.USER_DEFINED
HEAD = ([("<pad>", C), ("<eos>", C), ("<bos>", C), ("<unk>", C), ("<mask>", C), ("[multimodal]", N)]
        + [(f"<unused{i}>", N) for i in range(4)]
        + [("<|tool>", C), ("<tool|>", C), ("<|tool_call>", U), ("<tool_call|>", U), ("<|tool_response>", U),
           ("<tool_response|>", U), ('<|"|>', U), ("<|think|>", C), ("<|channel>", U), ("<channel|>", U),
           ("<|turn>", C), ("<turn|>", C)])
RUNS = ([SPACE * k for k in range(2, 9)] + ["\t" * k for k in range(1, 5)]
        + ["\n" * k for k in (1, 2, 4, 5, 6)] + ["<s>", "</s>"])
TAIL = ["<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]


def training_words(reserved):
    """The training text as SentencePiece sees it (spaces as U+2581), cut
    into words: newline runs, a space run before a word less its last space,
    a word with the space before it; counted. Special texts are left out."""
    corpus = (ROOT / "tests" / "fixtures" / "tokenizer" / "corpus.txt").read_bytes()
    data = TRAINING.encode("utf-8") * 3 + CUTS.encode("utf-8") * 20 + corpus.replace(b"\n__ggml_vocab_test__\n", b"\n")
    text = data.decode("utf-8", errors="ignore")
    for r in reserved + ["\x00"]:  # llama.cpp reads a token's text up to a NUL
        text = text.replace(r, " ")
    text = text.replace(" ", SPACE)
    return Counter(re.findall(f"\n+|{SPACE}+(?={SPACE})|{SPACE}?[^{SPACE}\n]+|{SPACE}", text))


def learn_pieces(words, n_merges):
    """Plain BPE over characters: join the most frequent adjacent pair, ties
    to the pair that sorts first, n_merges times. Returns the joined pieces."""
    words = [(list(w), c) for w, c in words.items()]
    pieces = []
    for _ in range(n_merges):
        pairs = Counter()
        for syms, count in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + "\x00" + kv[0][1]]))[0]
        pieces.append(best[0] + best[1])
        for syms, _ in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == best[0] and syms[i + 1] == best[1]:
                    syms[i:i + 2] = [best[0] + best[1]]
                i += 1
    return pieces


def make_vocab(rng):
    reserved = [t for t, _ in HEAD] + TAIL + RUNS[-2:]
    words = training_words(reserved)
    chars = Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    texts = [t for t, _ in HEAD] + RUNS + [f"<0x{b:02X}>" for b in range(256)]
    singles = sorted((ch for ch, c in chars.items() if c >= 2 and ch not in texts), key=lambda ch: (-chars[ch], ch))
    types = [t for _, t in HEAD] + [N] * len(RUNS) + [gguf.TokenType.BYTE] * 256
    seen = set(texts) | set(singles)
    learned = []
    for p in learn_pieces(words, N_LEARNED):
        if p not in seen and "\n" not in p:
            seen.add(p)
            learned.append(p)
    pool = learned + singles
    n_target = len(learned) + N_RANDOM
    while len(learned) < n_target:
        a = pool[int(rng.randint(0, len(pool)))]
        b = pool[int(rng.randint(0, len(pool))) // (1 + int(rng.randint(0, 4)))]
        if a + b in seen or len(a + b) > 12:
            continue
        seen.add(a + b)
        learned.append(a + b)
    texts += learned + singles + TAIL
    types += [N] * (len(learned) + len(singles)) + [C] * len(TAIL)
    assert len(set(texts)) == len(texts)
    return texts, types


def make_merges(texts, types):
    """Every split of every normal piece into two normal pieces, ordered by
    (piece id, left id, right id)."""
    ids = {t: i for i, t in enumerate(texts) if types[i] == N}
    merges = []
    for piece, pid in ids.items():
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in ids and right in ids:
                merges.append((pid, ids[left], ids[right], f"{left} {right}"))
    return [m[3] for m in sorted(merges)]


def write_vocab(path, texts, types, merges):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("gemma4 vocabulary (synthetic)")
    w.add_block_count(1)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gemma4")
    w.add_token_list(texts)
    w.add_token_scores([-1000.0] * len(texts))
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_mask_token_id(4)
    w.add_add_space_prefix(False)
    w.add_add_bos_token(True)
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
    texts, types = make_vocab(np.random.RandomState(SEED))
    merges = make_merges(texts, types)
    # Written under a temporary name: a test never sees half a file.
    path = outdir / "gemma4-vocab.gguf"
    partial = path.with_suffix(".gguf.partial")
    write_vocab(partial, texts, types, merges)
    partial.replace(path)
    print(f"wrote {path} ({len(texts)} tokens, {len(merges)} merges)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
