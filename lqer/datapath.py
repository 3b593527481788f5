"""Whole models on the real MX datapath: the accumulator of every replaced linear layer,
partial-sum range calibration, the fraction-bit rule and per-layer overflow counts.

* ``set_accumulator(model, acc)``: every QuantLinear computes its MX GEMMs with
  ``mxsim.matmul(..., accumulator=acc)`` (lqer.linear says which GEMMs are MX); all layers are
  checked before any changes. ``quantize_model`` calls it with ``config.accumulator``.
* ``calibrate_partial_sums(model, batches)``: per layer and GEMM, the largest magnitude of the
  accumulator's running sum over the calibration tokens (mxsim.partial_sum_range), i.e. what a
  fixed-point accumulator must hold without saturating.
* The fraction-bit rule (``fraction_bits``): a W-bit two's-complement accumulator with F
  fraction bits holds magnitudes below 2^(W-1-F). The calibrated maximum m needs
  ``int_bits = floor(log2 m) + 1`` bits above the binary point (so m < 2^int_bits), hence

      F = W - 1 - int_bits - headroom      (clamped to F <= W - 1: the sign bit stays)

  ``headroom`` extra integer bits trade precision for margin against tokens larger than the
  calibration's. For m not a power of two, floor(log2 m) + 1 = ceil(log2 m).
* ``count_overflow(model)``: a context in which every FixedPoint GEMM counts the outputs whose
  result differs from the same GEMM on a 64-bit accumulator with the same fraction bits
  (``mxsim.matmul(..., return_overflow=True)``: so a saturated or wrapped output is counted
  exactly when overflow changed it; truncation below the binary point is the same in both and
  not counted; NaN outputs are not counted). ``overflow_table`` reads the counts.
"""

from __future__ import annotations

import contextlib
import math

import pandas as pd
import torch

import mxsim
from mxsim.accumulators import FixedPoint, Float, check_accumulator_fits, parse_accumulator

from .linear import QuantLinear
from .llm_int8 import LLMInt8Linear

GEMMS = ("main", "lowrank_in", "lowrank_out")


def quant_layers(model) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}


def check_config_accumulator(config) -> None:
    """Before any work: an accumulator other than float needs MX operands on the method's main
    GEMM (quantized input and weights) with a FixedPoint wide enough for one block sum."""
    acc = parse_accumulator(getattr(config, "accumulator", Float()), what="accumulator")
    if isinstance(acc, Float):
        return
    from .methods import get_method

    method = get_method(config.method)
    if not method.mx_datapath:
        raise ValueError(f"accumulator {acc} needs MX operands, but method {config.method!r} does not quantize "
                         "both x and W to an MX format; allowed for it: float")
    if config.x_format is None or config.w_format is None:
        raise ValueError(f"accumulator {acc} needs MX operands, but the config's "
                         f"{'x_format' if config.x_format is None else 'w_format'} is none; allowed: float")
    if config.x_format.block_size != config.w_format.block_size:
        raise ValueError(f"accumulator {acc} needs x and W blocks of one size, got {config.x_format.block_size} "
                         f"and {config.w_format.block_size}; allowed: float")
    check_accumulator_fits(acc, config.x_format, config.w_format, where="x_format x w_format")


def set_accumulator(model, accumulator, per_layer: dict | None = None) -> dict:
    """Set ``accumulator`` on every QuantLinear of ``model`` (``per_layer``: ``{layer: {gemm:
    acc}}`` overrides, e.g. from :func:`calibrated_fixed_point`). Every layer is checked
    first, so a refusal changes nothing. Returns ``{layer: layer.datapath()}``."""
    acc = parse_accumulator(accumulator, what="accumulator")
    layers = quant_layers(model)
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(layers))
    if unknown:
        raise ValueError(f"per_layer names layers that are not QuantLinear layers of the model: {unknown[:5]}")
    if not isinstance(acc, Float):
        non_mx = [n for n, m in model.named_modules() if isinstance(m, LLMInt8Linear)]
        if non_mx:
            raise ValueError(f"accumulator {acc} needs MX operands, but {non_mx[0]} is an LLM.int8 layer; "
                             "allowed for it: float")
    # check all layers on throw-away state, then apply
    saved = {n: (m.accumulator, dict(m.accumulators)) for n, m in layers.items()}
    try:
        for n, m in layers.items():
            m.set_accumulator(acc, per_layer.get(n))
    except ValueError:
        for n, (a, per) in saved.items():
            layers[n].accumulator, layers[n].accumulators = a, per
        raise
    return {n: m.datapath() for n, m in layers.items()}


