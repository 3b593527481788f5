"""Shared pieces of every design: the layer shape, the counts container, and GEMM-unit builders.

A design turns (layer shape, formats, parallelism) into COUNTS: how many of each component
(``units.COMPONENTS``), memory bits, off-chip bytes per token and cycles. Area comes later,
from a unit-cost table: area = Σ count × unit cost.

Conventions used by all designs
* One GEMM unit with ``lanes`` L takes L reduction (K) elements per cycle: L multipliers, an
  L-input adder tree (L-1 int adders, widths growing one bit per level) and an accumulator.
  It produces one output every ceil(K/L) cycles; cycles = tokens × N × ceil(K/L).
* Weights are streamed from off-chip (batch of ``tokens`` shares one read); they count as
  on-chip memory (and area, via ``sram_bit``) only with ``weights_on_chip=True``.
* Paths of one design run concurrently (dataflow) unless a design says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mxsim import Rank, datapath_widths
from mxsim.accumulators import FP32, FixedPoint, Float, check_accumulator_fits, parse_accumulator

from ..units import UnitCostTable, load_table

MEMORY_KINDS = ("weights", "shared_exponents", "scales", "lowrank_factors", "rotation", "outlier_buffers",
                "activation_buffers")
# stored with the weights (streamed unless weights_on_chip): weights, shared_exponents, scales, lowrank_factors,
# and a dense input rotation matrix R
WEIGHT_KINDS = ("weights", "shared_exponents", "scales", "lowrank_factors", "rotation")


def check_pos_int(name: str, v, minimum: int = 1) -> int:
    """An integer argument (Python or numpy integer, not bool) >= minimum, as a Python int."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def resolve_rank(rank, layer: "Layer") -> int:
    """The integer rank of a low-rank design on ``layer``: an int, a fraction or an mxsim.Rank,
    read as lqer reads it (mxsim.Rank; a fraction is of min(in, out), floored)."""
    try:
        return Rank.of(rank).resolve(layer.in_features, layer.out_features)
    except ValueError as e:
        raise ValueError(f"rank: {e}") from None


