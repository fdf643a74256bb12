#!/usr/bin/env python3
"""Random-weight Gemma 4 models in the layout llama.cpp's converter
(conversion/gemma.py, Gemma4Model) gives a real checkpoint: the same tensor
names, shapes and types, the same metadata keys (per-layer arrays included).
Only the weights, the sizes and the vocabulary are made up.

  make_gemma4_model.py tiny OUTDIR
      gemma4-e2b-tiny-{f16,q8_0,q4_k_m}.gguf and gemma4-a4b-tiny-{...}.gguf
      for tests/test_gemma4.c and its fixtures
      (scripts/oracle/make_gemma4_fixtures.sh). Both have an embedding of
      256 and a vocabulary of 2048, and switch on every part of the
      architecture their real counterpart has:
        e2b  (Gemma 4 E2B's layout) 6 layers, sliding / sliding / full x 2,
             sliding layers 4 heads of 64 over 2 KV heads, full layers 4
             heads of 128 over 1 KV head, proportional RoPE (rope_freqs: a
             quarter of the full layers' pairs rotate), per-layer input
             embeddings of 128 per layer with their gate and projection, the
             last 3 layers sharing the KV cache of layers 1 and 2, the
             shared layers' feed-forward twice as wide (use_double_wide_mlp),
             layer output scales, final logit soft-capping at 30
        a4b  (Gemma 4 26B-A4B's layout) 4 layers, sliding / full x 2, the
             full layers without attn_v (K is V, attention_k_eq_v), every
             layer a shared GeGLU MLP plus 8 routed experts of which 3 are
             used, merged gate_up expert tensors, the router's input scale and
             per-expert output scales, no per-layer inputs, no shared KV
      A sliding window of 48, so that the window matters within the
      fixtures' 512 positions. A few seconds; needs numpy and gguf only.
  make_gemma4_model.py tiny-ids VARIANT
      The 512 token ids the fixtures feed VARIANT's (e2b, a4b) models.
  make_gemma4_model.py weights-crc32 FILE.gguf
      As make_dense_model.py's.

The vocabulary. A real Gemma 4 GGUF says tokenizer.ggml.model = "gemma4": a
BPE over raw UTF-8 with SentencePiece's U+2581 for spaces and a merge list
(hearth reads it: tests/test_tokenizer_gemma4.c). These models carry a
SentencePiece ("llama") vocabulary of Gemma's shape instead (<pad> <eos>
<bos> <unk>, byte pieces, scored pieces, the turn tokens), which both engines
load: the tests feed token ids, so the tokenizer never runs, and the fixtures
stay as they are. Everything else follows the converter.

Deterministic as make_dense_model.py's models are (same generators, same
quantizers), and the fixtures record a CRC-32 of the weights.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dense_model import QT, LlamaFileType, gguf, np, quantize, use_more_bits, weights_crc32  # noqa: E402

SEED = 20260401
FIXTURE_IDS_SEED = 20260402

TINY = {
    "e2b": dict(name="Gemma 4 E2B tiny (random weights)", basename="gemma-4", size_label="E2B-tiny", seed=SEED,
                n_embd=256, n_layers=6, swa=[True, True, False, True, True, False], n_heads=4,
                head_dim_swa=64, head_dim_full=128, n_kv_swa=2, n_kv_full=1, n_ff=512, double_wide=True,
                n_shared_kv=3, n_pl=128, k_eq_v=False, moe=None, n_vocab=2048, n_ctx=131072),
    "a4b": dict(name="Gemma 4 26B-A4B tiny (random weights)", basename="gemma-4", size_label="26B-A4B-tiny",
                seed=SEED + 10, n_embd=256, n_layers=4, swa=[True, False, True, False], n_heads=4,
                head_dim_swa=64, head_dim_full=128, n_kv_swa=2, n_kv_full=1, n_ff=256, double_wide=False,
                n_shared_kv=0, n_pl=0, k_eq_v=True, moe=dict(n_expert=8, n_used=3, n_ff_exp=256),
                n_vocab=2048, n_ctx=262144),
}
WINDOW = 48
ROPE_BASE, ROPE_BASE_SWA, PARTIAL_ROTARY_FULL = 1000000.0, 10000.0, 0.25
SOFTCAP, EPS = 30.0, 1e-6
# The router's weights are N(0, 0.02 * ROUTER_GAIN): its input (an RMS-normed
# row / sqrt(n_embd)) then gives logits of standard deviation ~3, a softmax
# whose top 3 of 8 carry distinct weights. Flatter (gain 50, std 1), a swap
# of the 3rd and 4th expert at a near-tie moves that token by a third of an
# expert's output; steeper (300), the 2nd and 3rd experts barely count.
ROUTER_GAIN = 150
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
ADDED = ["<mask>", "<|turn>", "<turn|>", "<|think|>", "<|image|>", "<|audio|>"]


def n_ff_of(cfg, il):
    first_shared = cfg["n_layers"] - cfg["n_shared_kv"]
    return cfg["n_ff"] * (2 if cfg["double_wide"] and il >= first_shared else 1)


# ---- vocabulary -----------------------------------------------------------------

def make_vocab(cfg, rng):
    """Gemma's SentencePiece shape: the four specials, 256 byte pieces, scored
    pieces (U+2581 for a leading space), then the added control tokens."""
    tokens = list(SPECIALS)
    types = [gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    seen = set(tokens)
    letters = "abcdefghijklmnopqrstuvwxyz"
    n_normal = cfg["n_vocab"] - len(ADDED)
    while len(tokens) < n_normal:
        n = 1 + int(rng.randint(0, 6))
        piece = ("\u2581" if rng.randint(0, 2) else "") + "".join(letters[int(i)] for i in rng.randint(0, 26, n))
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * len(tokens)
    for i in range(len(SPECIALS) + 256, len(tokens)):
        scores[i] = -float(i)
    for t in ADDED:
        tokens.append(t)
        types.append(gguf.TokenType.CONTROL)
        scores.append(0.0)
    return tokens, scores, types


# ---- weights ---------------------------------------------------------------------

def layer_plan(cfg, il):
    """(name, numpy shape) of one layer, in the Hugging Face names' sorted
    order as the converter meets them."""
    e, nh = cfg["n_embd"], cfg["n_heads"]
    swa = cfg["swa"][il]
    hd = cfg["head_dim_swa"] if swa else cfg["head_dim_full"]
    n_kv = cfg["n_kv_swa"] if swa else cfg["n_kv_full"]
    ff = n_ff_of(cfg, il)
    has_v = swa or not cfg["k_eq_v"]
    p = f"blk.{il}."
    plan = []
    moe = cfg["moe"]
    if moe:  # experts.down_proj, experts.gate_up_proj
        plan += [(p + "ffn_down_exps.weight", (moe["n_expert"], e, moe["n_ff_exp"])),
                 (p + "ffn_gate_up_exps.weight", (moe["n_expert"], 2 * moe["n_ff_exp"], e))]
    plan.append((p + "attn_norm.weight", (e,)))
    plan.append((p + "layer_output_scale.weight", (1,)))
    plan += [(p + "ffn_down.weight", (e, ff)), (p + "ffn_gate.weight", (ff, e)), (p + "ffn_up.weight", (ff, e))]
    if cfg["n_pl"]:
        plan += [(p + "inp_gate.weight", (cfg["n_pl"], e)), (p + "proj.weight", (e, cfg["n_pl"]))]
    plan.append((p + "post_attention_norm.weight", (e,)))
    plan.append((p + "post_ffw_norm.weight", (e,)))
    if moe:
        plan += [(p + "post_ffw_norm_1.weight", (e,)), (p + "post_ffw_norm_2.weight", (e,))]
    if cfg["n_pl"]:
        plan.append((p + "post_norm.weight", (e,)))
    plan.append((p + "ffn_norm.weight", (e,)))
    if moe:  # pre_feedforward_layernorm_2, router.per_expert_scale, router.proj, router.scale
        plan += [(p + "pre_ffw_norm_2.weight", (e,)), (p + "ffn_down_exps.scale", (moe["n_expert"],)),
                 (p + "ffn_gate_inp.weight", (moe["n_expert"], e)), (p + "ffn_gate_inp.scale", (e,))]
    plan += [(p + "attn_k_norm.weight", (hd,)), (p + "attn_k.weight", (n_kv * hd, e)),
             (p + "attn_output.weight", (e, nh * hd)), (p + "attn_q_norm.weight", (hd,)),
             (p + "attn_q.weight", (nh * hd, e))]
    if has_v:
        plan.append((p + "attn_v.weight", (n_kv * hd, e)))
    return plan


def tensor_plan(cfg):
    e, v = cfg["n_embd"], cfg["n_vocab"]
    plan = [("rope_freqs.weight", (cfg["head_dim_full"] // 2,)), ("token_embd.weight", (v, e))]
    if cfg["n_pl"]:
        plan.append(("per_layer_token_embd.weight", (v, cfg["n_pl"] * cfg["n_layers"])))
    for il in sorted(range(cfg["n_layers"]), key=str):
        plan += layer_plan(cfg, il)
    plan.append(("output_norm.weight", (e,)))
    if cfg["n_pl"]:
        plan += [("per_layer_model_proj.weight", (cfg["n_pl"] * cfg["n_layers"], e)),
                 ("per_layer_proj_norm.weight", (cfg["n_pl"],))]
    return plan


def proportional_rope_freqs(cfg):
    """The converter's rope_freqs for the full layers' "proportional" RoPE:
    1 for the pairs that rotate, 1e30 (an angle of ~0) for the rest."""
    half = cfg["head_dim_full"] // 2
    n_rot = int(cfg["head_dim_full"] * PARTIAL_ROTARY_FULL / 2)
    return np.array([1.0] * n_rot + [1e30] * (half - n_rot), dtype=np.float32)


def random_weight(rng, name, shape):
    """As make_dense_model.py's: matrices N(0, 0.02) in f16, the embedding's
    rows of log-normal length, norm weights N(1, 0.1) in f32. Also: the
    router in f32 (the converter keeps ffn_gate_inp in f32), the per-layer
    token embedding's rows log-normal too, the layer output scales and
    per-expert scales around 1, the router's input scale around 1, and the
    q and k norms scaled by head size^-1/4 (below)."""
    if len(shape) == 1:
        w = 1.0 + 0.1 * rng.standard_normal(shape)
        if name.endswith(("attn_q_norm.weight", "attn_k_norm.weight")):
            # Gemma 4 scales attention scores by 1: the trained q and k norm
            # weights carry the 1/sqrt(head size). With weights of 1 every
            # head's attention is nearly one-hot on random weights, and the
            # comparison measures that chaos (measured: 6 layers in F16 drift
            # to a mean |dlogit| of 0.03, 10x F16's noise).
            w *= shape[0] ** -0.25
        return w.astype(np.float32)
    w = 0.02 * rng.standard_normal(shape)
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        w *= np.exp(rng.standard_normal((shape[0], 1)))
    if name.endswith("ffn_gate_inp.weight"):
        return (ROUTER_GAIN * w).astype(np.float32)
    return w.astype(np.float16)


def make_weights(cfg):
    rng = np.random.RandomState(cfg["seed"])
    vocab = make_vocab(cfg, rng)
    plan = tensor_plan(cfg)
    weights = [(name, proportional_rope_freqs(cfg) if name == "rope_freqs.weight" else random_weight(rng, name, shape))
               for name, shape in plan]
    return vocab, plan, weights


# ---- quantized variants -----------------------------------------------------------

def q8_0_types(plan):
    return {name: QT.Q8_0 for name, shape in plan
            if len(shape) >= 2 and not name.endswith("ffn_gate_inp.weight")}


def q4_k_m_types(cfg, plan):
    """llama-quantize's Q4_K_M choices as far as they apply: Q6_K for the
    tied output (the embedding) and for attn_v / ffn_down(_exps) in the
    layers use_more_bits picks; Q4_K elsewhere; Q8_0 for the matrices whose
    rows do not divide into Q4_K's blocks of 256 (llama-quantize falls back
    there too, to another type); the router stays f32."""
    types, n_v, n_down = {}, 0, 0
    n_layers = cfg["n_layers"]
    for name, shape in plan:
        if len(shape) < 2 or name.endswith("ffn_gate_inp.weight"):
            continue
        kind = name.split(".")[-2]
        if shape[-1] % 256 != 0:
            types[name] = QT.Q8_0
        elif name == "token_embd.weight":
            types[name] = QT.Q6_K
        elif kind == "attn_v":
            types[name] = QT.Q6_K if use_more_bits(n_v, n_layers) else QT.Q4_K
            n_v += 1
        elif kind in ("ffn_down", "ffn_down_exps"):
            il = int(name.split(".")[1])
            types[name] = QT.Q6_K if use_more_bits(il, n_layers) else QT.Q4_K
        else:
            types[name] = QT.Q4_K
    return types


def encode(data, qtype):
    """data quantized to qtype; 3-D expert tensors expert by expert's rows."""
    if data.ndim == 3:
        n, rows, cols = data.shape
        return quantize(data.reshape(n * rows, cols), qtype).reshape(n, rows, -1)
    return quantize(data, qtype)