# ---------------------------------------------------------------- calibration
class _RangeHook:
    def __init__(self, layer: QuantLinear):
        self.layer = layer
        self.max = {}

    def __call__(self, module, args):
        (x,) = args
        lay = self.layer
        with torch.no_grad():
            x2 = x.reshape(-1, lay.in_features).to(torch.float32)
            if lay.input_transform is not None:
                x2 = x2 @ lay.input_transform
            ops = lay.gemm_operands()
            for gemm, op in ops.items():
                if gemm == "lowrank_out":
                    # h as the layer computes it now (the float path while calibrating a float model)
                    fmt = lay.x_format if lay.lowrank_input == "quantized" else None
                    src = lay._gemm("lowrank_in", x2, fmt, lay.A.T)
                else:
                    src = x2
                if isinstance(op, str):
                    continue
                a_mx = mxsim.quantize(src.detach(), op[0], axis=-1)  # on the model's device
                r = mxsim.partial_sum_range(a_mx, lay._weight_side(gemm, a_mx.device))
                self.max[gemm] = max(self.max.get(gemm, 0.0), r["max_abs_partial_sum"])


def calibrate_partial_sums(model, batches, progress: bool = False) -> dict:
    """Run ``batches`` (token-id tensors, or the rows of one (n, seq) tensor) through ``model`` and return, per QuantLinear and MX
    GEMM, ``max |running partial sum|`` over every output and block (mxsim.partial_sum_range).
    The model's own forward is unchanged (the layers keep their accumulator); h for the
    low-rank output GEMM is the exact Q(x)·A."""
    layers = quant_layers(model)
    hooks = {n: _RangeHook(m) for n, m in layers.items()}
    handles = [m.register_forward_pre_hook(hooks[n]) for n, m in layers.items()]
    dev = next(model.parameters()).device
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc="partial-sum ranges", unit="batch", leave=False)
    try:
        with torch.no_grad():
            for b in it:
                model(b.reshape(1, -1).to(dev) if b.dim() == 1 else b.to(dev))
    finally:
        for h in handles:
            h.remove()
    return {n: dict(h.max) for n, h in hooks.items()}


def fraction_bits(total_bits: int, max_abs: float, headroom: int = 0) -> int:
    """The module doc's rule: F = W - 1 - (floor(log2 m) + 1) - headroom, at most W - 1."""
    if not (isinstance(max_abs, (int, float)) and math.isfinite(max_abs) and max_abs >= 0):
        raise ValueError(f"max_abs must be a finite number >= 0, got {max_abs!r}")
    if max_abs == 0:
        return total_bits - 1
    int_bits = math.floor(math.log2(max_abs)) + 1
    return min(total_bits - 1, total_bits - 1 - int_bits - int(headroom))


def calibrated_fixed_point(ranges: dict, total_bits: int, overflow: str = "saturate", headroom: int = 0) -> dict:
    """``{layer: {gemm: FixedPoint(total_bits, F, overflow)}}`` with F from :func:`fraction_bits`
    of each GEMM's calibrated range (``ranges`` from :func:`calibrate_partial_sums`)."""
    return {n: {g: FixedPoint(total_bits, fraction_bits(total_bits, m, headroom), overflow) for g, m in r.items()}
            for n, r in ranges.items()}


# ---------------------------------------------------------------- overflow counts
@contextlib.contextmanager
def count_overflow(model):
    """Within the context every FixedPoint GEMM counts its overflowed outputs (module doc);
    counts start at zero and stay readable on the layers afterwards (``overflow_table``)."""
    layers = quant_layers(model)
    for m in layers.values():
        m.overflow_counts = {}
        m.count_overflow = True
    try:
        yield layers
    finally:
        for m in layers.values():
            m.count_overflow = False


def overflow_table(model, ranges: dict | None = None) -> pd.DataFrame:
    """One row per (layer, FixedPoint GEMM): accumulator, outputs, overflowed outputs and their
    fraction, the calibrated range (when given), in the model's layer order."""
    rows = []
    for order, (n, m) in enumerate(quant_layers(model).items()):
        for g, (bad, total) in m.overflow_counts.items():
            acc = m.accumulators.get(g)
            rows.append({"layer": n, "order": order, "gemm": g, "accumulator": str(acc), "outputs": total,
                         "overflowed": bad, "overflow_rate": bad / total if total else float("nan"),
                         "max_abs_partial_sum": (ranges or {}).get(n, {}).get(g, float("nan"))})
    return pd.DataFrame(rows, columns=["layer", "order", "gemm", "accumulator", "outputs", "overflowed",
                                       "overflow_rate", "max_abs_partial_sum"])
