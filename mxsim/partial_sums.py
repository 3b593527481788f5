"""The range of the running partial sums of an MX matmul: what a fixed-point accumulator must hold.

``partial_sum_range(a, b)`` walks the blocks of ``mxsim.matmul(a, b, ...)`` in the same order as
the datapath (contract: docs/mxsim_semantics.md, matmul) and returns the largest magnitude of

* a block term ``P_j * 2^E_j`` (one block's exact integer sum with its scale: the adder tree's
  output after alignment), and
* a running sum ``S_j = sum_{i <= j} P_i * 2^E_i`` (the accumulator's content after block j,
  before any rounding, saturation or wrap).

This is a calibration statistic, not a datapath: the block sums are exact (integer GEMMs in
float64, every partial sum < 2^53), the running sums are kept in float64 (relative error
2^-53, irrelevant for the ``log2`` a fraction-bit rule takes of them). Outputs with a NaN
block scale are ignored. MXFP8_E5M2 is refused as by matmul.
"""

from __future__ import annotations

import numpy as np

from .formats import MXFPFormat
from .layout import matmul_operands
from .tensor import MXTensor

_CHUNK_ELEMENTS = 1 << 23  # bounds the (blocks x rows x N) float64 work arrays (64 MiB)


def partial_sum_range(a: MXTensor, b: MXTensor) -> dict:
    """``{"max_abs_partial_sum", "max_abs_block_sum", "outputs"}`` of ``a (..., K) @ b (K, N)``,
    with a and b laid out as mxsim.matmul takes them (a blocked along its last axis, b 2-D
    blocked along axis 0, the same block size)."""
    if not isinstance(a, MXTensor) or not isinstance(b, MXTensor):
        raise ValueError("a and b must be MXTensor (use mxsim.quantize)")
    K, k = matmul_operands(a, b)
    for name, f in (("a", a.fmt), ("b", b.fmt)):
        if isinstance(f, MXFPFormat) and f.exponent_bits == 5:
            raise ValueError(f"{name}: MXFP8_E5M2 products do not fit the int64 adder (as mxsim.matmul)")
    N = b.shape[1]
    M = int(np.prod(a.shape[:-1], dtype=np.int64))
    Ai = a.int_values().reshape(M, K).astype(np.float64)
    Bi = b.int_values().astype(np.float64)
    ea = a.scale_exponents().reshape(M, -1).astype(np.int64)
    eb = b.scale_exponents().astype(np.int64)
    nan_a = a.scale_is_nan().reshape(M, -1).any(axis=1)
    nan_b = b.scale_is_nan().any(axis=0)
    qsum = a.fmt.quantum_log2 + b.fmt.quantum_log2
    bound = float(np.abs(Ai).max(initial=0)) * float(np.abs(Bi).max(initial=0)) * k
    if bound >= 2.0**53:
        raise ValueError("block sums exceed 2^53: partial_sum_range supports the formats whose products fit")
    import torch  # batched block GEMMs on every core, or on the GPU that holds the codes

    # the operands' integers are prepared on the host (O(M K)); the block GEMMs and running
    # sums (O(M K N)) run where the codes live: float64 bmm on a CUDA device is exact as here
    dev = a.device if a.device is not None and a.device.type == "cuda" else torch.device("cpu")

    max_ps = max_bs = 0.0
    nb = -(-K // k)
    pad = nb * k - K
    if pad:  # a short last block: zero products add nothing
        Ai = np.pad(Ai, ((0, 0), (0, pad)))
        Bi = np.pad(Bi, ((0, pad), (0, 0)))
    Bt = torch.from_numpy(np.ascontiguousarray(Bi.reshape(nb, k, N))).to(dev)  # (nb, k, N)
    wb = torch.from_numpy(np.ldexp(1.0, eb)).reshape(nb, 1, N).to(dev)
    rows = max(1, _CHUNK_ELEMENTS // max(1, nb * N))
    for r0 in range(0, M, rows):
        r1 = min(r0 + rows, M)
        At = torch.from_numpy(np.ascontiguousarray(Ai[r0:r1].reshape(r1 - r0, nb, k).transpose(1, 0, 2))).to(dev)
        wa = torch.from_numpy(np.ldexp(1.0, ea[r0:r1] + qsum).T.copy()).reshape(nb, r1 - r0, 1).to(dev)
        terms = torch.bmm(At, Bt)  # (nb, rows, N) exact integer block sums (< 2^53)
        terms *= wa
        terms *= wb
        valid = ~torch.from_numpy(nan_a[r0:r1, None] | nan_b[None, :]).to(dev)
        max_bs = max(max_bs, float(terms.abs().amax(dim=0)[valid].max()) if valid.any() else 0.0)
        run = torch.cumsum(terms, dim=0)  # the accumulator after each block, in order
        max_ps = max(max_ps, float(run.abs().amax(dim=0)[valid].max()) if valid.any() else 0.0)
    return {"max_abs_partial_sum": max_ps, "max_abs_block_sum": max_bs, "outputs": M * N}
