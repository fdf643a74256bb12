#!/usr/bin/env python3
"""Random-weight models of the dense decoder architectures (Qwen 3, Qwen 2,
Llama 3), in the layout llama.cpp's convert_hf_to_gguf.py gives a real
checkpoint: the same tensor names, shapes, types and order, the same metadata
keys, and a byte-level BPE ("gpt2") vocabulary of the same structure (256 byte
characters, merged tokens, the family's added tokens, Qwen's [PAD] fillers).
Only the weights and the token strings are made up.

  make_dense_model.py tiny OUTDIR
      ARCH-tiny-{f16,q8_0,q4_k_m}.gguf for ARCH in qwen3, qwen2, llama, qwen3moe, for
      tests/test_dense.c and its fixtures (scripts/oracle/make_dense_fixtures.sh).
      All have an embedding of 256, 4 layers and a vocabulary of 2048, with
      every part of their architecture and different head layouts:
        qwen3  4 heads, 2 KV heads of 64, q/k norms, tied output
        qwen2  8 heads, 1 KV head of 32, q/k/v biases, tied output
        llama  8 heads, 2 KV heads of 32, Llama 3.1 rope_freqs, untied output
        qwen3moe  as qwen3, untied output, 16 experts of 256 with 4 chosen,
               an f32 router (Qwen3-30B-A3B's layout)
      A few seconds; needs numpy and gguf only.
  make_dense_model.py tiny-ids ARCH
      The 512 token ids the fixtures feed ARCH's tiny models: random ids of
      its byte and merged tokens (a random model reads any token as well as
      another), none of the added ones.
  make_dense_model.py bench [OUT.gguf]
      Qwen3-0.6B's shapes (embedding 1024, 28 layers, 16 heads and 8 KV heads
      of 128, feed-forward 3072, vocabulary 151936, tied embeddings), written
      as F16 and quantized to Q4_K_M by the oracle's llama-quantize
      (scripts/oracle/build-llama-cpp.sh). Default OUT:
      ~/.cache/hearth/models/qwen3-0.6b-shape-q4_k_m.gguf. About a minute.
  make_dense_model.py bench-moe [OUT.gguf]
      Qwen3-30B-A3B's shapes (embedding 2048, 32 heads and 4 KV heads of 128,
      128 experts of 768 with 8 chosen, vocabulary 151936) with 6 of its 48
      layers, Q4_K_M by llama-quantize as above. Default OUT:
      ~/.cache/hearth/models/qwen3-30b-a3b-6l-shape-q4_k_m.gguf. About 8 GB of
      temporary F16 next to OUT, and a few minutes.
  make_dense_model.py weights-crc32 FILE.gguf
      CRC-32 of all tensor data in file order, the fingerprint the test
      fixtures record so a test knows it runs the bytes the oracle ran.

Deterministic: numpy's legacy RandomState, whose streams numpy keeps frozen,
and exactly rounded arithmetic but for a log in the normal draws and an exp
of the embedding's row lengths, whose last-bit differences between libms
would have to meet an f16 or f32 rounding boundary to show (odds about 1e-8
per model). The fixtures record a CRC-32 of the weights, so if different bytes
ever come out, the test says so.

Why the tiny model's quantized variants are not made by llama-quantize: a test
machine has no llama.cpp, and model files are not committed. Q8_0 comes from
gguf.quants (ggml's reference algorithm, bit for bit); Q4_K and Q6_K, which
gguf.quants cannot write, from the plain quantizers below (each sub-block's
range, no search: not ggml's algorithm, but valid blocks of those formats,
which is all a comparison of two engines on the same bytes needs). Which
tensor gets which type follows llama-quantize's Q4_K_M rules for this model.
"""
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as QT
    from gguf.constants import LlamaFileType
except ImportError as e:
    # 77: CTest's "skipped", for the test step that runs this on a machine
    # without the packages.
    sys.stderr.write(f"make_dense_model.py: {e}: pip install gguf (scripts/setup.sh installs it)\n")
    sys.exit(77)

ROOT = Path(__file__).resolve().parents[2]
SEED = 20260301

