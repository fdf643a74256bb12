#!/usr/bin/env python3
"""Random-weight Qwen 3.5 / 3.6 models (llama.cpp's LLM_ARCH_QWEN35 and
LLM_ARCH_QWEN35MOE, GGUF architectures "qwen35" and "qwen35moe"): hybrid
decoders whose layers are Gated DeltaNet (linear attention with a recurrent
state) but for every fourth, which is gated full attention with partial,
interleaved multi-section RoPE (IMRoPE). The layout is the one llama.cpp's
converter (conversion/qwen.py, Qwen3_5TextModel and Qwen3_5MoeTextModel)
gives Qwen/Qwen3.5-0.8B and Qwen/Qwen3.6-35B-A3B: the same tensor names,
shapes, types and order, the same metadata keys, and a byte-level BPE
vocabulary of the same structure (byte characters, merged tokens, Qwen's
added tokens, [PAD] fillers). Only the weights, the sizes and the token
strings are made up.

  make_qwen35_model.py tiny OUTDIR
      qwen35-tiny-{f16,q8_0,q4_k_m}.gguf and qwen35moe-tiny-{...}.gguf for the
      tests and their fixtures (scripts/oracle/make_qwen35_fixtures.sh). Both
      have an embedding of 256, 4 layers (DeltaNet layers 0-2, attention
      layer 3), 4 query heads and 2 KV heads of 64 with 16 rotated dims
      (sections 3, 3, 2, 0), DeltaNet heads of 64 with a conv kernel of 4,
      and a vocabulary of 2048:
        qwen35     2 key heads, 2 value heads, feed-forward 512, tied output
                   (Qwen3.5-0.8B's layout)
        qwen35moe  2 key heads, 4 value heads (two per key head, as the real
                   16 and 32), 16 experts of 128 with 4 chosen, a shared
                   expert of 128 behind a sigmoid gate, untied output, and one
                   multi-token-prediction block (blk.4, nextn_predict_layers
                   1) as converters write Qwen3.6's (Qwen3.6-35B-A3B's layout)
      Variants:
        f16     matrices F16; norms, ssm_a, ssm_dt, the conv kernel, the
                router and the shared expert's gate F32 (as the converter)
        q8_0    every matrix the converter would quantize Q8_0
        q4_k_m  llama-quantize's Q4_K_M choices (q4_k_m_types below)
      A few seconds; needs numpy and gguf only.
  make_qwen35_model.py tiny-ids
      The 512 token ids the fixtures feed both tiny models: random ids of
      their byte and merged tokens, none of the added ones.
  make_qwen35_model.py bench-moe [OUT.gguf]
      Qwen3.6-35B-A3B's widths (embedding 2048, 16 query heads and 2 KV heads
      of 256 with 64 rotated dims, DeltaNet 16 key and 32 value heads of 128,
      256 experts of 512 with 8 chosen, a shared expert of 512, vocabulary
      248320, untied) with 8 of its 40 layers (attention layers 3 and 7), no
      MTP block, written as F16 and quantized to Q4_K_M by the oracle's
      llama-quantize (scripts/oracle/build-llama-cpp.sh). Default OUT:
      ~/.cache/hearth/models/qwen36-35b-a3b-8l-shape-q4_k_m.gguf. About 16 GB
      of temporary F16 next to OUT, written one tensor at a time, and several
      minutes.
  make_qwen35_model.py weights-crc32 FILE.gguf
      CRC-32 of all tensor data in file order (as make_dense_model.py).

Layout (ggml's ne order, the numpy shape reversed; E embedding, S the
DeltaNet head size ssm.state_size, Hk ssm.group_count key heads, Hv
ssm.time_step_rank value heads, inner = ssm.inner_size = Hv*S, conv =
2*Hk*S + Hv*S, K ssm.conv_kernel, D the attention head size):
  every layer     attn_norm {E}, post_attention_norm {E}
  DeltaNet layer  attn_qkv {E, conv} (q, k, v rows), attn_gate {E, inner} (z),
                  ssm_conv1d {K, conv} F32, ssm_dt.bias {Hv} F32, ssm_a {Hv}
                  F32 (-exp(A_log), no suffix), ssm_beta {E, Hv}, ssm_alpha
                  {E, Hv}, ssm_norm {S}, ssm_out {inner, E}
  attention layer attn_q {E, 2*D*n_head} (per head D query rows then D gate
                  rows), attn_k and attn_v {E, D*n_head_kv}, attn_output
                  {D*n_head, E}, attn_q_norm and attn_k_norm {D}
  dense FFN       ffn_gate and ffn_up {E, ff}, ffn_down {ff, E}
  MoE FFN         ffn_gate_inp {E, n_expert} F32, ffn_{gate,up}_exps
                  {E, ff_exp, n_expert}, ffn_down_exps {ff_exp, E, n_expert},
                  ffn_gate_inp_shexp {E, 1} F32 (the converter keeps the
                  checkpoint's (1, E): 2-D, one sigmoid gate per token),
                  ffn_{gate,up}_shexp {E, ff_sh}, ffn_down_shexp {ff_sh, E}
  MTP block       an attention layer's tensors and the MoE FFN, plus
                  nextn.eh_proj {2E, E}, nextn.enorm, nextn.hnorm and
                  nextn.shared_head_norm {E} (llama.cpp skips it unless asked
                  for MTP)
Layer il is DeltaNet unless (il + 1) % full_attention_interval == 0; the MTP
block is never. With Hv > Hk, value head h reads key head h % Hk: the
converter reorders the checkpoint's value heads (grouped by key head) into
that tiled order, which is the order these random weights are in.

File order: the checkpoint's keys sorted, as make_dense_model.py explains
(lm_head, then embed_tokens, the layers with 10 before 2, each layer's
input_layernorm, linear_attn.* or mlp.* and self_attn.* in name order, the
experts as the converter stacks them (down, gate, up), the norm, then mtp.*:
fc, the MTP layer, norm, pre_fc_norm_embedding, pre_fc_norm_hidden).

Deterministic as make_dense_model.py explains (numpy's legacy RandomState;
the fixtures record a CRC-32 of the weights). Quantized variants are made
here, not by llama-quantize, for the reason make_dense_model.py gives; Q5_0
(the fallback for rows that are not a multiple of 256) and Q8_0 come from
gguf.quants, Q4_K and Q6_K from make_dense_model.py's plain quantizers.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_dense_model as dense  # noqa: E402  (exits 77 itself without numpy / gguf)

np, gguf, QT = dense.np, dense.gguf, dense.QT
from gguf.constants import LlamaFileType  # noqa: E402

SEED = 20260401
FIXTURE_IDS_SEED = 20260402

# Qwen 3's added tokens, then Qwen 3.5's audio and speech ones (all control
# tokens but the tool and think tags, as make_dense_model.py types them).
QWEN35_ADDED_TOKENS = dense.QWEN3_ADDED_TOKENS + [
    "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
]
FAMILY = dict(basename="Qwen3.5", pre="qwen35", added=QWEN35_ADDED_TOKENS, template=dense.QWEN_CHAT_TEMPLATE,
              control=lambda t: t.startswith("<|"), bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>",
              add_bos=False, rope_base=10000000.0, eps=1e-6, n_ctx=262144)
# make_dense_model.make_vocab looks the added tokens up by architecture.
for _arch in ("qwen35", "qwen35moe"):
    dense.FAMILIES.setdefault(_arch, FAMILY)

COMMON = dict(n_embd=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, n_rot=16, sections=[3, 3, 2, 0],
              ssm_state=64, ssm_groups=2, conv_kernel=4, full_attention_interval=4, n_vocab=2048, n_normal=2000)
TINY = {
    "qwen35": dict(COMMON, arch="qwen35", name="Qwen3.5 tiny (random weights)", size_label="tiny", seed=SEED,
                   ssm_heads=2, n_ff=512, tied=True, mtp=0),
    "qwen35moe": dict(COMMON, arch="qwen35moe", name="Qwen3.6 MoE tiny (random weights)", size_label="tiny-A1",
                      seed=SEED + 1, ssm_heads=4, n_experts=16, n_experts_used=4, n_ff_exp=128, n_ff_shexp=128,
                      tied=False, mtp=1),
}
# Qwen3.6-35B-A3B's widths, its 40 layers cut to 8.
BENCH_MOE = dict(arch="qwen35moe", name="Qwen3.6-35B-A3B shape, 8 layers (random weights)", size_label="35B-A3B-8L",
                 seed=SEED + 2, n_embd=2048, n_layers=8, n_heads=16, n_kv_heads=2, head_dim=256, n_rot=64,
                 sections=[11, 11, 10, 0], ssm_state=128, ssm_groups=16, ssm_heads=32, conv_kernel=4,
                 full_attention_interval=4, n_vocab=248320, n_normal=248044, n_experts=256, n_experts_used=8,
                 n_ff_exp=512, n_ff_shexp=512, tied=False, mtp=0)


def is_recurrent(cfg, il):
    return il < cfg["n_layers"] and (il + 1) % cfg["full_attention_interval"] != 0


# ---- tensors ------------------------------------------------------------------------

def layer_tensors(cfg, il):
    """Layer il's (name, numpy shape) in the converter's order (the Hugging
    Face names sorted, see the module docstring)."""
    e, hd, s = cfg["n_embd"], cfg["head_dim"], cfg["ssm_state"]
    hv, hk = cfg["ssm_heads"], cfg["ssm_groups"]
    inner, conv = hv * s, 2 * hk * s + hv * s
    b = f"blk.{il}."
    if "n_experts" in cfg:
        ne, ff, sh = cfg["n_experts"], cfg["n_ff_exp"], cfg["n_ff_shexp"]
        # mlp.experts.* (stacked down, gate, up), mlp.gate, mlp.shared_expert.*,
        # mlp.shared_expert_gate
        mlp = [("ffn_down_exps.weight", (ne, e, ff)), ("ffn_gate_exps.weight", (ne, ff, e)),
               ("ffn_up_exps.weight", (ne, ff, e)), ("ffn_gate_inp.weight", (ne, e)),
               ("ffn_down_shexp.weight", (e, sh)), ("ffn_gate_shexp.weight", (sh, e)),
               ("ffn_up_shexp.weight", (sh, e)), ("ffn_gate_inp_shexp.weight", (1, e))]
    else:
        ff = cfg["n_ff"]
        mlp = [("ffn_down.weight", (e, ff)), ("ffn_gate.weight", (ff, e)), ("ffn_up.weight", (ff, e))]
    plan = [("attn_norm.weight", (e,))]
    if is_recurrent(cfg, il):
        # linear_attn.A_log, conv1d, dt_bias, in_proj_a, in_proj_b, in_proj_qkv,
        # in_proj_z, norm, out_proj
        plan += [("ssm_a", (hv,)), ("ssm_conv1d.weight", (conv, cfg["conv_kernel"])), ("ssm_dt.bias", (hv,)),
                 ("ssm_alpha.weight", (hv, e)), ("ssm_beta.weight", (hv, e)), ("attn_qkv.weight", (conv, e)),
                 ("attn_gate.weight", (inner, e)), ("ssm_norm.weight", (s,)), ("ssm_out.weight", (e, inner))]
        plan += mlp + [("post_attention_norm.weight", (e,))]
    else:
        q_dim, kv_dim = cfg["n_heads"] * hd, cfg["n_kv_heads"] * hd
        plan += mlp + [("post_attention_norm.weight", (e,)),
                       ("attn_k_norm.weight", (hd,)), ("attn_k.weight", (kv_dim, e)),
                       ("attn_output.weight", (e, q_dim)), ("attn_q_norm.weight", (hd,)),
                       ("attn_q.weight", (2 * q_dim, e)), ("attn_v.weight", (kv_dim, e))]
    return [(b + name, shape) for name, shape in plan]


def tensor_plan(cfg):
    e = cfg["n_embd"]
    plan = []
    if not cfg["tied"]:
        plan.append(("output.weight", (cfg["n_vocab"], e)))
    plan.append(("token_embd.weight", (cfg["n_vocab"], e)))
    for il in sorted(range(cfg["n_layers"]), key=str):
        plan += layer_tensors(cfg, il)
    plan.append(("output_norm.weight", (e,)))
    for i in range(cfg["mtp"]):
        # mtp.fc, mtp.layers.0.*, mtp.norm, mtp.pre_fc_norm_embedding, mtp.pre_fc_norm_hidden
        il = cfg["n_layers"] + i
        b = f"blk.{il}.nextn."
        plan.append((b + "eh_proj.weight", (e, 2 * e)))
        plan += layer_tensors(cfg, il)
        plan += [(b + "shared_head_norm.weight", (e,)), (b + "enorm.weight", (e,)), (b + "hnorm.weight", (e,))]
    check_names(cfg, plan)
    return plan


def check_names(cfg, plan):
    """Every name is one gguf-py lists for the architecture (the NEXTN ones
    only newer gguf-py than PyPI's 0.19 lists for these architectures)."""
    arch = gguf.MODEL_ARCH.QWEN35MOE if cfg["arch"] == "qwen35moe" else gguf.MODEL_ARCH.QWEN35
    nextn = [gguf.MODEL_TENSOR.NEXTN_EH_PROJ, gguf.MODEL_TENSOR.NEXTN_ENORM, gguf.MODEL_TENSOR.NEXTN_HNORM,
             gguf.MODEL_TENSOR.NEXTN_SHARED_HEAD_NORM]
    allowed = set()
    for t in list(gguf.MODEL_TENSORS[arch]) + nextn:
        for il in range(cfg["n_layers"] + cfg["mtp"]):
            allowed.add(gguf.TENSOR_NAMES[t].format(bid=il))
    for name, _ in plan:
        assert name.removesuffix(".weight").removesuffix(".bias") in allowed, name


def random_weight(rng, name, shape):
    """Scales chosen so that every feature matters and the comparison
    measures the forward pass rather than luck (make_gpt_oss_model.py's
    random_weight gives the reasoning):
    - matrices N(0, 0.02) (f16), the embedding and output rows of log-normal
      length (make_dense_model.py explains why); norms N(1, 0.1) (the
      converter adds 1 to Qwen 3.5's zero-centred norms, so stored norms lie
      around 1; the DeltaNet output norm is stored as it is, also around 1);
    - DeltaNet: ssm_a = -exp(uniform(log 0.02, log 0.5)) per head (log-
      uniform, so that long memories are as common as short ones),
      ssm_dt.bias N(0, 0.5) and ssm_alpha N(0, 0.02), so that each token's
      decay exp(ssm_a * softplus(alpha + dt_bias)) lies roughly in 0.6..0.99,
      with half-lives from 2 to 70 tokens, and the state carries information
      across the chunks of 64 tokens a prefill splits the sequence into
      (trained models have heads with memories as long); ssm_beta
      N(0, 0.05), so the write strength sigmoid(beta) stays around 0.5
      (0.3..0.7); the conv kernel N(0, 0.3) (f32), so each of the 4 taps
      matters;
    - experts: gate and up N(0, 0.05), down N(0, 0.01), so a layer's mixture
      adds to the residual stream about as much as its attention does; the
      router N(0, 0.3) (f32), the top 4 of 16 usually chosen by a clear
      margin; the shared expert as the routed ones, behind its sigmoid gate
      N(0, 0.2) (f32), which then ranges over 0.05..0.95 from token to
      token."""
    def normal(std, dtype=np.float32, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(dtype)
    kind = name.split(".", 2)[2] if name.startswith("blk.") else name
    if kind == "ssm_a":
        return (-np.exp(rng.uniform(np.log(0.02), np.log(0.5), shape))).astype(np.float32)
    if kind == "ssm_dt.bias":
        return normal(0.5)
    if kind == "ssm_conv1d.weight":
        return normal(0.3)
    if kind == "ffn_gate_inp.weight":
        return normal(0.3)
    if kind == "ffn_gate_inp_shexp.weight":
        return normal(0.2)
    if len(shape) == 1:
        return normal(0.1, mean=1.0)
    if kind == "ssm_alpha.weight":
        return normal(0.02, np.float16)
    if kind == "ssm_beta.weight":
        return normal(0.05, np.float16)
    if kind in ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight"):
        return normal(0.05, np.float16)
    if kind in ("ffn_down_exps.weight", "ffn_down_shexp.weight"):
        return normal(0.01, np.float16)
    w = 0.02 * rng.standard_normal(shape)
    if name in ("token_embd.weight", "output.weight"):
        w *= np.exp(rng.standard_normal((shape[0], 1)))
    return w.astype(np.float16)


# ---- types ----------------------------------------------------------------------------

def kept_f32(name, shape):
    """What the converter and llama-quantize keep F32: 1-D tensors, norms,
    the conv kernel, the router and the shared expert's gate ({E, 1})."""
    return (len(shape) == 1 or name.endswith(("_norm.weight", "ssm_conv1d.weight", "ffn_gate_inp.weight",
                                              "ffn_gate_inp_shexp.weight")))


def fallback(qtype, ncols):
    """llama-quantize's tensor_type_fallback for rows that are not a
    multiple of the type's block."""
    if ncols % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
        return qtype
    return {QT.Q4_K: QT.Q5_0, QT.Q6_K: QT.Q8_0, QT.Q5_K: QT.Q5_1}[qtype]


def q4_k_m_types(cfg, plan):
    """llama-quantize's Q4_K_M choices for these architectures
    (llama_tensor_get_type_impl in src/llama-quant.cpp), then its fallback:
    - output.weight, or token_embd.weight when tied, Q6_K;
    - attn_v and attn_qkv (one category, "attn_v-like", counted together in
      llama-quantize's order, the names sorted; so the Q5_K rule written for
      attn_qkv is never reached):
      Q6_K where use_more_bits(i, n) picks, Q4_K elsewhere;
    - ffn_down, ffn_down_exps and ffn_down_shexp: Q6_K where
      use_more_bits(layer, block_count) picks (the layer counted in that
      order without experts, read from the name with them), Q4_K elsewhere;
    - every other matrix Q4_K (ssm_alpha, ssm_beta and nextn.eh_proj
      included);
    - a row that is not a multiple of 256: Q4_K -> Q5_0, Q6_K -> Q8_0.
    Checked: llama-quantize makes the same choices from the tiny f16 files."""
    n_blocks = cfg["n_layers"] + cfg["mtp"]
    moe = "n_experts" in cfg
    n_v = sum(1 for name, _ in plan if name.endswith(("attn_v.weight", "attn_qkv.weight")))
    types, i_v, i_down = {}, 0, 0
    for name, shape in sorted(plan):
        if kept_f32(name, shape):
            continue
        if name == "output.weight" or (cfg["tied"] and name == "token_embd.weight"):
            qtype = QT.Q6_K
        elif name.endswith(("attn_v.weight", "attn_qkv.weight")):
            qtype = QT.Q6_K if dense.use_more_bits(i_v, n_v) else QT.Q4_K
            i_v += 1
        elif "ffn_down" in name:
            il = int(name.split(".")[1]) if moe else i_down
            qtype = QT.Q6_K if dense.use_more_bits(il, n_blocks) else QT.Q4_K
            i_down += 1
        else:
            qtype = QT.Q4_K
        types[name] = fallback(qtype, shape[-1])
    return types


def quantize(w, qtype):
    """Raw blocks of an f16 matrix (2-D or a 3-D expert stack), the last
    dimension in bytes."""
    if qtype == QT.Q5_0:
        w32 = w.astype(np.float32).reshape(-1, w.shape[-1])
        blocks = gguf.quants.quantize(w32, qtype)
        back = gguf.quants.dequantize(blocks, qtype).reshape(w32.shape)
        assert np.abs(back - w32).max() <= 0.1 * np.abs(w32).max(), "Q5_0 accuracy"
        return blocks.reshape(*w.shape[:-1], -1)
    return dense.quantize(w, qtype)


# ---- writing ----------------------------------------------------------------------------

def write_model(path, cfg, vocab, plan, weights, file_type, types):
    """Writes the header and tensor infos first, then each tensor as
    `weights` yields it, so a large model never has to sit in memory."""
    tokens, token_types, merges = vocab
    arch = cfg["arch"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(cfg["name"])
    w.add_basename(FAMILY["basename"])
    w.add_size_label(cfg["size_label"])
    w.add_block_count(cfg["n_layers"] + cfg["mtp"])
    w.add_context_length(FAMILY["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    if "n_ff" in cfg:
        w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_rope_freq_base(FAMILY["rope_base"])
    w.add_layer_norm_rms_eps(FAMILY["eps"])
    if "n_experts" in cfg:
        w.add_expert_count(cfg["n_experts"])
        w.add_expert_used_count(cfg["n_experts_used"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_file_type(file_type)
    if "n_experts" in cfg:
        w.add_expert_feed_forward_length(cfg["n_ff_exp"])
        w.add_expert_shared_feed_forward_length(cfg["n_ff_shexp"])
    w.add_ssm_conv_kernel(cfg["conv_kernel"])
    w.add_ssm_state_size(cfg["ssm_state"])
    w.add_ssm_group_count(cfg["ssm_groups"])
    w.add_ssm_time_step_rank(cfg["ssm_heads"])
    w.add_ssm_inner_size(cfg["ssm_heads"] * cfg["ssm_state"])
    w.add_full_attention_interval(cfg["full_attention_interval"])
    w.add_rope_dimension_count(cfg["n_rot"])
    if cfg["mtp"]:
        w.add_nextn_predict_layers(cfg["mtp"])
    assert sum(cfg["sections"][:3]) * 2 == cfg["n_rot"]
    w.add_rope_dimension_sections(cfg["sections"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(FAMILY["pre"])
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index(FAMILY["eos"]))
    w.add_pad_token_id(tokens.index(FAMILY["pad"]))
    w.add_bos_token_id(tokens.index(FAMILY["bos"]))
    w.add_add_bos_token(FAMILY["add_bos"])
    w.add_chat_template(FAMILY["template"])
    for name, shape in plan:
        qtype = types.get(name)
        dtype = np.float32 if kept_f32(name, shape) else np.float16
        if qtype is None:
            w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            byte_shape = (*shape[:-1], shape[-1] // block * size)
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for (name, shape), (wname, data) in zip(plan, weights):
        assert name == wname and data.shape == tuple(shape), name
        assert data.dtype == (np.float32 if kept_f32(name, shape) else np.float16), name
        qtype = types.get(name)
        w.write_tensor_data(data if qtype is None else quantize(data, qtype))
    w.close()


def make_vocab(cfg):
    rng = np.random.RandomState(cfg["seed"])
    return rng, dense.make_vocab(cfg, rng)


def iter_weights(rng, plan):
    for name, shape in plan:
        yield name, random_weight(rng, name, shape)


def make_tiny(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for arch, cfg in TINY.items():
        rng, vocab = make_vocab(cfg)
        plan = tensor_plan(cfg)
        weights = list(iter_weights(rng, plan))
        matrices = {name: QT.Q8_0 for name, shape in plan if not kept_f32(name, shape)}
        variants = [
            ("f16", LlamaFileType.MOSTLY_F16, {}),
            ("q8_0", LlamaFileType.MOSTLY_Q8_0, matrices),
            ("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, q4_k_m_types(cfg, plan)),
        ]
        for suffix, file_type, types in variants:
            # Written under a temporary name: a test never sees half a model.
            path = outdir / f"{arch}-tiny-{suffix}.gguf"
            partial = path.with_suffix(".gguf.partial")
            write_model(partial, cfg, vocab, plan, weights, file_type, types)
            os.replace(partial, path)
            print(f"wrote {path}")


def tiny_ids():
    assert TINY["qwen35"]["n_normal"] == TINY["qwen35moe"]["n_normal"]
    return np.random.RandomState(FIXTURE_IDS_SEED).randint(0, TINY["qwen35"]["n_normal"], 512)


def make_bench(out, cfg=BENCH_MOE):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tool = dense.oracle_quantize_tool()
    rng, vocab = make_vocab(cfg)
    plan = tensor_plan(cfg)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        f16 = Path(work) / "f16.gguf"
        write_model(f16, cfg, vocab, plan, iter_weights(rng, plan), LlamaFileType.MOSTLY_F16, {})
        partial = Path(work) / out.name
        run = subprocess.run([str(tool), str(f16), str(partial), "Q4_K_M", str(min(os.cpu_count() or 1, 4))],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout + run.stderr)
            sys.exit(f"make_qwen35_model.py: {tool} failed")
        shutil.move(partial, out)
    print(f"wrote {out}")


def main(argv):
    models = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "models"
    if len(argv) == 3 and argv[1] == "tiny":
        make_tiny(argv[2])
    elif len(argv) == 2 and argv[1] == "tiny-ids":
        print(" ".join(map(str, tiny_ids())))
    elif len(argv) in (2, 3) and argv[1] == "bench-moe":
        make_bench(argv[2] if len(argv) == 3 else models / "qwen36-35b-a3b-8l-shape-q4_k_m.gguf")
    elif len(argv) == 3 and argv[1] == "weights-crc32":
        print(f"{dense.weights_crc32(argv[2]):08x}")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
