#!/usr/bin/env python3
"""Writes tests/fixtures/quant/: golden outputs of independent implementations
of every weight format hearth converts, for tests/test_quant.c to match bit for
bit.

Oracles:
  * PyPI `gguf` (gguf.quants.quantize / dequantize) for every type it supports;
  * llama.cpp's ggml (quantize_row_*_ref, dequantize_row_q8_K), called through
    scripts/oracle/ggml_quant_oracle.c against the oracle build
    (scripts/oracle/build-llama-cpp.sh), for Q8_K and the K-quant quantizers,
    which the gguf package lacks;
  * the same build's CPU dot products (activations converted as its CPU
    backend does, then vec_dot) for Q4_1 and Q5_1, which tests/test_dot.c
    compares hearth's with, within a stated bound (not bit for bit: ggml
    rounds Q8_1's s = d * sum to f16, hearth keeps it f32).

Fixture file format (little-endian), one file per (type, direction), named
TYPE.dequantize or TYPE.quantize:
    char[4]  "HQFX"
    u32      format version (1)
    u32      ggml type id
    u32      direction: 0 = dequantize (blocks -> f32), 1 = quantize (f32 -> blocks)
    u64      n, the element count (a multiple of the block size)
    ...      input  (blocks, or n f32)
    ...      expected output (n f32, or blocks)

and TYPE.dot for the dot products, the same header with direction 2 and n the
row length, then
    u64      rows
    ...      rows x n weights (blocks), then n f32 activations
    ...      rows f32: llama.cpp's dot product of each row with the activations

Run:  python3 scripts/oracle/make_quant_fixtures.py   (deterministic: fixed seed)
"""
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES
from gguf import quants

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "quant"
ORACLE_DIR = Path(os.environ.get("HEARTH_ORACLE_DIR",
                                 Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "oracle"))
SEED = 20261124

# Byte offsets of the f16 scale fields in each block, so that random blocks
# get finite, sensible scales (random bytes there would be NaN/inf half the time
# for the high byte patterns, which says nothing about the format).
F16_SCALE_OFFSETS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.IQ4_NL: [0], T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2],
    T.Q6_K: [208], T.IQ4_XS: [0],
}


def write_fixture(qtype, direction, n, inp: bytes, expected: bytes):
    name = f"{qtype.name}.{'dequantize' if direction == 0 else 'quantize'}"
    with open(OUT / name, "wb") as f:
        f.write(b"HQFX" + struct.pack("<IIIQ", 1, qtype.value, direction, n))
        f.write(inp)
        f.write(expected)
    print(f"  {name}: n={n}, {len(inp)} + {len(expected)} bytes")


