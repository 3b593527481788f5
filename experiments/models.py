"""Models, token windows and perplexity for experiments/, memoised per process (a Dask worker
evaluates many points with one load)."""

from __future__ import annotations

_MODELS: dict = {}
_WINDOWS: dict = {}


def get_model(model: str, device: str):
    """(model, tokenizer), loaded once per process and device (lqer caches the dequantized GGUF)."""
    from lqer.model import load_model
    from mxsim.errors import user_input

    key = (str(model), device)
    if key not in _MODELS:
        with user_input("--model"):  # lqer's ValueErrors here are about the file (unreadable, not a model)
            m, tok = load_model(model=model, device=device)
        m._mxlab_source = (str(model), device)  # lets ``quantized`` reload a fresh copy from the cache
        _MODELS[key] = (m, tok)
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

    # On a GPU one window per forward is launch-bound (the emulated quantizers are many small
    # kernels); 8 windows of equal length per batch give the same sums in another order.
    on_gpu = next(model.parameters()).device.type != "cpu"
    return float(ppl(model, windows, batch_size=8 if on_gpu else 1, progress=progress))


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    import os

    return f"CPU ({os.cpu_count()} cores, torch {torch.__version__})"


def fresh_model(model: str, device: str):
    """A new copy of the model to quantize in place (re-read from lqer's on-disk cache: ~1 s,
    cheaper than deepcopy)."""
    from lqer.model import load_model

    m, _ = load_model(model=model, device=device)
    return m


def selected_layers(model, max_blocks):
    """None (every decoder linear) or the linears of the first ``max_blocks`` decoder blocks
    (for smoke tests: the rest of the model stays in full precision)."""
    if max_blocks is None:
        return None
    import re

    from lqer.calibrate import linear_layers

    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1:
        raise ValueError(f"max_blocks must be a positive integer or None (every block), got {max_blocks!r}")
    out = []
    for n in linear_layers(model):
        m = re.search(r"layers\.(\d+)\.", n)
        if m and int(m.group(1)) < max_blocks:
            out.append(n)
    if not out:
        raise ValueError(f"max_blocks={max_blocks} selects no decoder linear layer (names like 'model.layers.0.*')")
    return out
