"""Golden test vectors for MX datapath RTL: inputs and expected outputs as hex text files.

    from mxsim import vectors
    man = vectors.export("vec/", a, b, "MXINT8/32", accumulators=[mxsim.Exact(), mxsim.FP32(),
                         mxsim.FixedPoint(32, 16, overflow="saturate")])

``a`` (M x K) is quantized along K (axis -1) and ``b`` (K x N) along K (axis 0) with
``mxsim.quantize``; every expected output comes from ``mxsim.matmul`` (and every block code
from the MXTensor), nothing is re-implemented here. Files (one value per line, ``$readmemh``
ready, lowercase hex, no prefix):

``a_codes.hex``   M*nb lines, row m block j at line m*nb + j: the block's k element codes
                  packed lane 0 in the least significant bits, ``element_bits`` each
                  (MXINT: two's complement code; BlockFP: sign-magnitude code as stored,
                  sign bit on top; MXFP: the bit pattern). A short last block is zero padded.
``a_ints.hex``    same layout, the integer view (MXTensor.int_values: value / 2^(scale+q)),
                  ``int_bits`` two's complement bits per lane: what a multiplier array sees.
``a_scales.hex``  M*nb lines: the block's scale code (E8M0 or BlockFP exponent code).
``b_codes.hex``, ``b_ints.hex``, ``b_scales.hex``: column n block j at line n*nb + j.
``block_exact.hex`` (``per_block=True``) M*N*nb lines at (m*N + n)*nb + j: the float64 bits
                  of block j's dot product  P_j * 2^E_j  (mxsim.matmul "exact" on that block).
``expected_<name>.hex`` M*N lines at m*N + n, one file per accumulator:
                  "exact": float64 bits; "fp32": float32 bits; FixedPoint(W, F): the W-bit
                  two's complement accumulator (output * 2^F).
``manifest.json`` formats, shapes, widths, scale biases, accumulators, file layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .accumulators import FP32, Exact, FixedPoint, datapath_accumulator, parse_accumulator
from .formats import BlockFP, MXFPFormat, MXIntFormat, get_format


def _mx():
    import mxsim

    return mxsim


def acc_name(acc) -> str:
    """File-name stem of an accumulator: exact, fp32, fixed_<W>_<F>_<overflow>."""
    acc = parse_accumulator(acc)
    if isinstance(acc, FixedPoint):
        return f"fixed_{acc.total_bits}_{acc.frac_bits}_{acc.overflow}"
    return acc.name


def int_bits(fmt) -> int:
    """Two's complement bits that hold every integer view value of ``fmt`` (max_int)."""
    return int(fmt.max_int).bit_length() + 1


def scale_bias(fmt) -> int:
    return fmt.scale.bias


def _pack(vals: np.ndarray, bits: int) -> list[int]:
    """Rows of lane values -> ints with lane 0 in the low bits (two's complement fields)."""
    mask = (1 << bits) - 1
    out = []
    for row in vals:
        w = 0
        for i, v in enumerate(row.tolist()):
            w |= (int(v) & mask) << (i * bits)
        out.append(w)
    return out