def clog2(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


@dataclass(frozen=True)
class Layer:
    """y (tokens × out) = x (tokens × in) · W (in × out)."""

    tokens: int
    in_features: int
    out_features: int
    name: str = "linear"

    def __post_init__(self):
        for name in ("tokens", "in_features", "out_features"):
            object.__setattr__(self, name, check_pos_int(name, getattr(self, name)))


@dataclass
class Counts:
    design: str
    layer: Layer
    params: dict = field(default_factory=dict)
    items: list = field(default_factory=list)  # (path, component, a, b, count)
    memory_bits: dict = field(default_factory=lambda: {k: 0 for k in MEMORY_KINDS})
    on_chip: dict = field(default_factory=lambda: {k: k not in WEIGHT_KINDS for k in MEMORY_KINDS})
    offchip_bytes_per_token: float = 0.0
    cycles: int = 0

    # --- building --------------------------------------------------------------------
    def add(self, path: str, component: str, a: int = 0, b: int = 0, count: float = 1) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count:
            self.items.append((path, component, int(a), int(b), count))

    def adder_tree(self, path: str, k: int, width: int, cap: int | None = None) -> int:
        """k-input adder tree: k-1 int_add, widths growing one bit per level. Returns output width."""
        n, w = k, width
        while n > 1:
            pairs = n // 2
            ww = min(w + 1, cap) if cap else w + 1
            self.add(path, "int_add", ww, 0, pairs)
            n = pairs + (n % 2)
            w = ww
        return w

    def mem(self, kind: str, bits: float) -> None:
        self.memory_bits[kind] += bits

    def finish(self, cycles: int, weights_on_chip: bool = False, act_bytes_per_token: float = 0.0) -> "Counts":
        """Set cycles; off-chip bytes per token = weight-side bits / 8 / tokens (streamed once per
        batch) + activation bytes in and out per token."""
        self.cycles = int(cycles)
        for k in WEIGHT_KINDS:
            self.on_chip[k] = bool(weights_on_chip)
        wbits = 0 if weights_on_chip else sum(self.memory_bits[k] for k in WEIGHT_KINDS)
        self.offchip_bytes_per_token = wbits / 8 / self.layer.tokens + act_bytes_per_token
        return self

    # --- reporting -------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.items, columns=["path", "component", "a", "b", "count"])
        return df.groupby(["path", "component", "a", "b"], as_index=False, sort=False)["count"].sum()

    def breakdown(self, tech="fpga") -> pd.DataFrame:
        """One row per (path, component, a, b): count, unit cost, area, unit, cost source."""
        t: UnitCostTable = load_table(tech)
        df = self.table()
        costs = [t.cost(r.component, r.a, r.b) for r in df.itertuples()]
        df["unit_cost"] = [c for c, _ in costs]
        df["area"] = df["count"] * df["unit_cost"]
        df["unit"] = t.unit
        df["source"] = [s for _, s in costs]
        mem_rows = []
        if (t.rows.component == "sram_bit").any():
            sram, src = t.cost("sram_bit")
        else:  # e.g. a synthesis-calibrated logic table: memory bits are still reported, not costed
            sram, src = 0.0, f"table {t.name!r} has no sram_bit row: memory not costed"
        for k, bits in self.memory_bits.items():
            if bits and self.on_chip.get(k, True):
                mem_rows.append(("memory", "sram_bit", 0, 0, bits, sram, bits * sram, t.unit, f"{k}: {src}"))
        if mem_rows:
            df = pd.concat([df, pd.DataFrame(mem_rows, columns=df.columns)], ignore_index=True)
        df.insert(0, "design", self.design)
        return df

    def multipliers(self) -> dict:
        df = self.table()
        m = df[df.component == "int_mul"].groupby(["a", "b"])["count"].sum()
        return {f"{a}x{b}": c for (a, b), c in m.items()}

    def adders(self) -> dict:
        df = self.table()
        m = df[df.component == "int_add"].groupby("a")["count"].sum()
        return {int(a): c for a, c in m.items()}

    def register_bits(self) -> float:
        df = self.table()
        regs = df[df.component == "register_bit"]["count"].sum()
        accs = (df[df.component == "fixed_acc"]["count"] * df[df.component == "fixed_acc"]["a"]).sum()
        return float(regs + accs)

    def summary(self, tech="fpga") -> dict:
        bd = self.breakdown(tech)
        out = {
            "design": self.design,
            "layer": self.layer.name,
            "tokens": self.layer.tokens,
            "in": self.layer.in_features,
            "out": self.layer.out_features,
            "area": float(bd["area"].sum()),
            "unit": bd["unit"].iloc[0] if len(bd) else "",
            "multipliers": sum(self.multipliers().values()),
            "mul_by_width": ";".join(f"{k}:{v:g}" for k, v in self.multipliers().items()),
            "adders_by_width": ";".join(f"{k}:{v:g}" for k, v in self.adders().items()),
            "fp_units": float(bd[bd.component.str.startswith("fp")]["count"].sum()),
            "register_bits": self.register_bits(),
        }
        for k in MEMORY_KINDS:
            out[f"mem_{k}_bits"] = float(self.memory_bits[k])
        out["on_chip_memory_bits"] = float(sum(v for k, v in self.memory_bits.items() if self.on_chip.get(k, True)))
        out["offchip_bytes_per_token"] = float(self.offchip_bytes_per_token)
        out["cycles"] = int(self.cycles)
        return out


# ------------------------------------------------------------------------------------------
# GEMM-unit builders. Each adds components to ``c`` under ``path`` and returns cycles.
# ------------------------------------------------------------------------------------------
def gemm_cycles(tokens: int, k: int, n: int, lanes: int) -> int:
    return tokens * n * math.ceil(k / lanes)


def int_gemm(c: Counts, path: str, tokens, k, n, lanes, a_bits, b_bits, acc_bits=None) -> int:
    """Fixed-point unit: lanes int_mul(a,b), adder tree from a+b bits, fixed_acc(acc_bits).

    acc_bits default: a + b + ceil(log2 K) (no overflow). A smaller acc_bits truncates the tree
    and accumulator widths (as the paper's HLS designs do)."""
    check_pos_int("lanes", lanes)
    full = a_bits + b_bits + clog2(k)
    acc = full if acc_bits is None else check_pos_int("acc_bits", acc_bits)
    c.add(path, "int_mul", a_bits, b_bits, lanes)
    c.adder_tree(path, lanes, a_bits + b_bits, cap=acc)
    c.add(path, "fixed_acc", acc, 0, 1)
    return gemm_cycles(tokens, k, n, lanes)


def fp16_gemm(c: Counts, path: str, tokens, k, n, lanes, acc="fp16") -> int:
    """FP16 unit: lanes fp16_mul, lanes-1 fp16_add tree, one accumulate add (fp16 or fp32) + register."""
    check_pos_int("lanes", lanes)
    c.add(path, "fp16_mul", 0, 0, lanes)
    c.add(path, "fp16_add", 0, 0, lanes - 1)
    if acc == "fp32":
        c.add(path, "fp32_add", 0, 0, 1)
        c.add(path, "register_bit", 0, 0, 32)
    else:
        c.add(path, "fp16_add", 0, 0, 1)
        c.add(path, "register_bit", 0, 0, 16)
    return gemm_cycles(tokens, k, n, lanes)


def mx_widths(x_fmt, w_fmt, lanes=None) -> dict:
    """The dot-product datapath widths of x_fmt × w_fmt: mxsim.datapath_widths, the one source
    (the RTL and the emulator use the same), for an adder tree over ``lanes`` products
    (default: one block)."""
    return datapath_widths(x_fmt, w_fmt, lanes)


def mx_adder_tree(c: Counts, path: str, n: int, x_fmt, w_fmt) -> int:
    """An n-input tree over x_fmt × w_fmt products (n divides the block size), its level widths
    from mxsim.datapath_widths; returns the sum width."""
    wd = mx_widths(x_fmt, w_fmt, n)
    inputs = n
    for width in wd["adder_tree_widths"]:
        pairs = inputs // 2
        c.add(path, "int_add", width, 0, pairs)
        inputs = pairs + inputs % 2
    return wd["sum_bits"]


def mx_gemm(c: Counts, path: str, tokens, k, n, lanes, x_fmt, w_fmt, acc_bits=None, accumulator=None) -> int:
    """Block-format (MXINT / BlockFP) dot-product unit.

    Per cycle: lanes int_mul of the two integer views and adder trees over each block; every
    width (operands, products, tree levels, exponent adder) is mxsim.datapath_widths'.
    ``accumulator`` (an mxsim accumulator or its spelling) picks what the block sums go into:

    * None / ``exact`` (default): an aligned block-floating accumulator: per block one exp_add of
      the two shared exponents (scale_bits+1 bits), a comparator + exponent subtractor to find
      the shift, an alignment barrel shifter of the block sum into the ``mx_acc_bits``-wide
      accumulator, the new exponent's mux and register. With lanes = g·block (g blocks per
      cycle) there are g of each; with lanes < block the block's integer sum is accumulated over
      block/lanes cycles first (one extra fixed_acc) and the exponent handling happens once per
      block. lanes and block size must divide one another.
    * ``FP32(l)``: the fused FP32 accumulator of mxsim's fp32 semantics: the products are summed
      by trees of l lanes (l = block by default); each tree sum (sum_bits) gets its exponent
      (exp_add), is normalised to a float (leading_one + a sum_bits barrel shifter) and added by
      an fp32_add (its alignment shifter inside) into a 32-bit register; lanes/l such adds are
      chained per cycle (the order is fixed: one rounding per step).
    * ``FixedPoint(W, F, overflow)``: per block one exp_add (E + F, F a constant), a W-bit barrel
      shifter (clog2(W) shift bits) aligning the block sum to the binary point, g aligned sums
      added by a W-bit tree, and a W-bit fixed_acc; "saturate" adds the saturation logic: an
      overflow detect (comparator, W bits) and a clamp mux (mux2, W bits) on the shifted block
      sum and on the accumulator's add; "wrap" needs none. No exponent register."""
    check_pos_int("lanes", lanes)
    bs = x_fmt.block_size
    if w_fmt.block_size != bs:
        raise ValueError(f"block_size: x and w blocks must match for a dot-product unit, got {bs} and {w_fmt.block_size}")
    if lanes % bs and bs % lanes:
        raise ValueError(f"block_size {bs} and lanes {lanes} must divide one another")
    acc_obj = _accumulator(accumulator, x_fmt, w_fmt, path)
    wd = mx_widths(x_fmt, w_fmt)
    nvfp4 = "scale_product_bits" in wd  # E4M3 block scales: they multiply (mxsim contract, NVFP4)
    if isinstance(acc_obj, (FP32, FixedPoint)):
        if nvfp4:
            raise ValueError("accumulator: the NVFP4 unit is modelled with the default aligned accumulator only")
        return _mx_gemm_typed(c, path, tokens, k, n, lanes, x_fmt, w_fmt, acc_obj)
    ea, eb = wd["operand_bits"]
    e = wd["exponent_adder_bits"]
    block_sum = wd["sum_bits"]
    acc = acc_bits or mx_acc_bits(k, x_fmt, w_fmt)
    c.add(path, "int_mul", ea, eb, lanes)
    if lanes >= bs:
        g = lanes // bs
        for _ in range(g):
            mx_adder_tree(c, path, bs, x_fmt, w_fmt)
    else:
        g = 1
        mx_adder_tree(c, path, lanes, x_fmt, w_fmt)
        c.add(path, "fixed_acc", block_sum, 0, 1)  # integer sum of one block over bs/lanes cycles
    if nvfp4:
        # instead of adding two E8M0 exponents: multiply the two E4M3 scales (4x4-bit
        # significand product, 5-bit exponent add below) and the block sum by that product
        c.add(path, "int_mul", *wd["scale_multiplier_bits"], g)
        c.add(path, "int_mul", block_sum, wd["scale_product_bits"], g)
    c.add(path, "exp_add", e, 0, g)  # x exponent + w exponent
    c.add(path, "comparator", e, 0, g)  # which exponent is larger (block vs accumulator)
    c.add(path, "exp_add", e, 0, g)  # exponent difference = shift amount
    c.add(path, "barrel_shifter", acc, clog2(acc), g)  # align block sum / accumulator
    c.add(path, "mux2", e, 0, g)  # new accumulator exponent
    if g > 1:
        c.adder_tree(path, g, acc, cap=acc)
    c.add(path, "fixed_acc", acc, 0, 1)
    c.add(path, "register_bit", 0, 0, e)  # accumulator exponent
    return gemm_cycles(tokens, k, n, lanes)



def _accumulator(accumulator, x_fmt, w_fmt, path):
    """The typed accumulator of a unit (None: the default aligned accumulator), checked to be
    buildable for x_fmt x w_fmt (mxsim.check_accumulator_fits)."""
    if accumulator is None:
        return None
    try:
        acc = parse_accumulator(accumulator, what="accumulator")
        if isinstance(acc, Float):
            raise ValueError("'float' is the fake-quantize emulation, not hardware; price exact, fp32[:lanes] "
                             "or fixed:TOTAL:FRAC")
        check_accumulator_fits(acc, x_fmt, w_fmt, where=f"unit {path}")
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("accumulator") else f"accumulator: {msg}") from None
    return acc