def test_values(rng, n_blocks, block_size):
    """f32 inputs with the awkward cases first, then random scales."""
    blocks = []
    for b in range(n_blocks):
        if b == 0:
            x = np.zeros(block_size)
        elif b == 1:
            x = np.full(block_size, 0.3)
        elif b == 2:
            x = np.full(block_size, -1.7)
        elif b == 3:  # exact multiples of 1/8: many rounding ties
            x = (np.arange(block_size) - block_size / 2) / 8.0
        elif b == 4:  # one outlier
            x = rng.normal(0, 0.01, block_size)
            x[block_size // 3] = 40.0
        elif b == 5:  # tiny values
            x = rng.normal(0, 1e-30, block_size)
        elif b == 6:  # mostly zeros
            x = np.zeros(block_size)
            x[rng.integers(0, block_size, 3)] = rng.normal(0, 1, 3)
        elif b == 7:  # positive only
            x = np.abs(rng.normal(0.5, 0.2, block_size))
        elif b == 8:  # the largest magnitude is negative, first of a tie
            x = rng.normal(0, 0.1, block_size)
            x[1], x[5] = -2.0, 2.0
        else:
            x = rng.normal(0, 10 ** rng.uniform(-3, 2), block_size)
            if b % 5 == 0:
                x += rng.uniform(-1, 1)  # an offset, for the formats with a min
        blocks.append(x)
    return np.concatenate(blocks).astype(np.float32)


def random_blocks(rng, qtype, n_blocks):
    """Random bytes in every field, with finite scales of varied size."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    if qtype == T.MXFP4:  # the E8M0 exponent: mostly moderate, plus the extremes
        raw[:, 0] = rng.integers(100, 150, n_blocks)
        raw[:4, 0] = [0, 1, 254, 255]
    elif qtype == T.Q8_K:
        d = (rng.normal(0, 1, n_blocks) * 10.0 ** rng.uniform(-5, 0, n_blocks)).astype(np.float32)
        d[0] = 0
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    for off in F16_SCALE_OFFSETS.get(qtype, []):
        d = (rng.normal(0, 1, n_blocks) * 10.0 ** rng.uniform(-4, 0, n_blocks)).astype(np.float16)
        d[0] = 0
        d[1] = 65504.0 if off == F16_SCALE_OFFSETS[qtype][0] else 1.0
        d[2] = np.float16(6e-8)  # a subnormal half
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw


def float_edge_values(rng):
    """f32 inputs for F16/BF16: rounding ties, overflow and underflow
    thresholds, infinities, NaNs with payloads, then random bit patterns."""
    specials = np.array([
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
        0x7F800001, 0x7FA00000, 0x7FFFFFFF, 0x7F802000,
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x47800000,  # around 65504
        0x38800000, 0x387FFFFF, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33800000,  # half subnormals
        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,  # half-ulp ties, odd and even
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # bf16 ties
        0x00000001, 0x007FFFFF, 0x7F7FFFFF, 0xFF7FFFFF,
    ], dtype=np.uint32)
    rand_bits = rng.integers(0, 2**32, 2048 - len(specials), dtype=np.uint64).astype(np.uint32)
    return np.concatenate([specials, rand_bits]).view(np.float32)


def run_ggml_oracle(op, qname, n, data: bytes, *extra) -> bytes:
    src = ORACLE_DIR / "src" / "vendor" / "llama.cpp"
    lib = ORACLE_DIR / "build" / "bin"
    if not (lib / "libggml-base.so").exists():
        sys.exit(f"oracle not built: run scripts/oracle/build-llama-cpp.sh first ({lib})")
    exe = Path(tempfile.gettempdir()) / "hearth_ggml_quant_oracle"
    if not exe.exists() or exe.stat().st_mtime < (ROOT / "scripts/oracle/ggml_quant_oracle.c").stat().st_mtime:
        subprocess.run(["cc", "-O1", "-o", str(exe), str(ROOT / "scripts/oracle/ggml_quant_oracle.c"),
                        f"-I{src / 'ggml' / 'include'}", f"-L{lib}", "-lggml-cpu", "-lggml-base",
                        f"-Wl,-rpath,{lib}"], check=True)
    assert src.exists()
    res = subprocess.run([str(exe), op, qname, str(n), *map(str, extra)], input=data, capture_output=True,
                         check=True)
    return res.stdout


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.*quantize"):
        old.unlink()
    rng = np.random.default_rng(SEED)

    # F16 and BF16: every encoding with an all-zeros or all-ones exponent
    # (zeros, subnormals, infinities, NaNs), random others; then f32 edge cases.
    # (tests/test_quant.c also checks all 65536 halves against an independent
    # computation, without a fixture.)
    edge16 = np.concatenate([np.arange(0, 1024), np.arange(0x7C00, 0x8400), np.arange(0xFC00, 0x10000)])
    h16 = np.concatenate([edge16, rng.integers(0, 65536, 4096)]).astype(np.uint16)
    write_fixture(T.F16, 0, len(h16), h16.tobytes(), h16.view(np.float16).astype(np.float32).tobytes())
    b16 = np.concatenate([np.arange(0x7F70, 0x8090), np.arange(0xFF70, 0x10000), np.arange(0, 256),
                          rng.integers(0, 65536, 2048)]).astype(np.uint16)
    write_fixture(T.BF16, 0, len(b16), b16.tobytes(), quants.dequantize(b16.view(np.uint8), T.BF16).astype(np.float32).tobytes())
    edges = float_edge_values(rng)
    with np.errstate(over="ignore"):  # overflow to infinity is one of the cases
        write_fixture(T.F16, 1, len(edges), edges.tobytes(), edges.astype(np.float16).tobytes())
    write_fixture(T.BF16, 1, len(edges), edges.tobytes(), quants.quantize(edges, T.BF16).tobytes())

    # Block formats the gguf package dequantizes: random blocks, plus (where it
    # can quantize) blocks it quantized from the test values.
    dequant_types = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
                     T.IQ4_NL, T.IQ4_XS, T.MXFP4]
    quant_types = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4]
    for qtype in dequant_types:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_blocks = 48 if block_size == 32 else 12
        blocks = random_blocks(rng, qtype, n_blocks)
        if qtype in quant_types:
            values = test_values(rng, n_blocks, block_size).reshape(n_blocks, block_size)
            blocks = np.concatenate([blocks, quants.quantize(values, qtype).reshape(n_blocks, type_size)])
        with np.errstate(over="ignore"):  # MXFP4 with exponent 255 overflows, as in ggml
            out = quants.dequantize(blocks, qtype).astype(np.float32)
        write_fixture(qtype, 0, blocks.shape[0] * block_size, blocks.tobytes(), out.tobytes())

    for qtype in quant_types:
        block_size, _ = GGML_QUANT_SIZES[qtype]
        n_blocks = 64
        values = test_values(rng, n_blocks, block_size)
        out = quants.quantize(values.reshape(n_blocks, block_size), qtype)
        write_fixture(qtype, 1, len(values), values.tobytes(), out.tobytes())

    # ggml itself: the K-quant quantizers and Q8_K.
    for qtype, qname in [(T.Q4_K, "q4_K"), (T.Q5_K, "q5_K"), (T.Q6_K, "q6_K"), (T.Q8_K, "q8_K")]:
        n_blocks = 24
        values = test_values(rng, n_blocks, 256)
        out = run_ggml_oracle("quantize", qname, len(values), values.tobytes())
        write_fixture(qtype, 1, len(values), values.tobytes(), out)
    q8k_blocks = random_blocks(rng, T.Q8_K, 16).tobytes()
    write_fixture(T.Q8_K, 0, 16 * 256, q8k_blocks, run_ggml_oracle("dequantize", "q8_K", 16 * 256, q8k_blocks))

    # ggml's CPU dot products of Q4_1 and Q5_1 rows (random blocks, then
    # blocks quantized from the test values) with activations of every kind
    # the test values hold.
    for qtype, qname in [(T.Q4_1, "q4_1"), (T.Q5_1, "q5_1")]:
        n, rows = 2048, 16
        random_rows = random_blocks(rng, qtype, rows // 2 * n // 32)
        quantized_rows = quants.quantize(test_values(rng, rows // 2 * n // 32, 32).reshape(-1, 32), qtype)
        weights = random_rows.tobytes() + quantized_rows.tobytes()
        activations = test_values(rng, n // 32, 32).tobytes()
        out = run_ggml_oracle("dot", qname, n, weights + activations, rows)
        with open(OUT / f"{qtype.name}.dot", "wb") as f:
            f.write(b"HQFX" + struct.pack("<IIIQQ", 1, qtype.value, 2, n, rows) + weights + activations + out)
        print(f"  {qtype.name}.dot: {rows} rows of {n}")

    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} fixtures, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
