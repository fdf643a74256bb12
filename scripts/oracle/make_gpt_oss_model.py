#!/usr/bin/env python3
"""Random-weight gpt-oss models (llama.cpp's LLM_ARCH_OPENAI_MOE, GGUF
architecture "gpt-oss"), in the layout llama.cpp's converter
(conversion/gpt_oss.py) gives openai/gpt-oss-20b: the same tensor names,
shapes, types and order, the same metadata keys (YaRN scaling, sliding
window, expert counts), and a byte-level BPE vocabulary of the same
structure (byte characters, merged tokens, the harmony format's special
tokens, reserved fillers). Only the weights, the sizes and the token strings
are made up.

  make_gpt_oss_model.py tiny OUTDIR
      gpt-oss-tiny-{mxfp4,q8_0}.gguf for tests/test_gpt_oss.c and its fixtures
      (scripts/oracle/make_gpt_oss_fixtures.sh). Embedding 256, 4 layers
      (sliding-window layers 0 and 2 with gpt-oss-20b's window of 128, full
      layers 1 and 3), 8 query heads and 2 KV heads of 64, 8 experts of 256
      with 4 used per token, vocabulary 2048; attention sinks, q/k/v/o biases,
      router and expert biases, YaRN (factor 32 over 4096 positions, base
      150000) as gpt-oss-20b has them.
        mxfp4  as published: experts MXFP4 (the checkpoint's own format,
               repacked as the converter does), other matrices F16, the
               router, norms, biases and sinks F32
        q8_0   every matrix but the router Q8_0, experts included (what
               llama-quantize keeps F32 stays F32)
      A few seconds; needs numpy and gguf only.
  make_gpt_oss_model.py tiny-ids
      The 512 token ids the fixtures feed the tiny models: random ids of its
      byte and merged tokens.
  make_gpt_oss_model.py weights-crc32 FILE.gguf
      CRC-32 of all tensor data in file order (as make_dense_model.py).

The pre-tokenizer is "gpt-4o" (o200k) as in the real files, though the
fixtures feed token ids, so no test here depends on it (test_tokenizer_pre
checks that pre-tokenizer); the tensors and hyper-parameters are exactly
gpt-oss's. The chat template (harmony) is left out for the same reason.

Deterministic as make_dense_model.py explains (numpy's legacy RandomState;
the fixtures record a CRC-32 of the weights).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_dense_model as dense  # noqa: E402  (exits 77 itself without numpy / gguf)

np, gguf, QT = dense.np, dense.gguf, dense.QT
from gguf.constants import LlamaFileType  # noqa: E402

ARCH = "gpt-oss"
SEED = 20260311
FIXTURE_IDS_SEED = 20260312

TINY = dict(name="gpt-oss tiny (random weights)", basename="gpt-oss", size_label="tiny", n_embd=256, n_layers=4,
            n_heads=8, n_kv_heads=2, head_dim=64, n_experts=8, n_experts_used=4, n_ff_exp=256, n_vocab=2048,
            n_normal=1900, n_ctx=131072, sliding_window=128, rope_base=150000.0, eps=1e-5,
            yarn=dict(factor=32.0, original_ctx=4096, beta_fast=32.0, beta_slow=1.0))

# The harmony format's special tokens after o200k's normal ones (ids 199998..
# in the real vocabulary), all control tokens; reserved ones fill the rest.
HARMONY_TOKENS = ["<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
                  "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
                  "<|reserved_200009|>", "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>"]


def make_vocab(cfg, rng):
    """Byte characters, merged tokens up to n_normal, the harmony tokens,
    then reserved control tokens up to n_vocab."""
    tokens = dense.gpt2_byte_chars()
    seen = set(tokens)
    merges = []
    while len(tokens) < cfg["n_normal"]:
        a = tokens[int(rng.randint(0, len(tokens))) // (1 + int(rng.randint(0, 4)))]
        b = tokens[int(rng.randint(0, 256))]
        if a + b in seen:
            continue
        seen.add(a + b)
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for text in HARMONY_TOKENS:
        tokens.append(text)
        types.append(gguf.TokenType.CONTROL)
    while len(tokens) < cfg["n_vocab"]:
        tokens.append(f"<|reserved_{len(tokens) - cfg['n_normal'] + 199998}|>")
        types.append(gguf.TokenType.CONTROL)
    return tokens, types, merges


def tensor_plan(cfg):
    """(name, numpy shape) in the converter's order: first the experts it
    repacks from the checkpoint's MXFP4 blocks (generate_extra_tensors: per
    layer down, then gate and up, split from the interleaved gate_up), then
    the other safetensors keys sorted (lm_head, embed_tokens, each layer's
    input_layernorm, mlp.experts.*_bias, mlp.router.*, post_attention_layernorm,
    self_attn.*, and model.norm last)."""
    e, hd, ne, ff = cfg["n_embd"], cfg["head_dim"], cfg["n_experts"], cfg["n_ff_exp"]
    q_dim, kv_dim = cfg["n_heads"] * hd, cfg["n_kv_heads"] * hd
    layers = sorted(range(cfg["n_layers"]), key=str)
    plan = []
    for il in layers:
        plan += [(f"blk.{il}.ffn_down_exps.weight", (ne, e, ff)), (f"blk.{il}.ffn_gate_exps.weight", (ne, ff, e)),
                 (f"blk.{il}.ffn_up_exps.weight", (ne, ff, e))]
    plan += [("output.weight", (cfg["n_vocab"], e)), ("token_embd.weight", (cfg["n_vocab"], e))]
    for il in layers:
        b = f"blk.{il}."
        plan += [(b + "attn_norm.weight", (e,)), (b + "ffn_down_exps.bias", (ne, e)),
                 (b + "ffn_gate_exps.bias", (ne, ff)), (b + "ffn_up_exps.bias", (ne, ff)),
                 (b + "ffn_gate_inp.bias", (ne,)), (b + "ffn_gate_inp.weight", (ne, e)),
                 (b + "post_attention_norm.weight", (e,)),
                 (b + "attn_k.bias", (kv_dim,)), (b + "attn_k.weight", (kv_dim, e)),
                 (b + "attn_output.bias", (e,)), (b + "attn_output.weight", (e, q_dim)),
                 (b + "attn_q.bias", (q_dim,)), (b + "attn_q.weight", (q_dim, e)),
                 (b + "attn_sinks.weight", (cfg["n_heads"],)),
                 (b + "attn_v.bias", (kv_dim,)), (b + "attn_v.weight", (kv_dim, e))]
    plan.append(("output_norm.weight", (e,)))
    return plan


def random_weight(rng, name, shape):
    """Scales chosen so that every feature matters and the comparison
    measures the forward pass rather than luck:
    - matrices N(0, 0.02) (f16), the embedding and output rows of
      log-normal length (make_dense_model.py explains why);
    - experts: gate and up N(0, 0.15) with biases N(0, 1.5), so their
      pre-activations (std ~3, mostly the token's) meet SwiGLU-OAI's clamps
      at +-7 about once in a hundred; down N(0, 0.004) with biases
      N(0, 0.05), so that a layer's mixture adds to the residual stream
      about as much as its attention does, as in a trained model (with
      larger outputs the mixture is all the stream carries, and every near
      tie of a router, where two engines may choose different experts,
      moves the logits by whole units);
    - the router N(0, 0.2) (f32, as the converter keeps it) with biases
      N(0, 0.5): the top 4 of 8 usually chosen by a clear margin;
    - the value and output biases N(0, 0.05): larger ones would add the
      same vector to every token's residual stream;
    - attention sinks N(1, 1.5), around the scores' range, so the sink
      sometimes dominates a head's softmax and sometimes is negligible;
    - q and k biases N(0, 0.5), norms N(1, 0.1)."""
    def normal(std, dtype=np.float32, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(dtype)
    if name.endswith("attn_sinks.weight"):
        return normal(1.5, mean=1.0)
    if name.endswith(("ffn_gate_exps.bias", "ffn_up_exps.bias")):
        return normal(2.5)
    if name.endswith(("ffn_down_exps.bias", "attn_v.bias", "attn_output.bias")):
        return normal(0.05)
    if name.endswith(".bias"):
        return normal(0.5)
    if len(shape) == 1:
        return normal(0.1, mean=1.0)
    if name.endswith("ffn_gate_inp.weight"):
        return normal(0.2)
    if name.endswith(("ffn_gate_exps.weight", "ffn_up_exps.weight")):
        return normal(0.05, np.float16)
    if name.endswith("ffn_down_exps.weight"):
        return normal(0.01, np.float16)
    w = 0.02 * rng.standard_normal(shape)
    if name in ("token_embd.weight", "output.weight"):
        w *= np.exp(rng.standard_normal((shape[0], 1)))
    return w.astype(np.float16)


def quantize(w, qtype):
    """Raw blocks of an f16 matrix (2-D or a 3-D expert stack), checked
    against gguf's own dequantizer."""
    w32 = w.astype(np.float32)
    blocks = gguf.quants.quantize(w32, qtype)
    back = gguf.quants.dequantize(blocks, qtype).reshape(w32.shape)
    limit = 0.26 if qtype == QT.MXFP4 else 0.01  # E2M1 has 1 bit of mantissa
    assert np.abs(back - w32).max() <= limit * np.abs(w32).max(), f"{qtype.name} accuracy"
    return blocks


def write_model(path, cfg, vocab, weights, file_type, types):
    tokens, token_types, merges = vocab
    y = cfg["yarn"]
    w = gguf.GGUFWriter(str(path), ARCH)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(cfg["name"])
    w.add_basename(cfg["basename"])
    w.add_size_label(cfg["size_label"])
    w.add_block_count(cfg["n_layers"])
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(cfg["n_ff_exp"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(y["factor"])
    w.add_rope_scaling_orig_ctx_len(y["original_ctx"])
    w.add_rope_scaling_yarn_beta_fast(y["beta_fast"])
    w.add_rope_scaling_yarn_beta_slow(y["beta_slow"])
    w.add_rope_freq_base(cfg["rope_base"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_expert_count(cfg["n_experts"])
    w.add_expert_used_count(cfg["n_experts_used"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_file_type(file_type)
    w.add_sliding_window(cfg["sliding_window"])
    w.add_expert_feed_forward_length(cfg["n_ff_exp"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-4o")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|startoftext|>"))
    w.add_eos_token_id(tokens.index("<|return|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    for name, data in weights:
        qtype = types.get(name)
        if qtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_weights(cfg):
    rng = np.random.RandomState(SEED)
    vocab = make_vocab(cfg, rng)
    plan = tensor_plan(cfg)
    return vocab, plan, [(name, random_weight(rng, name, shape)) for name, shape in plan]


def make_tiny(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vocab, plan, weights = make_weights(TINY)
    experts = {name for name, _ in plan if name.endswith("_exps.weight")}
    matrices = {name for name, shape in plan if len(shape) >= 2 and name.endswith(".weight")
                and not name.endswith("ffn_gate_inp.weight")}
    variants = [
        ("mxfp4", LlamaFileType.MOSTLY_F16, {name: QT.MXFP4 for name in experts}),
        ("q8_0", LlamaFileType.MOSTLY_Q8_0, {name: QT.Q8_0 for name in matrices}),
    ]
    for suffix, file_type, types in variants:
        path = outdir / f"gpt-oss-tiny-{suffix}.gguf"
        partial = path.with_suffix(".gguf.partial")
        write_model(partial, TINY, vocab, weights, file_type, types)
        os.replace(partial, path)
        print(f"wrote {path}")


def tiny_ids():
    return np.random.RandomState(FIXTURE_IDS_SEED).randint(0, TINY["n_normal"], 512)


def main(argv):
    if len(argv) == 3 and argv[1] == "tiny":
        make_tiny(argv[2])
    elif len(argv) == 2 and argv[1] == "tiny-ids":
        print(" ".join(map(str, tiny_ids())))
    elif len(argv) == 3 and argv[1] == "weights-crc32":
        print(f"{dense.weights_crc32(argv[2]):08x}")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
