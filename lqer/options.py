"""Per-method options: one frozen dataclass per method family, each default written once.

A QuantConfig carries the options of its method (``config.options``). In TOML they are a
table named after the method:

    method = "lrc"
    rank = 0.1

    [lrc]
    iterations = 5
    rotation = "none"

Unknown keys are refused with the allowed list; values are checked where they enter.
Switching a config's method (``config.replace(method="gptq")``) keeps the option fields the
two methods share (e.g. ``rotation``) and resets the others to the new method's defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .rotation import ROTATIONS

GPTQ_HESSIANS = ("x", "y", "xy")
LRC_INITS = ("closed_form", "zero")
EIGEN_SOLVERS = ("auto", "eigh", "randomized")
STATS_DTYPES = ("float64", "float32")


def _check_choice(owner, name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _check_int(owner, name, value, lo):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{owner}.{name} must be an integer >= {lo}, got {value!r}")


def _check_nonneg(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class MethodOptions:
    """Base: a method without options."""

    @classmethod
    def from_dict(cls, d: dict | None, method: str = "") -> "MethodOptions":
        d = dict(d or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {method or cls.__name__!r} "
                             f"(allowed: {', '.join(allowed) if allowed else 'none'})")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def converted(self, cls: type["MethodOptions"]) -> "MethodOptions":
        """These options as ``cls``: shared fields kept, the others at ``cls``'s defaults."""
        if type(self) is cls:
            return self
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in self.to_dict().items() if k in names})


@dataclass(frozen=True)
class FPOptions(MethodOptions):
    fp_bits: int = 16  # storage bits counted per weight of the full-precision layer

    def __post_init__(self):
        _check_choice("fp", "fp_bits", self.fp_bits, (16, 32))


@dataclass(frozen=True)
class RotationOptions(MethodOptions):
    """QuaRot-style input rotation (lqer.rotation): W <- W R, x <- x R."""

    rotation: str = "none"
    rotation_seed: int = 0

    def __post_init__(self):
        _check_choice("options", "rotation", self.rotation, ROTATIONS)
        _check_int("options", "rotation_seed", self.rotation_seed, 0)


@dataclass(frozen=True)
class LowRankOptions(RotationOptions):
    """LQER / L2QER / QERA: rank, SVD, factor formats are QuantConfig fields; fp_bits counts
    the storage of full-precision factors."""

    fp_bits: int = 16

    def __post_init__(self):
        super().__post_init__()
        _check_choice("options", "fp_bits", self.fp_bits, (16, 32))


@dataclass(frozen=True)
class LLMIntOptions(MethodOptions):
    """LLM.int8()/int4(): input columns with any |x| > threshold go through FP16."""

    threshold: float = 6.0

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold) or self.threshold <= 0:
            raise ValueError(f"llm_int.threshold must be a finite number > 0, got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))


@dataclass(frozen=True)
class GPTQStepOptions(RotationOptions):
    """The GPTQ solve that GPTQ and LRC's W-step share (lqer.gptq): damping lambda = damp *
    mean(diag H), lazy-update batch width, column order by decreasing diag(H)."""

    damp: float = 0.01
    gptq_block: int = 128
    act_order: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_nonneg("options", "damp", self.damp)
        _check_int("options", "gptq_block", self.gptq_block, 1)
        if not isinstance(self.act_order, bool):
            raise ValueError(f"options.act_order must be true or false, got {self.act_order!r}")


@dataclass(frozen=True)
class GPTQOptions(GPTQStepOptions):
    """GPTQ onto the weight format. gptq_hessian: "x" (classic, Sigma_x), "y" (Sigma_y of the
    quantized inputs) or "xy" (target W Sigma_xy Sigma_y^-1, Hessian Sigma_y)."""

    gptq_hessian: str = "x"

    def __post_init__(self):
        super().__post_init__()
        _check_choice("gptq", "gptq_hessian", self.gptq_hessian, GPTQ_HESSIANS)


def parse_lowrank_format(v):
    """LRC factor precision: None (float32 kept), "fp16", or an mxsim format (object or name)."""
    if v is None or (isinstance(v, str) and v.lower() in ("none", "full", "fp32")):
        return None
    if isinstance(v, str) and v.lower() in ("fp16", "float16"):
        return "fp16"
    from .config import parse_format

    try:
        fmt = parse_format(v)
    except (ValueError, KeyError) as e:
        raise ValueError(f"lrc.lowrank_format must be 'fp16', 'none' or an mxsim format, got {v!r} ({e})") from None
    return fmt


@dataclass(frozen=True)
class LRCOptions(GPTQStepOptions):
    """Low-Rank Correction (lqer.lrc.lrc): iterations of (W-step, UV-step) after ``init``;
    factors U, V in ``lowrank_format`` on the unquantized input; eigen ``solver``.
    ``stats_dtype``: "float64" (default) or "float32" covariances and LRC maths (half the
    memory; what a 7B down_proj needs to stream within one layer + 2 GB: docs/streaming.md)."""

    iterations: int = 1
    init: str = "closed_form"
    lowrank_format: object = "fp16"
    solver: str = "auto"
    stats_dtype: str = "float64"

    def __post_init__(self):
        super().__post_init__()
        _check_int("lrc", "iterations", self.iterations, 1)
        _check_choice("lrc", "init", self.init, LRC_INITS)
        object.__setattr__(self, "lowrank_format", parse_lowrank_format(self.lowrank_format))
        _check_choice("lrc", "solver", self.solver, EIGEN_SOLVERS)
        _check_choice("lrc", "stats_dtype", self.stats_dtype, STATS_DTYPES)
        if self.stats_dtype == "float32" and self.act_order:
            raise ValueError("lrc: act_order needs stats_dtype float64 (the float32 W-step hands GPTQ the "
                             "factor of Sigma_y, which act_order would permute)")

    def to_dict(self) -> dict:
        from .config import format_to_str

        d = super().to_dict()
        lf = self.lowrank_format
        d["lowrank_format"] = "none" if lf is None else lf if isinstance(lf, str) else format_to_str(lf)
        if d["stats_dtype"] == "float64":  # the default is left out: configs (and their caches) as before
            del d["stats_dtype"]
        return d