# Qwen 3's added tokens, ids n_normal.. in this order: the <|...|> ones are
# control tokens, the tool and think tags user-defined (as the converter types
# them from tokenizer_config.json). Qwen 2.5 has the first 22 of them.
QWEN3_ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Llama 3's 256 special tokens, all control tokens, in their id order.
LLAMA3_NAMED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
LLAMA3_ADDED_TOKENS = LLAMA3_NAMED + [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(LLAMA3_NAMED))]
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# What each architecture's converter writes.
FAMILIES = {
    "qwen3": dict(basename="Qwen3", pre="qwen2", added=QWEN3_ADDED_TOKENS, template=QWEN_CHAT_TEMPLATE,
                  control=lambda t: t.startswith("<|"), bos="<|endoftext|>", eos="<|im_end|>",
                  pad="<|endoftext|>", add_bos=False, rope_base=1000000.0, eps=1e-6, n_ctx=40960,
                  qk_norm=True, qkv_bias=False, tied=True),
    "qwen3moe": dict(basename="Qwen3", pre="qwen2", added=QWEN3_ADDED_TOKENS, template=QWEN_CHAT_TEMPLATE,
                     control=lambda t: t.startswith("<|"), bos="<|endoftext|>", eos="<|im_end|>",
                     pad="<|endoftext|>", add_bos=False, rope_base=1000000.0, eps=1e-6, n_ctx=40960,
                     qk_norm=True, qkv_bias=False, tied=False, moe=True),
    "qwen2": dict(basename="Qwen2.5", pre="qwen2", added=QWEN3_ADDED_TOKENS[:22], template=QWEN_CHAT_TEMPLATE,
                  control=lambda t: t.startswith("<|"), bos="<|endoftext|>", eos="<|im_end|>",
                  pad="<|endoftext|>", add_bos=False, rope_base=1000000.0, eps=1e-6, n_ctx=32768,
                  qk_norm=False, qkv_bias=True, tied=True),
    "llama": dict(basename="Llama-3.2", pre="llama-bpe", added=LLAMA3_ADDED_TOKENS, template=LLAMA3_CHAT_TEMPLATE,
                  control=lambda t: True, bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, add_bos=True,
                  rope_base=500000.0, eps=1e-5, n_ctx=131072, qk_norm=False, qkv_bias=False, tied=False),
}

TINY = {
    "qwen3": dict(arch="qwen3", name="Qwen3 tiny (random weights)", size_label="tiny", seed=SEED, n_embd=256,
                  n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, n_ff=512, n_vocab=2048, n_normal=2000),
    # 16 experts, 4 chosen per token, expert FFN 256 (a multiple of Q4_K's
    # 256-element blocks, as Qwen3-30B-A3B's 768 is).
    "qwen3moe": dict(arch="qwen3moe", name="Qwen3 MoE tiny (random weights)", size_label="tiny-A1", seed=SEED + 30,
                     n_embd=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, n_ff=768, n_vocab=2048,
                     n_normal=2000, n_experts=16, n_experts_used=4, n_ff_exp=256),
    "qwen2": dict(arch="qwen2", name="Qwen2.5 tiny (random weights)", size_label="tiny", seed=SEED + 10,
                  n_embd=256, n_layers=4, n_heads=8, n_kv_heads=1, head_dim=32, n_ff=768, n_vocab=2048,
                  n_normal=2000),
    # rope_freqs: Llama 3.1's long-context scaling (factor, low and high
    # frequency factors, original context), with an original context of 256
    # instead of 8192, so that most of the head's pairs are slowed down within
    # the fixtures' 512 positions and a RoPE that ignored them would show.
    "llama": dict(arch="llama", name="Llama 3 tiny (random weights)", size_label="tiny", seed=SEED + 20,
                  n_embd=256, n_layers=4, n_heads=8, n_kv_heads=2, head_dim=32, n_ff=768, n_vocab=2048,
                  n_normal=1792, rope_freqs=dict(factor=8.0, low=1.0, high=4.0, original_ctx=256)),
}
BENCH = dict(arch="qwen3", name="Qwen3 0.6B shape (random weights)", size_label="0.6B", seed=SEED + 1, n_embd=1024,
             n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, n_ff=3072, n_vocab=151936, n_normal=151643)
