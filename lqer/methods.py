"""The method registry: every quantization method is ONE ``Method`` descriptor.

A descriptor holds the method's name, its table label and one-line description, its options
dataclass (lqer.options; the QuantConfig carries an instance), the layer builder
``build(layer_name, linear, stats, config) -> module``, and for methods that calibrate the
observer factory ``observer(layer_name, module, config)`` (always handed the config: the
statistics follow its activation format, rotation and thresholds) with ``stats_key(config)``,
what the statistics depend on (configs with equal keys share one calibration observer).

Registered here: fp, plain, rtn, lqer, l2qer, qera, qera_approx, llm_int8, llm_int4, gptq,
lrc. Each descriptor also names its hardware design, ``hardware(config) -> (hwmodel design name,
params)``: plain data that ``experiments.hardware`` hands to hwmodel (lqer does not import
hwmodel), so a method registered elsewhere brings its own design. ``stats`` handed to ``build`` is the observer after calibration (shared by
q/k/v and gate/up), or None for data-free methods.

What the tables and the report need to know of a method is a descriptor field too
(``full_precision``, ``own_formats``, ``in_default_table``, ``report_required``, ``hw_rotation``,
``hw_accumulator``, ``baseline``, ``rank_figures``, ``color``), and the lists they use are read from
the registry (``table_methods()``, ``required_methods()``, ``baseline_method()``,
``rank_figure_methods()``): no list of method names is
written again outside this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import mxsim
import torch

from .approximate import approximate, rms_scale
from .calibrate import AbsMeanMax, OutlierColumns, SecondMoment
from .linear import QuantLinear
from .llm_int8 import LLMInt8Linear
from .options import (FPOptions, GPTQOptions, LLMIntOptions, LowRankOptions, LRCOptions, MethodOptions,
                      RotationOptions)
from .rotation import check_stats_rotation, input_rotation, rotate_weight


@dataclass(frozen=True)
class Method:
    name: str
    label: str                                   # short, for tables ("QERA-exact")
    description: str                             # one line, for reports
    build: Callable                              # (layer_name, linear, stats, config) -> nn.Module
    options: type[MethodOptions] = MethodOptions
    observer: Callable | None = None             # (layer_name, module, config) -> observer, or None
    stats_key: Callable[..., Hashable] | None = None  # config -> what the statistics depend on
    low_rank: bool = False                       # uses config.rank (and counts low-rank factors)
    label_of: Callable | None = None             # config -> label when options change it ("LRC(5)")
    mx_datapath: bool = True                     # x and W are MX: the GEMMs can run on mxsim.matmul
    hardware: Callable | None = None             # config -> (hwmodel design name, params), see _hw_*
    # what the experiments ask of a method, here so that no list of names is written elsewhere
    full_precision: bool = False                 # keeps the float weights: the unquantized model, counted
                                                 # as config.options.fp_bits per weight
    own_formats: str | None = None               # formats of its own, not the preset's (table text, "fp32"):
                                                 # one model, one table row, for every preset
    in_default_table: bool = False               # a default method of the perplexity table (lqer/mxlab table, report)
    report_required: bool = False                # the report's figures compare against it: it must run
    hw_rotation: bool = True                     # its hardware design takes the config's input rotation
    hw_accumulator: bool = False                 # its hardware design takes the config's MX accumulator
    baseline: bool = False                       # the report's uncorrected quantized reference (the rank
                                                 # figure's dashed line); exactly one method, report_required
    color: str | None = None                     # matplotlib colour of its lines and points in the figures
                                                 # (None: matplotlib's next colour)
    rank_figures: bool = False                   # one of the low-rank corrections the report's paper figures
                                                 # compare: swept over rank (Fig. 3) and drawn per layer
                                                 # (Fig. 4); needs low_rank and report_required

    def __post_init__(self):
        if (self.observer is None) != (self.stats_key is None):
            raise ValueError(f"method {self.name!r}: give both observer and stats_key, or neither")
        if self.own_formats is not None and (not isinstance(self.own_formats, str) or not self.own_formats):
            raise ValueError(f"method {self.name!r}: own_formats must be a non-empty string or None, "
                             f"got {self.own_formats!r}")
        if self.report_required and not self.in_default_table:
            # the report's default methods must satisfy its own check
            raise ValueError(f"method {self.name!r}: report_required needs in_default_table")
        if self.baseline and (not self.report_required or self.full_precision):
            # the report reads the baseline's perplexity from its own table
            raise ValueError(f"method {self.name!r}: baseline needs report_required and a quantized model")
        if self.rank_figures and not (self.low_rank and self.report_required):
            # the rank sweep varies config.rank; the per-layer figure reads the table's runs of it
            raise ValueError(f"method {self.name!r}: rank_figures needs low_rank and report_required")

    @property
    def calibrates(self) -> bool:
        return self.observer is not None

    def table_label(self, config=None) -> str:
        return self.label_of(config) if (self.label_of is not None and config is not None) else self.label


METHODS: dict[str, Method] = {}


def register_method(method: Method, overwrite: bool = False) -> Method:
    if not isinstance(method, Method):
        raise ValueError(f"register_method takes a lqer.methods.Method descriptor, got {type(method).__name__}")
    if not overwrite and method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if isinstance(name, Method):
        return name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    return list(METHODS)


def table_methods() -> list[str]:
    """The perplexity table's default methods (``in_default_table``), in registration order."""
    return [n for n, m in METHODS.items() if m.in_default_table]


