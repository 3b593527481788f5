"""LQER with fixed-point formats: y = x·W_q + ((x·A)·B), all integer units.

Units: main int GEMM (x_bits × w_bits), x·A (x_bits × lr_bits, N=rank), a requantizer of xA
to lr_bits (comparator + mux per element, saturate; shift by a constant is wiring), (xA)·B
(lr_bits × lr_bits, K=rank), and ``add_lanes`` final int adders."""

from __future__ import annotations

from .base import low_rank_design, Counts, Layer, check_pos_int, clog2, int_gemm, resolve_rank


@low_rank_design
def lqer_fixed(layer: Layer, w_bits: int = 4, x_bits: int = 16, lr_bits: int = 16, rank=32,
               lanes: int = 16, lowrank_lanes: int = 16, add_lanes: int = 1, acc_bits: int | None = None,
               weights_on_chip: bool = False) -> Counts:
    for n, v in dict(w_bits=w_bits, x_bits=x_bits, lr_bits=lr_bits, lowrank_lanes=lowrank_lanes,
                     add_lanes=add_lanes).items():
        check_pos_int(n, v)
    rank = resolve_rank(rank, layer)
    c = Counts("lqer-fixed", layer, dict(w_bits=w_bits, x_bits=x_bits, lr_bits=lr_bits, rank=rank, lanes=lanes,
                                         lowrank_lanes=lowrank_lanes, acc_bits=acc_bits))
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    main = int_gemm(c, "W_q", T, K, N, lanes, x_bits, w_bits, acc_bits)
    xa = int_gemm(c, "xA", T, K, rank, lowrank_lanes, x_bits, lr_bits, acc_bits)
    acc_xa = acc_bits or (x_bits + lr_bits + clog2(K))
    c.add("xA_requant", "comparator", acc_xa, 0, 1)
    c.add("xA_requant", "mux2", lr_bits, 0, 1)
    xab = int_gemm(c, "xAB", T, rank, N, lowrank_lanes, lr_bits, lr_bits, acc_bits)
    acc = acc_bits or max(x_bits + w_bits + clog2(K), 2 * lr_bits + clog2(rank))
    c.add("final_add", "int_add", acc, 0, add_lanes)
    c.mem("weights", K * N * w_bits)
    c.mem("lowrank_factors", (K + N) * rank * lr_bits)
    c.mem("activation_buffers", T * (K * x_bits + rank * lr_bits))
    return c.finish(max(main, xa + xab), weights_on_chip, (K * x_bits + N * acc) / 8)