# Qwen3-30B-A3B's shapes, its 48 layers cut to 6 (the MoE benchmark).
BENCH_MOE = dict(arch="qwen3moe", name="Qwen3-30B-A3B shape, 6 layers (random weights)", size_label="30B-A3B-6L",
                 seed=SEED + 2, n_embd=2048, n_layers=6, n_heads=32, n_kv_heads=4, head_dim=128, n_ff=6144,
                 n_vocab=151936, n_normal=151643, n_experts=128, n_experts_used=8, n_ff_exp=768)
FIXTURE_IDS_SEED = 20260302


# ---- vocabulary -----------------------------------------------------------------

def gpt2_byte_chars():
    """GPT-2's byte alphabet in its vocabulary order: the printable Latin-1
    bytes as themselves, then the other 68 bytes as U+0100 onwards."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    moved = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(0x100 + i) for i in range(len(moved))]


def make_vocab(cfg, rng):
    """Byte characters, then n_normal - 256 tokens each merged from two earlier
    ones (so the merge list is a valid BPE), then the added tokens, then
    [PAD<id>] up to n_vocab, as the converter pads Qwen's vocabulary."""
    family = FAMILIES[cfg["arch"]]
    tokens = gpt2_byte_chars()
    seen = set(tokens)
    merges = []
    while len(tokens) < cfg["n_normal"]:
        # Short tokens are picked more often, as in a real merge list.
        a = tokens[int(rng.randint(0, len(tokens))) // (1 + int(rng.randint(0, 4)))]
        b = tokens[int(rng.randint(0, 256))]
        if a + b in seen:
            continue
        seen.add(a + b)
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for text in family["added"]:
        tokens.append(text)
        types.append(gguf.TokenType.CONTROL if family["control"](text) else gguf.TokenType.USER_DEFINED)
    while len(tokens) < cfg["n_vocab"]:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(gguf.TokenType.UNUSED)
    assert len(tokens) == cfg["n_vocab"]
    return tokens, types, merges


# ---- weights ---------------------------------------------------------------------

def layer_tensors(cfg, il):
    """One layer's tensors in the converter's order: the Hugging Face names
    sorted (input_layernorm, mlp.*, post_attention_layernorm, self_attn.*, and
    within a projection bias before weight)."""
    family = FAMILIES[cfg["arch"]]
    if family.get("moe"):
        # The converter stacks mlp.experts.N.* into one tensor per kind;
        # mlp.gate is the router.
        names = ["attn_norm.weight", "ffn_down_exps.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                 "ffn_gate_inp.weight", "ffn_norm.weight"]
    else:
        names = ["attn_norm.weight", "ffn_down.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_norm.weight"]
    for proj in ("attn_k", "attn_output", "attn_q", "attn_v"):
        if family["qk_norm"] and proj in ("attn_k", "attn_q"):
            names.append(f"{proj}_norm.weight")
        if family["qkv_bias"] and proj != "attn_output":
            names.append(f"{proj}.bias")
        names.append(f"{proj}.weight")
    return [f"blk.{il}.{n}" for n in names]


def tensor_plan(cfg):
    """(name, numpy shape) in file order. Tensors the converter makes itself
    (rope_freqs) come first; then the safetensors keys, sorted: lm_head
    (the untied output) before the embedding, layer 10 before layer 2, the
    output norm last."""
    family = FAMILIES[cfg["arch"]]
    e, hd, ff = cfg["n_embd"], cfg["head_dim"], cfg["n_ff"]
    q_dim, kv_dim = cfg["n_heads"] * hd, cfg["n_kv_heads"] * hd
    shapes = {"attn_norm": (e,), "ffn_norm": (e,), "attn_q_norm": (hd,), "attn_k_norm": (hd,),
              "attn_q": (q_dim, e), "attn_k": (kv_dim, e), "attn_v": (kv_dim, e), "attn_output": (e, q_dim),
              "ffn_gate": (ff, e), "ffn_up": (ff, e), "ffn_down": (e, ff)}
    if family.get("moe"):
        n_exp, ff_exp = cfg["n_experts"], cfg["n_ff_exp"]
        shapes.update({"ffn_gate_inp": (n_exp, e), "ffn_gate_exps": (n_exp, ff_exp, e),
                       "ffn_up_exps": (n_exp, ff_exp, e), "ffn_down_exps": (n_exp, e, ff_exp)})
    plan = []
    if "rope_freqs" in cfg:
        plan.append(("rope_freqs.weight", (hd // 2,)))
    if not family["tied"]:
        plan.append(("output.weight", (cfg["n_vocab"], e)))
    plan.append(("token_embd.weight", (cfg["n_vocab"], e)))
    for il in sorted(range(cfg["n_layers"]), key=str):
        for name in layer_tensors(cfg, il):
            kind, what = name.split(".")[-2:]
            shape = shapes[kind]
            plan.append((name, shape[:1] if what == "bias" else shape))
    plan.append(("output_norm.weight", (e,)))
    return plan


def llama3_rope_freqs(cfg):
    """The converter's rope_freqs for Llama 3.1 scaling: 1 for wavelengths
    below original_ctx / high, factor above original_ctx / low, and a smooth
    step between."""
    r = cfg["rope_freqs"]
    hd, base = cfg["head_dim"], FAMILIES[cfg["arch"]]["rope_base"]
    freqs = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < r["original_ctx"] / r["high"]:
            factors.append(1.0)
        elif wavelen > r["original_ctx"] / r["low"]:
            factors.append(r["factor"])
        else:
            smooth = (r["original_ctx"] / wavelen - r["low"]) / (r["high"] - r["low"])
            factors.append(1.0 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def random_weight(rng, name, shape):
    """Matrices N(0, 0.02) and norm weights N(1, 0.1), the scales of a trained
    model; norms f32, matrices f16, as the converter writes them.

    Biases are N(0, 0.5). The embedding and the output matrix get rows of log-normal length
    (sigma 1), as token frequency gives real embeddings. With rows of equal
    length the next-token distribution is flat: the top two logits lie within
    0.3 % of the logit scale of each other at a few positions in a hundred,
    which is where int8 activations put two engines' disagreement (see
    tests/test_dense.c), and top-1 agreement would measure that noise rather
    than the forward pass. Unequal rows give peaked distributions, like a
    trained model's."""
    if name.endswith(".bias"):
        # Qwen 2's key biases reach tens in trained checkpoints.
        return (0.5 * rng.standard_normal(shape)).astype(np.float32)
    if len(shape) == 1:
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith("ffn_gate_inp.weight"):
        # The router, kept f32 by the converter (and by llama-quantize). Its
        # logits spread over a few units, as a trained router's do: with the
        # matrices' 0.02, the top experts' scores would lie within a rounding
        # error of the next ones and each engine's choice would be luck.
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)
    w = 0.02 * rng.standard_normal(shape)
    if name in ("token_embd.weight", "output.weight"):
        w *= np.exp(rng.standard_normal((shape[0], 1)))
    return w.astype(np.float16)


# ---- Q4_K and Q6_K (plain quantizers, exactly rounded arithmetic) --------------

def f16_round(x):
    return x.astype(np.float16).astype(np.float64)


def safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def quantize_q4_k(w):
    """Blocks of 256: eight sub-blocks of 32, each y = d*sc*q - dmin*m with
    6-bit sc and m, 4-bit q. Layout: d, dmin (f16), scales[12], qs[128]."""
    x = w.astype(np.float64).reshape(-1, 8, 32)
    lo = np.minimum(x.min(axis=2), 0.0)
    scale, offset = (x.max(axis=2) - lo) / 15.0, -lo
    d, dmin = f16_round(scale.max(axis=1) / 63.0), f16_round(offset.max(axis=1) / 63.0)
    sc = np.clip(np.rint(safe_div(scale, d[:, None])), 0, 63)
    m = np.clip(np.rint(safe_div(offset, dmin[:, None])), 0, 63)
    step, base = d[:, None] * sc, dmin[:, None] * m
    q = np.clip(np.rint(safe_div(x + base[:, :, None], step[:, :, None])), 0, 15).astype(np.uint8)
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    scales = np.concatenate([sc[:, :4] | ((sc[:, 4:] >> 4) << 6), m[:, :4] | ((m[:, 4:] >> 4) << 6),
                             (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4)], axis=1)
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2), scales, qs], axis=1)
    expected = (step[:, :, None] * q - base[:, :, None]).reshape(-1)
    return blocks, expected


def quantize_q6_k(w):
    """Blocks of 256: sixteen sub-blocks of 16, each y = d*sc*(q - 32) with
    int8 sc, 6-bit q. Layout: ql[128] (low 4 bits), qh[64] (high 2 bits),
    scales[16], d (f16)."""
    x = w.astype(np.float64).reshape(-1, 16, 16)
    scale = np.abs(x).max(axis=2) / 31.0
    d = f16_round(scale.max(axis=1) / 127.0)
    sc = np.clip(np.rint(safe_div(scale, d[:, None])), 0, 127)
    step = d[:, None] * sc
    q = (np.clip(np.rint(safe_div(x, step[:, :, None])), -32, 31) + 32).astype(np.uint8)
    groups = q.reshape(-1, 2, 4, 32)  # [half, group of 32 within the half, element]
    low, high = groups & 0xF, groups >> 4
    ql = (low[:, :, 0:2] | (low[:, :, 2:4] << 4)).reshape(-1, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(-1, 64)
    blocks = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8),
                             d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    expected = (step[:, :, None] * (q.astype(np.float64) - 32)).reshape(-1)
    return blocks, expected


def quantize(w, qtype):
    """Raw blocks of an f16 matrix as bytes, shape (rows, row bytes); a stack
    of expert matrices keeps its leading dimension."""
    if w.ndim == 3:
        return quantize(w.reshape(-1, w.shape[-1]), qtype).reshape(w.shape[0], w.shape[1], -1)
    rows = w.shape[0]
    w32 = w.astype(np.float32)
    if qtype == QT.Q8_0:
        return gguf.quants.quantize(w32, QT.Q8_0)
    blocks, expected = (quantize_q4_k if qtype == QT.Q4_K else quantize_q6_k)(w32)
    # The packing is checked against gguf's own dequantizer, so a layout slip
    # cannot hide behind two engines reading the same wrong bytes.
    back = gguf.quants.dequantize(blocks.reshape(rows, -1), qtype).astype(np.float64).reshape(-1)
    assert np.allclose(back, expected, rtol=1e-6, atol=1e-9), f"{qtype.name} packing"
    assert np.abs(back - w32.reshape(-1)).max() <= 0.2 * np.abs(w32).max(), f"{qtype.name} accuracy"
    return blocks.reshape(rows, -1)


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def q4_k_m_types(cfg, plan):
    """llama-quantize's Q4_K_M choices for these architectures: Q6_K for the
    output (the embedding, when tied) and for attn_v and ffn_down in the
    layers use_more_bits picks, counted in file order; Q4_K elsewhere."""
    tied = FAMILIES[cfg["arch"]]["tied"]
    types, n_v, n_down = {}, 0, 0
    for name, shape in plan:
        if len(shape) == 1 or name.endswith("ffn_gate_inp.weight"):
            continue
        kind = name.split(".")[-2].removesuffix("_exps")
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            types[name] = QT.Q6_K
        elif kind == "attn_v":
            types[name] = QT.Q6_K if use_more_bits(n_v, cfg["n_layers"]) else QT.Q4_K
            n_v += 1
        elif kind == "ffn_down":
            types[name] = QT.Q6_K if use_more_bits(n_down, cfg["n_layers"]) else QT.Q4_K
            n_down += 1
        else:
            types[name] = QT.Q4_K
    return types


# ---- writing ----------------------------------------------------------------------

def write_model(path, cfg, vocab, weights, file_type, types):
    tokens, token_types, merges = vocab
    family = FAMILIES[cfg["arch"]]
    w = gguf.GGUFWriter(str(path), cfg["arch"])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(cfg["name"])
    w.add_basename(family["basename"])
    w.add_size_label(cfg["size_label"])
    if cfg["arch"] == "llama":
        w.add_vocab_size(cfg["n_vocab"])
    w.add_block_count(cfg["n_layers"])
    w.add_context_length(family["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_rope_freq_base(family["rope_base"])
    w.add_layer_norm_rms_eps(family["eps"])
    if cfg["arch"] in ("qwen3", "qwen3moe"):
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if family.get("moe"):
        w.add_expert_count(cfg["n_experts"])
        w.add_expert_used_count(cfg["n_experts_used"])
        w.add_expert_feed_forward_length(cfg["n_ff_exp"])
    else:
        w.add_rope_dimension_count(cfg["head_dim"])
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(family["pre"])
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index(family["eos"]))
    if family["pad"]:
        w.add_pad_token_id(tokens.index(family["pad"]))
    w.add_bos_token_id(tokens.index(family["bos"]))
    w.add_add_bos_token(family["add_bos"])
    w.add_chat_template(family["template"])
    for name, data in weights:
        qtype = types.get(name)
        if data.ndim == 1 or qtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_weights(cfg):
    rng = np.random.RandomState(cfg["seed"])
    vocab = make_vocab(cfg, rng)
    plan = tensor_plan(cfg)
    weights = [(name, llama3_rope_freqs(cfg) if name == "rope_freqs.weight" else random_weight(rng, name, shape))
               for name, shape in plan]
    return vocab, plan, weights


def make_tiny(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for arch, cfg in TINY.items():
        vocab, plan, weights = make_weights(cfg)
        matrices = [name for name, shape in plan if len(shape) >= 2 and not name.endswith("ffn_gate_inp.weight")]
        variants = [
            ("f16", LlamaFileType.MOSTLY_F16, {}),
            ("q8_0", LlamaFileType.MOSTLY_Q8_0, {name: QT.Q8_0 for name in matrices}),
            ("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, q4_k_m_types(cfg, plan)),
        ]
        for suffix, file_type, types in variants:
            # Written under a temporary name: a test never sees half a model.
            path = outdir / f"{arch}-tiny-{suffix}.gguf"
            partial = path.with_suffix(".gguf.partial")
            write_model(partial, cfg, vocab, weights, file_type, types)
            os.replace(partial, path)
            print(f"wrote {path}")


def tiny_ids(arch):
    cfg = TINY[arch]
    return np.random.RandomState(FIXTURE_IDS_SEED).randint(0, cfg["n_normal"], 512)


def oracle_quantize_tool():
    cache = Path(os.environ.get("HEARTH_ORACLE_DIR",
                                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "oracle"))
    tool = cache / "build" / "bin" / "llama-quantize"
    if not tool.exists():
        subprocess.run([str(ROOT / "scripts" / "oracle" / "build-llama-cpp.sh")], check=True,
                       stdout=subprocess.DEVNULL)
    return tool


def make_bench(out, cfg=BENCH):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tool = oracle_quantize_tool()
    vocab, _, weights = make_weights(cfg)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        f16 = Path(work) / "f16.gguf"
        write_model(f16, cfg, vocab, weights, LlamaFileType.MOSTLY_F16, {})
        del weights
        partial = Path(work) / out.name
        run = subprocess.run([str(tool), str(f16), str(partial), "Q4_K_M", str(min(os.cpu_count() or 1, 4))],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout + run.stderr)
            sys.exit(f"make_dense_model.py: {tool} failed")
        shutil.move(partial, out)
    print(f"wrote {out}")


def weights_crc32(path):
    crc = 0
    for t in gguf.GGUFReader(str(path)).tensors:
        crc = zlib.crc32(np.ascontiguousarray(t.data).view(np.uint8).tobytes(), crc)
    return crc


def main(argv):
    models = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "models"
    if len(argv) == 3 and argv[1] == "tiny":
        make_tiny(argv[2])
    elif len(argv) == 3 and argv[1] == "tiny-ids" and argv[2] in TINY:
        print(" ".join(map(str, tiny_ids(argv[2]))))
    elif len(argv) in (2, 3) and argv[1] == "bench":
        make_bench(argv[2] if len(argv) == 3 else models / "qwen3-0.6b-shape-q4_k_m.gguf")
    elif len(argv) in (2, 3) and argv[1] == "bench-moe":
        make_bench(argv[2] if len(argv) == 3 else models / "qwen3-30b-a3b-6l-shape-q4_k_m.gguf", BENCH_MOE)
    elif len(argv) == 3 and argv[1] == "weights-crc32":
        print(f"{weights_crc32(argv[2]):08x}")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