def required_methods() -> list[str]:
    """The methods the report cannot do without (``report_required``), in registration order."""
    return [n for n, m in METHODS.items() if m.report_required]


def rank_figure_methods() -> list[str]:
    """The low-rank corrections of the report's rank-sweep and per-layer figures (``rank_figures``),
    in registration order."""
    return [n for n, m in METHODS.items() if m.rank_figures]


def baseline_method() -> str:
    """The report's uncorrected quantized reference (the one ``baseline`` method)."""
    names = [n for n, m in METHODS.items() if m.baseline]
    if len(names) != 1:
        raise ValueError(f"exactly one registered method must have baseline=True, got {names or 'none'}")
    return names[0]


# ----------------------------------------------------------------------------- helpers
def _bias(linear):
    return None if getattr(linear, "bias", None) is None else linear.bias


def _rotation_key(config):
    o = config.options
    return (o.rotation, o.rotation_seed) if isinstance(o, RotationOptions) else ("none", 0)


def _rotated_weight(linear, config):
    W = linear.weight.detach().float()
    R = input_rotation(config, W.shape[1])
    return rotate_weight(W, R), R


# ----------------------------------------------------------------------------- fp / plain
def _fp(name, linear, stats, config):
    return QuantLinear(linear.weight.detach().float(), bias=_bias(linear), x_format=None,
                       fp_bits=config.options.fp_bits, name=name)


def _plain(name, linear, stats, config):
    W, R = _rotated_weight(linear, config)
    w_q = mxsim.quantize(W, config.w_format, axis=1)
    return QuantLinear(w_q, bias=_bias(linear), x_format=config.x_format, input_transform=R, name=name)


# ----------------------------------------------------------------------------- LQER family
def _lowrank(name, linear, config, stats=None, **kw):
    W, R = _rotated_weight(linear, config)
    if stats is not None:
        check_stats_rotation(name, stats, R)
    rank = config.rank.resolve(linear.in_features, linear.out_features)
    res = approximate(W, w_format=config.w_format, a_format=config.a_format, b_format=config.b_format,
                      rank=rank, svd=config.svd, factor_axis=config.factor_axis, **kw)
    q = QuantLinear(res.w_q, bias=_bias(linear), x_format=config.x_format, A=res.A, B=res.B,
                    lowrank_output_format=config.lowrank_output_format, input_transform=R,
                    fp_bits=config.options.fp_bits, name=name)
    q.metrics = dict(res.metrics)
    return q


