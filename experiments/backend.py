"""The one place experiments/ touches lqer, hwmodel and mxsim (thin adapters, no maths here).

Everything that depends on the exact names of the packages' functions lives in this module,
so the report and the sweep read as plain steps. Models, token windows and calibration
statistics are memoised per process (a Dask worker evaluates many points with one load).
"""

from __future__ import annotations

import copy
from functools import lru_cache

from .grid import LOW_RANK, DesignPoint

_MODELS: dict = {}
_WINDOWS: dict = {}
_STATS: dict = {}


# ----------------------------------------------------------------------------- model and data
def get_model(model: str, device: str):
    """(model, tokenizer), loaded once per process and device (lqer caches the dequantized GGUF)."""
    from lqer.model import load_model

    key = (str(model), device)
    if key not in _MODELS:
        _MODELS[key] = load_model(model=model, device=device)
    return _MODELS[key]


def get_windows(tokenizer, seq_len: int, n_windows: int | None, model_key: str = ""):
    """WikiText-2 test windows (n, seq_len); n_windows=None: the whole split."""
    from lqer.data import load_wikitext, token_windows

    key = (model_key, seq_len, n_windows)
    if key not in _WINDOWS:
        _WINDOWS[key] = token_windows(tokenizer, load_wikitext("test"), seq_len, n_windows)
    return _WINDOWS[key]


def perplexity(model, windows, progress: bool = True) -> float:
    from lqer.evaluate import perplexity as ppl

    return float(ppl(model, windows, progress=progress))
