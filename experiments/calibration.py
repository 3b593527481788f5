"""Calibration for experiments/: ONE forward pass feeds every method of a run
(lqer.quantize.collect_shared_stats), and ``quantized`` quantizes the model in place for a
``with`` block and puts the original layers back afterwards."""

from __future__ import annotations

from .configs import make_config
from .models import selected_layers


def calibrate(model, tok, n_samples: int, seq_len: int, seed: int, configs, progress: bool = True):
    """lqer.quantize.SharedStats for the given QuantConfigs (None when none needs statistics)."""
    from lqer.data import calibration_batches
    from lqer.methods import get_method
    from lqer.quantize import collect_shared_stats

    configs = list(configs)
    if not any(get_method(c.method).calibrates for c in configs):
        return None
    batches = calibration_batches(tok, n_samples, seq_len, seed)
    return collect_shared_stats(model, configs, batches, progress=progress)


def stats_for(stats, config):
    """The {layer: observer} dict ``quantize_model`` expects for ``config`` (None if data-free)."""
    from lqer.methods import get_method

    if not get_method(config.method).calibrates:
        return None
    if stats is None:
        raise ValueError(f"method {config.method!r} needs calibration statistics that were not collected")
    return stats.for_config(config)


def outlier_counts(stats) -> dict | None:
    """{layer: LLM.int8() outlier columns} when the run calibrated an LLM.int8() method."""
    from lqer.calibrate import OutlierColumns

    obs = None if stats is None else stats.observers_of(OutlierColumns)
    return None if obs is None else {name: int(o.count) for name, o in obs.items()}


class quantized:
    """``with quantized(model, "W3A8", method="lqer", stats=stats, rank=8) as (qmodel, info)``.

    Quantizes a fresh copy (the fp model stays intact) and frees it on exit."""

    def __init__(self, model, preset, method, stats, rank=None, config=None, progress=True, max_blocks=None,
                 svd=None):
        self.model, self.preset, self.method, self.stats, self.rank = model, preset, method, stats, rank
        self.config, self.progress, self.max_blocks, self.svd = config, progress, max_blocks, svd

    def __enter__(self):
        from lqer.calibrate import linear_layers
        from lqer.quantize import quantize_model

        cfg = self.config if self.config is not None else make_config(self.preset, self.method, self.rank)
        if self.svd:
            cfg = cfg.replace(svd=self.svd)
        layers = selected_layers(self.model, self.max_blocks)
        # quantize the model in place, keeping the original nn.Linear modules so that __exit__
        # puts them back: no copy of the model is needed (lqer only reads their weights)
        self.saved = {n: m for n, m in linear_layers(self.model).items() if layers is None or n in layers}
        try:
            self.qm, self.info = quantize_model(self.model, cfg, stats=stats_for(self.stats, cfg),
                                                progress=self.progress, layers=layers)
        except BaseException:
            self._restore()
            raise
        return self.qm, self.info

    def _restore(self):
        for name, mod in self.saved.items():
            parent, _, leaf = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, leaf, mod)

    def __exit__(self, *exc):
        self._restore()
        self.qm = None
        return False