# ---- writing ----------------------------------------------------------------------

def write_model(path, cfg, vocab, weights, file_type, types):
    tokens, scores, token_types = vocab
    arch = "gemma4"
    nl = cfg["n_layers"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(cfg["name"])
    w.add_basename(cfg["basename"])
    w.add_size_label(cfg["size_label"])
    w.add_block_count(nl)
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    if cfg["double_wide"]:
        w.add_feed_forward_length([n_ff_of(cfg, il) for il in range(nl)])
    else:
        w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv([cfg["n_kv_swa"] if s else cfg["n_kv_full"] for s in cfg["swa"]])
    w.add_rope_freq_base(ROPE_BASE)
    w.add_rope_freq_base_swa(ROPE_BASE_SWA)
    w.add_layer_norm_rms_eps(EPS)
    if cfg["moe"]:
        w.add_expert_count(cfg["moe"]["n_expert"])
        w.add_expert_used_count(cfg["moe"]["n_used"])
    w.add_file_type(file_type)
    w.add_key_length(cfg["head_dim_full"])
    w.add_value_length(cfg["head_dim_full"])
    w.add_final_logit_softcapping(SOFTCAP)
    w.add_sliding_window(WINDOW)
    w.add_shared_kv_layers(cfg["n_shared_kv"])
    w.add_embedding_length_per_layer_input(cfg["n_pl"])
    w.add_sliding_window_pattern(cfg["swa"])
    w.add_key_length_swa(cfg["head_dim_swa"])
    w.add_value_length_swa(cfg["head_dim_swa"])
    if cfg["moe"]:
        w.add_expert_feed_forward_length(cfg["moe"]["n_ff_exp"])
    w.add_rope_dimension_count(cfg["head_dim_full"])
    w.add_rope_dimension_count_swa(cfg["head_dim_swa"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(token_types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_space_prefix(False)
    w.add_add_bos_token(True)
    for name, data in weights:
        qtype = types.get(name)
        if qtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, encode(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_tiny(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for variant, cfg in TINY.items():
        vocab, plan, weights = make_weights(cfg)
        files = [
            ("f16", LlamaFileType.MOSTLY_F16, {}),
            ("q8_0", LlamaFileType.MOSTLY_Q8_0, q8_0_types(plan)),
            ("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, q4_k_m_types(cfg, plan)),
        ]
        for suffix, file_type, types in files:
            path = outdir / f"gemma4-{variant}-tiny-{suffix}.gguf"
            partial = path.with_suffix(".gguf.partial")
            write_model(partial, cfg, vocab, weights, file_type, types)
            os.replace(partial, path)
            print(f"wrote {path}")


def tiny_ids(variant):
    cfg = TINY[variant]
    # Bytes and scored pieces: none of the specials or added control tokens.
    return np.random.RandomState(FIXTURE_IDS_SEED).randint(len(SPECIALS), cfg["n_vocab"] - len(ADDED), 512)


def main(argv):
    if len(argv) == 3 and argv[1] == "tiny":
        make_tiny(argv[2])
    elif len(argv) == 3 and argv[1] == "tiny-ids" and argv[2] in TINY:
        print(" ".join(map(str, tiny_ids(argv[2]))))
    elif len(argv) == 3 and argv[1] == "weights-crc32":
        print(f"{weights_crc32(argv[2]):08x}")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
