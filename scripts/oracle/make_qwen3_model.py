#!/usr/bin/env python3
"""Random-weight Qwen 3 models, in the layout llama.cpp's convert_hf_to_gguf.py
gives a real Qwen 3 checkpoint: the same tensor names, shapes, types and order,
the same metadata keys, and a byte-level BPE ("gpt2") vocabulary of the same
structure (256 byte characters, merged tokens, Qwen's 26 added tokens, [PAD]
fillers). Only the weights and the token strings are made up.

  make_qwen3_model.py tiny OUTDIR
      qwen3-tiny-{f16,q8_0,q4_k_m}.gguf, for tests/test_qwen3.c and its
      fixtures (scripts/oracle/make_qwen3_fixtures.sh): embedding 256, 4 layers,
      4 heads and 2 KV heads of 64, feed-forward 512, vocabulary 2048. A few
      seconds; needs numpy and gguf only.
  make_qwen3_model.py bench [OUT.gguf]
      Qwen3-0.6B's shapes (embedding 1024, 28 layers, 16 heads and 8 KV heads
      of 128, feed-forward 3072, vocabulary 151936, tied embeddings), written
      as F16 and quantized to Q4_K_M by the oracle's llama-quantize
      (scripts/oracle/build-llama-cpp.sh). Default OUT:
      ~/.cache/hearth/models/qwen3-0.6b-shape-q4_k_m.gguf. About a minute.
  make_qwen3_model.py weights-crc32 FILE.gguf
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
    sys.stderr.write(f"make_qwen3_model.py: {e}: pip install gguf (scripts/setup.sh installs it)\n")
    sys.exit(77)

ROOT = Path(__file__).resolve().parents[2]
SEED = 20260301

# Qwen 3's added tokens, ids n_normal.. in this order: the <|...|> ones are
# control tokens, the tool and think tags user-defined (as the converter types
# them from tokenizer_config.json).
ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TINY = dict(name="Qwen3 tiny (random weights)", size_label="tiny", n_embd=256, n_layers=4, n_heads=4,
            n_kv_heads=2, head_dim=64, n_ff=512, n_vocab=2048, n_normal=2000, n_ctx=40960)
BENCH = dict(name="Qwen3 0.6B shape (random weights)", size_label="0.6B", n_embd=1024, n_layers=28, n_heads=16,
             n_kv_heads=8, head_dim=128, n_ff=3072, n_vocab=151936, n_normal=151643, n_ctx=40960)


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
    for text in ADDED_TOKENS:
        tokens.append(text)
        types.append(gguf.TokenType.CONTROL if text.startswith("<|") else gguf.TokenType.USER_DEFINED)
    while len(tokens) < cfg["n_vocab"]:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(gguf.TokenType.UNUSED)
    assert len(tokens) == cfg["n_vocab"]
    return tokens, types, merges


# ---- weights ---------------------------------------------------------------------

def layer_tensors(il):
    """One layer's tensors in the converter's order (Hugging Face names sorted:
    input_layernorm, mlp.*, post_attention_layernorm, self_attn.*)."""
    return [f"blk.{il}.{n}" for n in ("attn_norm", "ffn_down", "ffn_gate", "ffn_up", "ffn_norm", "attn_k_norm",
                                       "attn_k", "attn_output", "attn_q_norm", "attn_q", "attn_v")]


def tensor_plan(cfg):
    """(name, numpy shape) in file order. The safetensors keys come sorted,
    so layer 10 precedes layer 2, and the output norm comes last."""
    e, hd, ff = cfg["n_embd"], cfg["head_dim"], cfg["n_ff"]
    q_dim, kv_dim = cfg["n_heads"] * hd, cfg["n_kv_heads"] * hd
    shapes = {"attn_norm": (e,), "ffn_norm": (e,), "attn_q_norm": (hd,), "attn_k_norm": (hd,),
              "attn_q": (q_dim, e), "attn_k": (kv_dim, e), "attn_v": (kv_dim, e), "attn_output": (e, q_dim),
              "ffn_gate": (ff, e), "ffn_up": (ff, e), "ffn_down": (e, ff)}
    plan = [("token_embd.weight", (cfg["n_vocab"], e))]
    for il in sorted(range(cfg["n_layers"]), key=str):
        plan += [(f"{name}.weight", shapes[name.split(".")[-1]]) for name in layer_tensors(il)]
    plan.append(("output_norm.weight", (e,)))
    return plan


def random_weight(rng, name, shape):
    """Matrices N(0, 0.02) and norm weights N(1, 0.1), the scales of a trained
    model; norms f32, matrices f16, as the converter writes them.

    The embedding (also the output matrix) gets rows of log-normal length
    (sigma 1), as token frequency gives real embeddings. With rows of equal
    length the next-token distribution is flat: the top two logits lie within
    0.3 % of the logit scale of each other at a few positions in a hundred,
    which is where int8 activations put two engines' disagreement (see
    tests/test_qwen3.c), and top-1 agreement would measure that noise rather
    than the forward pass. Unequal rows give peaked distributions, like a
    trained model's."""
    if len(shape) == 1:
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    w = 0.02 * rng.standard_normal(shape)
    if name == "token_embd.weight":
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
    """Raw blocks of an f16 matrix as bytes, shape (rows, row bytes)."""
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
    """llama-quantize's Q4_K_M choices for this architecture: Q6_K for the
    tied embedding (it is also the output) and for attn_v and ffn_down in the
    layers use_more_bits picks, counted in file order; Q4_K elsewhere."""
    types, n_v, n_down = {}, 0, 0
    for name, shape in plan:
        if len(shape) == 1:
            continue
        kind = name.split(".")[-2]
        if name == "token_embd.weight":
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
    n_normal = cfg["n_normal"]
    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(cfg["name"])
    w.add_basename("Qwen3")
    w.add_size_label(cfg["size_label"])
    w.add_block_count(cfg["n_layers"])
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_eos_token_id(n_normal + ADDED_TOKENS.index("<|im_end|>"))
    w.add_pad_token_id(n_normal + ADDED_TOKENS.index("<|endoftext|>"))
    w.add_bos_token_id(n_normal + ADDED_TOKENS.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
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


def make_weights(cfg, seed):
    rng = np.random.RandomState(seed)
    vocab = make_vocab(cfg, rng)
    plan = tensor_plan(cfg)
    weights = [(name, random_weight(rng, name, shape)) for name, shape in plan]
    return vocab, plan, weights


def make_tiny(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vocab, plan, weights = make_weights(TINY, SEED)
    matrices = [name for name, shape in plan if len(shape) == 2]
    variants = [
        ("f16", LlamaFileType.MOSTLY_F16, {}),
        ("q8_0", LlamaFileType.MOSTLY_Q8_0, {name: QT.Q8_0 for name in matrices}),
        ("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, q4_k_m_types(TINY, plan)),
    ]
    for suffix, file_type, types in variants:
        # Written under a temporary name: a test never sees half a model.
        path = outdir / f"qwen3-tiny-{suffix}.gguf"
        partial = path.with_suffix(".gguf.partial")
        write_model(partial, TINY, vocab, weights, file_type, types)
        os.replace(partial, path)
        print(f"wrote {path}")


def oracle_quantize_tool():
    cache = Path(os.environ.get("HEARTH_ORACLE_DIR",
                                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "oracle"))
    tool = cache / "build" / "bin" / "llama-quantize"
    if not tool.exists():
        subprocess.run([str(ROOT / "scripts" / "oracle" / "build-llama-cpp.sh")], check=True,
                       stdout=subprocess.DEVNULL)
    return tool


def make_bench(out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tool = oracle_quantize_tool()
    vocab, _, weights = make_weights(BENCH, SEED + 1)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        f16 = Path(work) / "qwen3-0.6b-shape-f16.gguf"
        write_model(f16, BENCH, vocab, weights, LlamaFileType.MOSTLY_F16, {})
        del weights
        partial = Path(work) / out.name
        run = subprocess.run([str(tool), str(f16), str(partial), "Q4_K_M", str(min(os.cpu_count() or 1, 4))],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout + run.stderr)
            sys.exit(f"make_qwen3_model.py: {tool} failed")
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
    elif len(argv) in (2, 3) and argv[1] == "bench":
        make_bench(argv[2] if len(argv) == 3 else models / "qwen3-0.6b-shape-q4_k_m.gguf")
    elif len(argv) == 3 and argv[1] == "weights-crc32":
        print(f"{weights_crc32(argv[2]):08x}")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