def _unwrap(stats, cls):
    """The ``cls`` observer inside a MultiObserver (e.g. one calibration pass for several
    methods), else ``stats`` itself."""
    from .calibrate import MultiObserver

    if isinstance(stats, MultiObserver):
        return next((o for o in stats.observers.values() if isinstance(o, cls)), stats)
    return stats


def _need(stats, cls, method, name):
    stats = _unwrap(stats, cls)
    if not isinstance(stats, cls):
        got = "none" if stats is None else type(stats).__name__
        raise ValueError(f"{method} needs calibration statistics ({cls.__name__}) for layer {name}, got {got}")
    return stats


def _lqer(name, linear, stats, config):
    return _lowrank(name, linear, config)


def _l2qer(name, linear, stats, config):
    stats = _need(stats, AbsMeanMax, "l2qer", name)
    return _lowrank(name, linear, config, stats, scale=stats.scale())


def _qera(name, linear, stats, config):
    stats = _need(stats, SecondMoment, "qera", name)
    return _lowrank(name, linear, config, stats, xtx=stats.mean())


def _qera_approx(name, linear, stats, config):
    stats = _need(stats, SecondMoment, "qera_approx", name)
    return _lowrank(name, linear, config, stats, scale=rms_scale(stats.mean()))


def _abs_observer(name, module, config):
    return AbsMeanMax(transform=input_rotation(config, module.in_features))


def _xtx_observer(name, module, config):
    return SecondMoment(transform=input_rotation(config, module.in_features))


# ----------------------------------------------------------------------------- LLM.int8()
def _llm_int(bits):
    def build(name, linear, stats, config):
        if stats is not None:
            stats = _need(stats, OutlierColumns, f"llm_int{bits}", name)
        q = LLMInt8Linear(linear.weight, _bias(linear), bits=bits, threshold=config.options.threshold,
                          calib_outliers=None if stats is None else stats.count, name=name)
        q.metrics = {"outlier_columns": q.calib_outliers}
        return q

    return build


def _outlier_observer(name, module, config):
    return OutlierColumns(threshold=config.options.threshold)


# ----------------------------------------------------------------------------- GPTQ / LRC
def _cov_observer(name, module, config):
    from .covariance import CovarianceObserver

    if config.x_format is None:
        raise ValueError(f"{config.method} statistics need an activation format (config.x_format is none)")
    f32 = getattr(config.options, "stats_dtype", "float64") == "float32"
    return CovarianceObserver(config.x_format, transform=input_rotation(config, module.in_features),
                              dtype=torch.float32 if f32 else torch.float64)


def _cov_stats(name, stats, config, d_in):
    from .covariance import CovarianceObserver, CovarianceStats

    if stats is None:
        raise ValueError(f"{name}: no calibration statistics (CovarianceObserver) for this layer")
    stats = _unwrap(stats, CovarianceObserver)
    st = stats.result() if isinstance(stats, CovarianceObserver) else stats
    if not isinstance(st, CovarianceStats):
        raise ValueError(f"{name}: {config.method} needs CovarianceObserver/CovarianceStats, got {type(stats).__name__}")
    if config.x_format is not None and st.a_format is not None and st.a_format != config.x_format:
        raise ValueError(f"{name}: statistics collected with activation format {st.a_format}, config has "
                         f"{config.x_format}; recollect them for this config (lqer.quantize.collect_stats)")
    R = input_rotation(config, d_in)
    check_stats_rotation(name, stats, R)
    st.check(d_in=d_in, name=name)
    return st, R


