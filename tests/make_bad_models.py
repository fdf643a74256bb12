#!/usr/bin/env python3
"""Broken copies of a good model file, one per row of the bad-input table in
tests/bad_input_test.sh.

  make_bad_models.py GOOD.gguf OUTDIR

GOOD.gguf is a tiny random-weight model (the dense_tiny_models fixture
qwen3-tiny-q8_0.gguf). Each OUTDIR/NAME.gguf differs from it in one way:

  header and tensor-info damage, patched into a byte copy (the reader's rows):
    magic, version1, tensors_2_60, dims_overflow, offset_past_eof,
    offset_unaligned, type_unknown, string_past_eof
  model-level damage, the file rewritten with the gguf package (the loader's):
    vocab_rows, missing_tensor, missing_key, wrong_shape, nan_weights

Needs the gguf package (and numpy, which it brings); without it, exit 77.
"""
import struct
import sys
from pathlib import Path

try:
    import numpy as np
    import gguf
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

SKIP = 77  # CTest SKIP_RETURN_CODE


def tensor_info_offsets(reader, name):
    """Where the tensor's n_dims, dims, type and offset fields lie in the file."""
    t = next(t for t in reader.tensors if t.name == name)
    n_dims_at = t.field.offset + 8 + len(name.encode())
    n_dims = int(reader.data[n_dims_at:n_dims_at + 4].view(np.uint32)[0])
    dims_at = n_dims_at + 4
    type_at = dims_at + 8 * n_dims
    return dims_at, type_at, type_at + 4


def patched(data, at, fmt, *values):
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def header_damage(good, reader):
    """The reader's rows: each a good file with a few bytes changed."""
    last = reader.tensors[-1].name
    dims_at, type_at, offset_at = tensor_info_offsets(reader, "blk.0.attn_q.weight")
    _, _, last_offset_at = tensor_info_offsets(reader, last)
    name = reader.fields["general.name"]
    name_len_at = name.offset + 8 + len("general.name") + 4
    return {
        "magic": patched(good, 0, "<4s", b"GGML"),
        "version1": patched(good, 4, "<I", 1),
        "tensors_2_60": patched(good, 8, "<Q", 1 << 60),
        # [2^32, 2^32]: 2^64 elements, which wrap a 64-bit count.
        "dims_overflow": patched(good, dims_at, "<QQ", 1 << 32, 1 << 32),
        "offset_past_eof": patched(good, last_offset_at, "<Q", 1 << 30),
        "offset_unaligned": patched(good, offset_at, "<Q",
                                    struct.unpack_from("<Q", good, offset_at)[0] + 8),
        "type_unknown": patched(good, type_at, "<I", 99),
        "string_past_eof": patched(good, name_len_at, "<Q", len(good)),
    }


def rewrite(reader, path, drop_keys=(), extra_tokens=(), drop_tensors=(), tensor_edits=None):
    """Writes reader's model to path with keys or tensors left out, tokens
    added to the vocabulary, or tensors replaced (name -> (bytes, raw_shape))."""
    tensor_edits = tensor_edits or {}
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(path), arch, use_temp_file=False)
    w.kv_data[0].pop("general.architecture", None)  # copied below, in file order
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in drop_keys:
            continue
        vtype = field.types[0]
        value = field.contents()
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        if key == "tokenizer.ggml.tokens":
            value = value + list(extra_tokens)
        elif key == "tokenizer.ggml.token_type":
            value = value + [1] * len(extra_tokens)
        w.add_key_value(key, value, vtype, sub_type=sub)
    for t in reader.tensors:
        if t.name in drop_tensors:
            continue
        data = np.array(t.data)
        if t.name in tensor_edits:
            data = tensor_edits[t.name](data)
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def nan_scales(q8_0):
    """Every Q8_0 block's f16 scale (its first two bytes) made a NaN."""
    blocks = q8_0.reshape(q8_0.shape[0], -1, 34).copy()
    blocks[:, :, 0:2] = np.frombuffer(struct.pack("<e", float("nan")), dtype=np.uint8)
    return blocks.reshape(q8_0.shape)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    good_path, outdir = Path(argv[1]), Path(argv[2])
    if not good_path.is_file():
        print(f"SKIP: no {good_path} (the dense_tiny_models step writes it)")
        return SKIP
    outdir.mkdir(parents=True, exist_ok=True)
    good = good_path.read_bytes()
    reader = gguf.GGUFReader(str(good_path))
    arch = reader.fields["general.architecture"].contents()
    for name, data in header_damage(good, reader).items():
        (outdir / f"{name}.gguf").write_bytes(data)

    rewrite(reader, outdir / "vocab_rows.gguf", extra_tokens=["<|extra_0|>"])
    rewrite(reader, outdir / "missing_tensor.gguf", drop_tensors={"blk.2.attn_k.weight"})
    rewrite(reader, outdir / "missing_key.gguf", drop_keys={f"{arch}.embedding_length"})
    # ffn_up is [E, F] = [256, 512]; the same bytes read as [512, 256].
    rewrite(reader, outdir / "wrong_shape.gguf",
            tensor_edits={"blk.1.ffn_up.weight": lambda d: d.reshape(d.shape[0] // 2, d.shape[1] * 2)})
    rewrite(reader, outdir / "nan_weights.gguf", tensor_edits={"blk.1.ffn_down.weight": nan_scales})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