def _mx_gemm_typed(c: Counts, path, tokens, k, n, lanes, x_fmt, w_fmt, acc) -> int:
    bs = x_fmt.block_size
    wd = mx_widths(x_fmt, w_fmt)
    ea, eb = wd["operand_bits"]
    e = wd["exponent_adder_bits"]
    c.add(path, "int_mul", ea, eb, lanes)
    if isinstance(acc, FP32):
        step = acc.lanes_for(bs)
        if lanes % step and step % lanes:
            raise ValueError(f"accumulator {acc}: its step of {step} lanes and the unit's lanes {lanes} must "
                             "divide one another")
        steps = max(1, lanes // step)  # fused fp32 adds per cycle, chained in order
        tree_n = min(step, lanes)
        for _ in range(steps):
            s_bits = mx_adder_tree(c, path, tree_n, x_fmt, w_fmt)
        if tree_n < step:  # the step's integer sum over step/lanes cycles
            s_bits = mx_widths(x_fmt, w_fmt, step)["sum_bits"]
            c.add(path, "fixed_acc", s_bits, 0, 1)
        c.add(path, "exp_add", e, 0, steps)  # x exponent + w exponent
        c.add(path, "leading_one", s_bits, 0, steps)  # int -> float: normalise the step sum
        c.add(path, "barrel_shifter", s_bits, clog2(s_bits), steps)
        c.add(path, "exp_add", e, 0, steps)  # exponent of the normalised sum
        c.add(path, "fp32_add", 0, 0, steps)  # alignment + add + round (RNE), fused
        c.add(path, "register_bit", 0, 0, 32)
        return gemm_cycles(tokens, k, n, lanes)
    W = acc.total_bits
    g = max(1, lanes // bs)
    if lanes >= bs:
        for _ in range(g):
            mx_adder_tree(c, path, bs, x_fmt, w_fmt)
    else:
        mx_adder_tree(c, path, lanes, x_fmt, w_fmt)
        c.add(path, "fixed_acc", wd["sum_bits"], 0, 1)  # integer sum of one block over bs/lanes cycles
    c.add(path, "exp_add", e, 0, g)  # E = x exponent + w exponent (+ F, a constant)
    c.add(path, "barrel_shifter", W, clog2(W), g)  # align the block sum to the binary point
    if g > 1:
        c.adder_tree(path, g, W, cap=W)
    c.add(path, "fixed_acc", W, 0, 1)
    if acc.saturate:
        c.add(path, "comparator", W, 0, g + 1)  # overflow of each shifted sum and of the add
        c.add(path, "mux2", W, 0, g + 1)  # clamp to the largest / smallest code
    return gemm_cycles(tokens, k, n, lanes)


def mx_out_bits(k, x_fmt, w_fmt, accumulator=None) -> int:
    """Width of a unit's result as the output cast reads it: the accumulator's (fixed point: W;
    fp32: its 24-bit significand; default: mx_acc_bits)."""
    acc = None if accumulator is None else parse_accumulator(accumulator, what="accumulator")
    if isinstance(acc, FixedPoint):
        return acc.total_bits
    if isinstance(acc, FP32):
        return 24
    return mx_acc_bits(k, x_fmt, w_fmt)


def mx_acc_bits(k, x_fmt, w_fmt) -> int:
    """Accumulator width of an MX unit: the block sum (mxsim.datapath_widths' sum_bits: product
    bits + log2(block)) + log2(#blocks) + 1 guard bit."""
    bs = x_fmt.block_size
    wd = mx_widths(x_fmt, w_fmt)
    return wd.get("scaled_sum_bits", wd["sum_bits"]) + clog2(max(1, math.ceil(k / bs))) + 1


def mx_cast(c: Counts, path: str, fmt, lanes: int, in_bits: int) -> None:
    """Re-block a stream into ``fmt`` at ``lanes`` elements per cycle: running max of the
    exponents (max_tree over lanes+1 inputs), exponent difference, shift of each element down to
    fmt.element_bits, plus a block buffer of block_size elements."""
    e = fmt.scale_bits
    c.add(path, "max_tree", e, lanes + 1, 1)
    c.add(path, "exp_add", e, 0, lanes)
    c.add(path, "barrel_shifter", in_bits, clog2(in_bits), lanes)
    c.add(path, "register_bit", 0, 0, fmt.block_size * fmt.element_bits + e)


def mx_storage_bits(rows: int, cols: int, fmt) -> tuple[float, float]:
    """(element bits, shared-exponent bits) of a rows × cols tensor in ``fmt`` (blocks padded)."""
    elems = rows * cols
    blocks = rows * math.ceil(cols / fmt.block_size)
    return elems * fmt.element_bits, blocks * fmt.scale_bits


# ------------------------------------------------------------------------------------------
# Online input rotation x <- x·R (QuaRot-style; what lqer.rotation emulates on every linear).
# ------------------------------------------------------------------------------------------
INPUT_ROTATIONS = ("none", "dense", "hadamard")


def check_input_rotation(kind) -> str:
    if kind not in INPUT_ROTATIONS:
        raise ValueError(f"input_rotation must be one of {INPUT_ROTATIONS}, got {kind!r}")
    return kind


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def default_rotation_lanes(kind: str, main_lanes: int) -> int:
    """dense: the main unit's lanes; hadamard: 2 (one butterfly per stage, K/2 cycles per token)."""
    return 2 if kind == "hadamard" else main_lanes


def input_rotation(c: Counts, path: str, tokens: int, k: int, kind: str, lanes: int) -> int:
    """Add an online input rotation x (tokens × k, FP16) <- x·R to ``c``; return its cycles (0 for "none").

    dense:    one FP16 GEMM stage fp16_gemm(tokens, k, k, lanes); R (k × k FP16, k²·16 bits) is stored
              with the weights (memory kind "rotation"); the FP16 input is buffered (tokens·k·16 bits,
              re-read for each of the k outputs). Cycles tokens·k·ceil(k/lanes).
    hadamard: fast Walsh–Hadamard transform, k a power of two, ``lanes`` (a power of two, 2..k)
              elements per cycle: log2(k) stages of lanes/2 butterflies, each an FP16 add and an FP16
              subtract, i.e. log2(k)·lanes fp16_add; stages of stride s >= lanes need a delay line of s
              values: strides lanes, 2·lanes, ..., k/2 sum to k - lanes FP16 values (activation buffer).
              R is the ±1 pattern of the wiring: no storage. The 1/sqrt(k) normalisation is folded into W
              offline (not counted). Cycles tokens·k/lanes."""
    check_input_rotation(kind)
    if kind == "none":
        return 0
    check_pos_int("rotation_lanes", lanes)
    if kind == "dense":
        cyc = fp16_gemm(c, path, tokens, k, k, lanes)
        c.mem("rotation", k * k * 16)
        c.mem("activation_buffers", tokens * k * 16)
        return cyc
    if not _is_pow2(k) or k < 2:
        raise ValueError(f"input_rotation 'hadamard' needs a power-of-two in_features >= 2, got {k}; use 'dense'")
    if not _is_pow2(lanes) or not 2 <= lanes <= k:
        raise ValueError(f"rotation_lanes must be a power of two in 2..{k} for 'hadamard', got {lanes}")
    stages = int(math.log2(k))
    c.add(path, "fp16_add", 0, 0, stages * lanes)
    c.mem("activation_buffers", (k - lanes) * 16)
    return tokens * (k // lanes)


def low_rank_design(design):
    """Mark a design function whose size depends on a low-rank correction's rank (and its
    lanes): hwmodel.designs.LOWRANK_DESIGNS and the CLI's --rank / --lowrank-lanes read it."""
    design.low_rank = True
    return design
