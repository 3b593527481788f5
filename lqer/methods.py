"""Method registry: name -> fn(layer_name, linear: nn.Linear, stats, config) -> module.

``register_method(name, fn, observer=None)``: ``observer`` is the calibration observer factory
the method needs (``observer(name, module)``, or ``observer(name, module, config)`` to be handed
the QuantConfig by quantize_model: activation format, rotation), or None for data-free methods. ``stats`` handed
to ``fn`` is that observer after calibration (shared by q/k/v and gate/up), or None.
Registered here: fp, plain, lqer, l2qer, qera, qera_approx, llm_int8, llm_int4. The LRC
helper registers rtn/gptq/lrc from its own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mxsim
import torch

from .approximate import approximate, rms_scale
from .calibrate import AbsMeanMax, OutlierColumns, SecondMoment
from .linear import QuantLinear
from .llm_int8 import LLMInt8Linear
from .rotation import check_stats_rotation, input_rotation, rotate_weight


@dataclass
class Method:
    name: str
    fn: Callable
    observer: Callable | None = None


METHODS: dict[str, Method] = {}


def register_method(name: str, fn: Callable, observer: Callable | None = None, overwrite: bool = True):
    if not overwrite and name in METHODS:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = Method(name, fn, observer)
    return fn


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _pick(stats, cls):
    """The observer of type ``cls`` (stats may be a MultiObserver holding several)."""
    from .calibrate import MultiObserver

    if isinstance(stats, MultiObserver):
        return next((o for o in stats.observers.values() if isinstance(o, cls)), None)
    return stats


def _bias(linear):
    return None if getattr(linear, "bias", None) is None else linear.bias


def _fp(name, linear, stats, config):
    q = QuantLinear(linear.weight.detach().float(), bias=_bias(linear), x_format=None,
                    fp_bits=int(config.extra.get("fp_bits", 16)), name=name)
    return q


def _rotated_weight(linear, config):
    W = linear.weight.detach().float()
    R = input_rotation(config, W.shape[1])
    return rotate_weight(W, R), R


def _plain(name, linear, stats, config):
    W, R = _rotated_weight(linear, config)
    w_q = mxsim.quantize(W, config.w_format, axis=1)
    return QuantLinear(w_q, bias=_bias(linear), x_format=config.x_format, input_transform=R, name=name)


def _lowrank(name, linear, config, stats=None, **kw):
    W, R = _rotated_weight(linear, config)
    if stats is not None:
        check_stats_rotation(name, stats, R)
    res = approximate(W, w_format=config.w_format, a_format=config.a_format, b_format=config.b_format,
                      rank=config.rank, svd=config.svd, factor_axis=config.factor_axis, **kw)
    q = QuantLinear(res.w_q, bias=_bias(linear), x_format=config.x_format, A=res.A, B=res.B,
                    lowrank_output_format=config.lowrank_output_format, input_transform=R,
                    fp_bits=int(config.extra.get("fp_bits", 16)), name=name)
    q.metrics = dict(res.metrics)
    return q


def _lqer(name, linear, stats, config):
    return _lowrank(name, linear, config)


def _l2qer(name, linear, stats, config):
    stats = _pick(stats, AbsMeanMax)
    if stats is None:
        raise ValueError(f"l2qer needs calibration statistics (AbsMeanMax) for layer {name}")
    return _lowrank(name, linear, config, stats, scale=stats.scale())


def _qera(name, linear, stats, config):
    stats = _pick(stats, SecondMoment)
    if stats is None:
        raise ValueError(f"qera needs calibration statistics (SecondMoment) for layer {name}")
    return _lowrank(name, linear, config, stats, xtx=stats.mean())


def _qera_approx(name, linear, stats, config):
    stats = _pick(stats, SecondMoment)
    if stats is None:
        raise ValueError(f"qera_approx needs calibration statistics (SecondMoment) for layer {name}")
    return _lowrank(name, linear, config, stats, scale=rms_scale(stats.mean()))


def _llm_int(bits):
    def fn(name, linear, stats, config):
        stats = _pick(stats, OutlierColumns)
        thr = float(config.extra.get("threshold", 6.0))
        q = LLMInt8Linear(linear.weight, _bias(linear), bits=bits, threshold=thr,
                          calib_outliers=None if stats is None else stats.count, name=name)
        q.metrics = {"outlier_columns": q.calib_outliers}
        return q

    return fn


def _outlier_observer(name, module):
    return OutlierColumns(threshold=6.0)


register_method("fp", _fp)
register_method("plain", _plain)
register_method("lqer", _lqer)
def _rotation_or_none(config, module):
    return None if config is None else input_rotation(config, module.in_features)


register_method("l2qer", _l2qer, observer=lambda name, mod, config=None: AbsMeanMax(
    transform=_rotation_or_none(config, mod)))
register_method("qera", _qera, observer=lambda name, mod, config=None: SecondMoment(
    transform=_rotation_or_none(config, mod)))
register_method("qera_approx", _qera_approx, observer=lambda name, mod, config=None: SecondMoment(
    transform=_rotation_or_none(config, mod)))
register_method("llm_int8", _llm_int(8), observer=_outlier_observer)
register_method("llm_int4", _llm_int(4), observer=_outlier_observer)
_ = torch