def _gptq(name, linear, stats, config):
    from .gptq import gptq

    o = config.options
    W = linear.weight.detach()
    st, R = _cov_stats(name, stats, config, W.shape[1])
    Wr = rotate_weight(W.to(st.sx.device, torch.float64), R)
    kw = dict(damp=float(o.damp), block=o.gptq_block, act_order=o.act_order)
    if o.gptq_hessian == "x":     # classic GPTQ: ||(W - W_q) X||, Hessian of the unquantized inputs
        Wq = gptq(Wr, st.sx, config.w_format, **kw)
    elif o.gptq_hessian == "y":   # Hessian of the quantized inputs, target W
        Wq = gptq(Wr, st.sy, config.w_format, **kw)
    else:                         # ||W X - W_q Y||: target W Sxy Sy^-1, Hessian Sy (LRC's W-step, U = V = 0)
        lam = o.damp * torch.diagonal(st.sy).mean()
        Syl = st.sy + lam * torch.eye(st.d_in, dtype=st.sy.dtype, device=st.sy.device)
        T = torch.linalg.solve(Syl, (Wr @ st.sxy).T).T
        Wq = gptq(Wr, st.sy, config.w_format, target=T, **kw)
    wq = mxsim.quantize(Wq.float().cpu(), config.w_format, axis=1)
    return QuantLinear(wq, bias=_bias(linear), x_format=config.x_format, input_transform=R, name=name)


def _lrc(name, linear, stats, config):
    from .lrc import lrc

    o = config.options
    W = linear.weight.detach()
    st, R = _cov_stats(name, stats, config, W.shape[1])
    Wr = rotate_weight(W.to(st.sx.device, st.sx.dtype), R)  # float64, or float32 with float32 statistics
    lrf = o.lowrank_format
    res = lrc(Wr, st, w_format=config.w_format, a_format=config.x_format, rank=config.rank,
              iterations=o.iterations, init=o.init, damp=float(o.damp), lowrank_format=lrf,
              gptq_block=o.gptq_block, act_order=o.act_order, solver=o.solver, name=name)
    wq = mxsim.quantize(res.weight.float().cpu(), config.w_format, axis=1)
    U, V = res.U.float().cpu(), res.V.float().cpu()
    if lrf is None or lrf == "fp16":
        A, B, fp_bits = V, U.T.contiguous(), (32 if lrf is None else 16)
    else:
        A, B, fp_bits = mxsim.quantize(V, lrf, axis=0), mxsim.quantize(U.T.contiguous(), lrf, axis=0), 16
    q = QuantLinear(wq, bias=_bias(linear), x_format=config.x_format, A=A, B=B, lowrank_input="unquantized",
                    lowrank_output_format=None, input_transform=R, fp_bits=fp_bits, name=name)
    q.metrics = {"rank": res.rank, "lrc_losses": res.losses, "lrc_seconds": res.seconds}
    return q


_HESSIAN_LABEL = {"x": "Σx", "y": "Σy", "xy": "Σxy"}


# ----------------------------------------------------------------------------- hardware designs
# (hwmodel design name, params) of each method's datapath; formats as their mxsim spellings, the
# rank as the config's mxsim.Rank (hwmodel resolves it per layer as lqer does)
def _hw_fp16(config):
    return "fp16", {}


def _hw_mxint(config):
    """plain/RTN, and GPTQ: it changes the weights' values, not the datapath."""
    return "mxint", {"w_fmt": mxsim.format_to_str(config.w_format), "x_fmt": mxsim.format_to_str(config.x_format)}


def _hw_lqer_mxint(config):
    """LQER/L2QER/QERA: one datapath (L2QER's scale is folded into A), factors in a_format blocked
    along ``factor_axis``, x·A re-quantized into x's format."""
    return "lqer-mxint", {**_hw_mxint(config)[1], "lr_fmt": mxsim.format_to_str(config.a_format),
                          "rank": config.rank, "lr_block_axis": config.factor_axis}


def _hw_lrc(config):
    """LRC(i): FP16 factors on the unquantized x; any number of iterations is the same hardware."""
    return "lrc", {**_hw_mxint(config)[1], "rank": config.rank}


def _hw_llm_int(bits):
    return lambda config: (f"llm.int{bits}", {})