def _blocks(arr2d: np.ndarray, k: int) -> np.ndarray:
    """(R, K) -> (R * nb, k) zero-padded blocks, row-major (r, j)."""
    r, kk = arr2d.shape
    nb = -(-kk // k)
    pad = np.zeros((r, nb * k), dtype=arr2d.dtype)
    pad[:, :kk] = arr2d
    return pad.reshape(r * nb, k)


def _write(path: Path, words, bits: int):
    nd = max(1, (bits + 3) // 4)
    mask = (1 << bits) - 1
    path.write_text("".join(f"{int(w) & mask:0{nd}x}\n" for w in words))


def read_hex(path, bits: int | None = None, signed: bool = False) -> list[int]:
    """Read a vector file back (``signed``: interpret as ``bits``-bit two's complement)."""
    vals = [int(t, 16) for t in Path(path).read_text().split()]
    if signed:
        vals = [v - (1 << bits) if v >> (bits - 1) & 1 else v for v in vals]
    return vals


def _code_words(q, fmt, rows_first: bool):
    codes = np.asarray(q.codes)
    ints = np.asarray(q.int_values())
    if not rows_first:      # b: K x N -> N x K (column-major blocks)
        codes, ints = codes.T, ints.T
    codes = codes.astype(np.int64) & ((1 << fmt.element_bits) - 1)
    scales = np.asarray(q.scales)
    if not rows_first:
        scales = scales.T
    k = fmt.block_size
    return (_pack(_blocks(codes, k), fmt.element_bits), _pack(_blocks(ints, k), int_bits(fmt)),
            scales.reshape(-1).astype(np.int64).tolist())


def export(outdir, a, b, fmt_a, fmt_b=None, accumulators=(Exact(),), lanes=None, per_block=True,
           rounding="nearest_even") -> dict:
    """Quantize ``a`` and ``b``, run ``mxsim.matmul`` and write the vector files to ``outdir``.

    ``accumulators``: mxsim accumulators (or their spellings, parsed here); ``lanes`` is the
    step width of the fp32 ones (the others update once per block)."""
    mx = _mx()
    accumulators = [parse_accumulator(acc, what="accumulators") for acc in accumulators]
    accumulators = [datapath_accumulator(acc, lanes if isinstance(acc, FP32) else None, what="accumulators")
                    for acc in accumulators]
    fmt_a = get_format(fmt_a)
    fmt_b = fmt_a if fmt_b is None else get_format(fmt_b)
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"need a (M x K) and b (K x N), got {a.shape} and {b.shape}")
    if fmt_a.block_size != fmt_b.block_size:
        raise ValueError("fmt_a and fmt_b must have the same block size")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    qa = mx.quantize(a, fmt_a, axis=-1, rounding=rounding)
    qb = mx.quantize(b, fmt_b, axis=0, rounding=rounding)
    M, K = a.shape
    N = b.shape[1]
    k = fmt_a.block_size
    nb = -(-K // k)
    files = {}
    for side, q, fmt, rows_first in (("a", qa, fmt_a, True), ("b", qb, fmt_b, False)):
        cw, iw, sc = _code_words(q, fmt, rows_first)
        _write(out / f"{side}_codes.hex", cw, k * fmt.element_bits)
        _write(out / f"{side}_ints.hex", iw, k * int_bits(fmt))
        _write(out / f"{side}_scales.hex", sc, 8)
        files.update({f"{side}_codes": f"{side}_codes.hex", f"{side}_ints": f"{side}_ints.hex",
                      f"{side}_scales": f"{side}_scales.hex"})
    if per_block:
        vals = np.empty((M, N, nb), dtype=np.float64)
        for j in range(nb):
            sl = slice(j * k, min(K, (j + 1) * k))
            qa_j = mx.quantize(a[:, sl], fmt_a, axis=-1, rounding=rounding)
            qb_j = mx.quantize(b[sl, :], fmt_b, axis=0, rounding=rounding)
            vals[:, :, j] = np.asarray(mx.matmul(qa_j, qb_j, accumulator=Exact()), dtype=np.float64)
        _write(out / "block_exact.hex", vals.reshape(-1).view(np.uint64).tolist(), 64)
        files["block_exact"] = "block_exact.hex"
    accs = []
    for acc in accumulators:
        y = np.asarray(mx.matmul(qa, qb, accumulator=acc))
        name = acc_name(acc)
        if isinstance(acc, FP32):
            words, bits = y.astype(np.float32).reshape(-1).view(np.uint32).tolist(), 32
        elif isinstance(acc, Exact):
            words, bits = y.astype(np.float64).reshape(-1).view(np.uint64).tolist(), 64
        else:
            w, f = acc.total_bits, acc.frac_bits
            scaled = y.astype(np.float64).reshape(-1) * 2.0**f
            if not np.all(scaled == np.round(scaled)):
                raise ValueError("fixed-point output is not a multiple of 2^-frac_bits")
            words, bits = [int(v) for v in scaled], w
        _write(out / f"expected_{name}.hex", words, bits)
        files[f"expected_{name}"] = f"expected_{name}.hex"
        accs.append({"name": name, "bits": bits, "spec": acc.name if not isinstance(acc, FixedPoint) else
                     {"total_bits": acc.total_bits, "frac_bits": acc.frac_bits, "overflow": acc.overflow}})
    manifest = {
        "fmt_a": fmt_a.name, "fmt_b": fmt_b.name, "block_size": k, "M": M, "K": K, "N": N, "n_blocks": nb,
        "element_bits_a": fmt_a.element_bits, "element_bits_b": fmt_b.element_bits,
        "int_bits_a": int_bits(fmt_a), "int_bits_b": int_bits(fmt_b),
        "quantum_log2_a": fmt_a.quantum_log2, "quantum_log2_b": fmt_b.quantum_log2,
        "scale_bias_a": scale_bias(fmt_a), "scale_bias_b": scale_bias(fmt_b),
        "lanes": lanes, "accumulators": accs, "files": files,
        "layout": "a files: line m*n_blocks+j; b files: line n*n_blocks+j; block_exact: (m*N+n)*n_blocks+j; "
                  "expected_*: m*N+n; lane 0 in the least significant bits",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def adversarial_pair(M, K, N, block, rng, scale_span=100, kinds=None):
    """Float inputs (a: M x K, b: K x N, float64) mixing random blocks with adversarial ones:
    all-zero blocks, blocks of +-max codes (all elements +-amax), blocks whose scales are far
    apart (each block multiplied by 2^r, |r| <= scale_span), and large uniform blocks that
    drive fixed-point accumulators into saturation."""
    nb = -(-K // block)

    def mat(R):
        x = rng.standard_normal((R, nb * block))
        kind = rng.integers(0, 6, (R, nb))
        for r in range(R):
            for j in range(nb):
                sl = slice(j * block, (j + 1) * block)
                t = kind[r, j]
                if t == 0:
                    x[r, sl] = 0.0
                elif t == 1:        # +-max codes: every element has |x| = amax
                    x[r, sl] = rng.choice([-1.0, 1.0], block) * 1.99999
                elif t == 2:        # far-apart exponents
                    x[r, sl] *= 2.0 ** int(rng.integers(-scale_span, scale_span + 1))
                elif t == 3:        # saturation: large, same sign
                    x[r, sl] = np.abs(x[r, sl]) * 2.0 ** int(rng.integers(4, 12))
                elif t == 4:        # a single non-zero lane (exact small products)
                    x[r, sl] = 0.0
                    x[r, j * block + int(rng.integers(0, block))] = rng.standard_normal()
        return x[:, :K]

    a = mat(M)
    b = mat(N).T.copy()
    return a, b
