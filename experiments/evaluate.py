"""One sweep point: perplexity, bits per weight and hwmodel area (runs inside a Dask worker).
Calibration statistics are memoised per process and per calibration setting."""

from __future__ import annotations

from .calibration import calibrate, outlier_counts, quantized
from .configs import point_config
from .grid import DesignPoint
from .hardware import config_area, sweep_shape
from .models import get_model, get_windows, perplexity

_STATS: dict = {}


def evaluate_point(p: DesignPoint, settings: dict) -> dict:
    """Perplexity, bits per weight and area of one design point."""
    from lqer.methods import get_method
    from lqer.quantize import SharedStats

    from .util import resolve_device

    device = resolve_device(settings.get("device") or "auto")
    model, tok = get_model(settings["model"], device)
    windows = get_windows(tok, settings["seq_len"], settings["windows"], settings["model"])
    shape = sweep_shape(settings, model)  # the swept model's own shape unless hw_shape names one
    cfg = point_config(p, settings.get("factor_axis"))
    full_precision = get_method(p.method).full_precision
    if settings.get("svd") and not full_precision:
        cfg = cfg.replace(svd=settings["svd"])
    outliers = None
    if full_precision:  # the unquantized model, counted as its config's fp_bits per weight
        ppl, bits = perplexity(model, windows, progress=False), float(cfg.options.fp_bits)
    else:
        skey = (settings["model"], device, settings["calib_samples"], settings["calib_seq_len"], settings["seed"],
                SharedStats.key(cfg))
        if skey not in _STATS:
            _STATS[skey] = calibrate(model, tok, settings["calib_samples"], settings["calib_seq_len"],
                                     settings["seed"], [cfg], progress=False)
        stats = _STATS[skey]
        outliers = outlier_counts(stats)
        with quantized(model, None, p.method, stats, config=cfg, progress=False,
                       max_blocks=settings.get("max_blocks")) as (qm, info):
            ppl = perplexity(qm, windows, progress=False)
        bits = float(info["avg_bits_per_weight"])
    area, unit = config_area(cfg, shape, settings.get("tech", "fpga"), outliers)
    return {"perplexity": ppl, "bits_per_weight": bits, "area": area, "area_unit": unit,
            "hw_shape": shape if isinstance(shape, str) else shape.name, "device": device,
            "tokens": int(windows.numel())}