# ----------------------------------------------------------------------------- the registry
# The report's table (in_default_table) runs fp, plain, LQER, L2QER, QERA-exact and LLM.int8(); its
# figures need the first four (report_required); LQER and L2QER are the corrections its rank and
# per-layer figures compare, as the paper's Fig. 3 and 4 do (rank_figures). hw_rotation: hwmodel's fp16 and llm.int* designs
# have no input-rotation stage; hw_accumulator: only its MX units (mxint, lqer-mxint) take one.
# baseline: plain MXINT is what the low-rank corrections are measured against.
_TABLE = dict(in_default_table=True)
_REQUIRED = dict(in_default_table=True, report_required=True)
_MX_ACC = dict(hw_accumulator=True)
for _m in (
    Method("fp", "FP", "full precision (dequantized GGUF, run in fp32, counted as 16-bit)", _fp, FPOptions,
           mx_datapath=False, hardware=_hw_fp16, full_precision=True, own_formats="fp32", hw_rotation=False,
           color="black", **_REQUIRED),
    Method("plain", "plain MXINT", "plain MXINT (no correction)", _plain, RotationOptions, hardware=_hw_mxint,
           baseline=True, color="tab:gray", **_MX_ACC, **_REQUIRED),
    Method("rtn", "RTN", "RTN (W and x round to nearest; plain MXINT)", _plain, RotationOptions,
           hardware=_hw_mxint, color="tab:olive", **_MX_ACC),
    Method("lqer", "LQER", "LQER (plain SVD)", _lqer, LowRankOptions, low_rank=True,
           hardware=_hw_lqer_mxint, color="tab:blue", rank_figures=True, **_MX_ACC, **_REQUIRED),
    Method("l2qer", "L2QER", "L2QER (activation-scaled SVD)", _l2qer, LowRankOptions, _abs_observer,
           lambda c: ("abs_mean_max", _rotation_key(c)), low_rank=True, hardware=_hw_lqer_mxint,
           color="tab:red", rank_figures=True, **_MX_ACC, **_REQUIRED),
    Method("qera", "QERA-exact", "QERA (closed form, full activation 2nd moment)", _qera, LowRankOptions,
           _xtx_observer, lambda c: ("second_moment", _rotation_key(c)), low_rank=True,
           hardware=_hw_lqer_mxint, color="tab:green", **_MX_ACC, **_TABLE),
    Method("qera_approx", "QERA-approx", "QERA-approx (RMS scale)", _qera_approx, LowRankOptions,
           _xtx_observer, lambda c: ("second_moment", _rotation_key(c)), low_rank=True,
           hardware=_hw_lqer_mxint, **_MX_ACC),
    Method("llm_int8", "LLM.int8()", "LLM.int8()-style (columns with any abs(x) > threshold (6 by default) in FP16, rest int8)",
           _llm_int(8), LLMIntOptions, _outlier_observer, lambda c: ("outliers", c.options.threshold), mx_datapath=False,
           hardware=_hw_llm_int(8), own_formats="int8 + fp16 outliers", hw_rotation=False, color="tab:purple",
           **_TABLE),
    Method("llm_int4", "LLM.int4()", "LLM.int4()-style (columns with any abs(x) > threshold in FP16, rest int4)",
           _llm_int(4), LLMIntOptions, _outlier_observer, lambda c: ("outliers", c.options.threshold), mx_datapath=False,
           hardware=_hw_llm_int(4), own_formats="int4 + fp16 outliers", hw_rotation=False),
    Method("gptq", "GPTQ (Σx)", "GPTQ weights, x round to nearest", _gptq, GPTQOptions, _cov_observer,
           lambda c: ("covariance", c.x_format, _rotation_key(c)),
           label_of=lambda c: f"GPTQ ({_HESSIAN_LABEL[c.options.gptq_hessian]})", hardware=_hw_mxint,
           color="tab:brown", **_MX_ACC),
    Method("lrc", "LRC", "LRC (Low-Rank Correction, FP16 factors on the unquantized input)", _lrc, LRCOptions,
           _cov_observer, lambda c: ("covariance", c.x_format, _rotation_key(c))
           + (("float32",) if c.options.stats_dtype == "float32" else ()), low_rank=True,
           label_of=lambda c: f"LRC({c.options.iterations})", hardware=_hw_lrc, color="tab:orange"),
):
    register_method(_m)
del _m, _TABLE, _REQUIRED, _MX_ACC
