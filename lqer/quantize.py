"""Whole-model quantization: replace every q/k/v/o and MLP linear layer of every decoder
block (embeddings and LM head untouched), save/load the result in safetensors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mxsim.accumulators import Float
from mxsim.files import atomic_write
from mxsim.formats import NVFP4Format
from mxsim.nvfp4 import NVFP4Tensor
from mxsim.tensor import MXTensor

from .calibrate import conv1d_to_linear, linear_layers, run_calibration
from .config import QuantConfig, format_from_str, format_to_str, load_config
from .datapath import check_config_accumulator, set_accumulator
from .linear import QuantLinear
from .llm_int8 import LLMInt8Linear
from .methods import get_method

FORMAT_VERSION = 1


def _set_module(model, name: str, new: nn.Module):
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def _release_freed_memory():
    """Hand freed heap pages back to the OS (glibc only; elsewhere a no-op). Each replaced
    layer frees its fp32 weight, but glibc keeps freed chunks below its (self-raising) mmap
    threshold in the heap, so without this the process peak grows as if nothing were freed."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def collect_stats(model, config: QuantConfig, calibration_batches, progress=True, batch_size=1) -> dict | None:
    """Run the calibration the config's method needs ({layer: observer}); None if it needs none."""
    method = get_method(config.method)
    if not method.calibrates:
        return None
    if calibration_batches is None:
        raise ValueError(f"method {config.method!r} needs calibration_batches (or precomputed stats)")
    return run_calibration(model, calibration_batches, lambda name, module: method.observer(name, module, config),
                           progress=progress, batch_size=batch_size)


class SharedStats:
    """Calibration statistics for several configs from ONE forward pass: configs whose
    ``Method.stats_key`` agree share one observer per layer. ``for_config(config)`` is the
    {layer: observer} dict ``quantize_model(stats=...)`` takes (None for data-free methods)."""

    def __init__(self, by_key: dict, n_tokens: int = 0):
        self.by_key, self.n_tokens = by_key, n_tokens

    @staticmethod
    def key(config: QuantConfig):
        m = get_method(config.method)
        return (m.observer, m.stats_key(config)) if m.calibrates else None

    def for_config(self, config: QuantConfig) -> dict | None:
        k = self.key(config)
        if k is None:
            return None
        if k not in self.by_key:
            raise ValueError(f"no calibration statistics were collected for method {config.method!r} "
                             f"with these settings ({k[1]}); include its config in collect_shared_stats")
        return self.by_key[k]

    def observers_of(self, kind: type) -> dict | None:
        """The first {layer: observer} dict whose observers are ``kind`` (e.g. OutlierColumns)."""
        for d in self.by_key.values():
            if d and isinstance(next(iter(d.values())), kind):
                return d
        return None


def collect_shared_stats(model, configs, calibration_batches, progress=True, batch_size=1) -> SharedStats:
    """One calibration pass feeding every distinct statistic the ``configs`` need (see SharedStats)."""
    from .calibrate import MultiObserver

    configs = [load_config(c) if not isinstance(c, QuantConfig) else c for c in configs]
    needed = {}
    for c in configs:
        k = SharedStats.key(c)
        if k is not None and k not in needed:
            needed[k] = c
    if not needed:
        return SharedStats({})
    if calibration_batches is None:
        raise ValueError(f"methods {sorted({c.method for c in needed.values()})} need calibration_batches")
    keys = list(needed)

    def factory(name, module):
        return MultiObserver(**{str(i): get_method(needed[k].method).observer(name, module, needed[k])
                                for i, k in enumerate(keys)})

    multi = run_calibration(model, calibration_batches, factory, progress=progress, batch_size=batch_size)
    by_key = {k: {layer: mo[str(i)] for layer, mo in multi.items()} for i, k in enumerate(keys)}
    n = int(calibration_batches.numel()) if isinstance(calibration_batches, torch.Tensor) else 0
    return SharedStats(by_key, n)


def quantize_model(model, config, calibration_batches=None, stats=None, progress=True, layers=None):
    """Replace the decoder's linear layers in place by the method's modules.
    Returns ``(model, info)``; info: per-layer metrics/bits, ``avg_bits_per_weight`` (over the
    replaced layers' weights, exponents and low-rank factors included), timings."""
    config = load_config(config) if not isinstance(config, QuantConfig) else config
    method = get_method(config.method)
    check_config_accumulator(config)  # before any work: the datapath needs MX operands
    conv1d_to_linear(model)  # GPT-2: Conv1D -> nn.Linear, same names (no-op elsewhere)
    t0 = time.perf_counter()
    if stats is None:
        stats = collect_stats(model, config, calibration_batches, progress=progress)
    t_cal = time.perf_counter() - t0
    # Names only: holding the modules would keep every original fp32 weight alive until the
    # end, beside its replacement (that was most of the peak memory).
    names = list(linear_layers(model))
    if layers is not None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: nothing would be quantized (None quantizes every decoder linear)")
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise ValueError(f"layers not among the decoder's linear layers: {unknown[:5]}")
        names = [n for n in names if n in set(layers)]
    t1 = time.perf_counter()
    info = {"config": config.to_dict(), "layers": {}}
    total_bits, total_w = 0, 0
    it = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc=f"quantize {config.method}", unit="layer", leave=False)
    with torch.no_grad():
        for name in it:
            lin = model.get_submodule(name)
            if not isinstance(lin, nn.Linear):
                raise ValueError(f"layer {name} is already quantized ({type(lin).__name__}); load a fresh model")
            st = None if stats is None else stats.get(name)
            if method.calibrates and st is None:
                raise ValueError(f"no calibration statistics for layer {name}")
            # Methods may build their factors on the CPU (numba kernels); the layer must live
            # where the model does.
            new = method.build(name, lin, st, config).to(lin.weight.device)
            _set_module(model, name, new)
            n_w = lin.in_features * lin.out_features
            bits = int(getattr(new, "nbits", n_w * 16))
            total_bits += bits
            total_w += n_w
            info["layers"][name] = {"shape": [lin.out_features, lin.in_features], "bits": bits,
                                    "bits_per_weight": bits / n_w, **getattr(new, "metrics", {})}
            del lin, new
            _release_freed_memory()
    if not isinstance(config.accumulator, Float):
        info["datapath"] = set_accumulator(model, config.accumulator)
    info["avg_bits_per_weight"] = total_bits / total_w if total_w else float("nan")
    info["n_layers"] = len(names)
    info["calibration_s"] = t_cal
    info["quantize_s"] = time.perf_counter() - t1
    return model, info


# ---------------------------------------------------------------- save / load
def _mx_meta(t: MXTensor) -> dict:
    meta = {"fmt": format_to_str(t.fmt), "axis": int(t.axis), "shape": list(t.shape)}
    if getattr(t, "tensor_scale", None) is not None:  # NVFP4 two level: the per-tensor FP32 scale
        meta["tensor_scale"] = float(t.tensor_scale)
    return meta


def _put(tensors, meta, key, t):
    if t is None:
        meta[key] = None
    elif isinstance(t, MXTensor):
        t = t.cpu()  # device (CUDA) codes to host numpy: a layer streamed on CUDA failed to save
        tensors[key + ".codes"] = torch.from_numpy(np.ascontiguousarray(t.codes))
        tensors[key + ".scales"] = torch.from_numpy(np.ascontiguousarray(t.scales))
        meta[key] = {"mx": _mx_meta(t)}
    else:
        tensors[key] = t.detach().contiguous().clone()
        meta[key] = {"dense": True}


def _get(tensors, meta, key):
    m = meta.get(key)
    if m is None:
        return None
    if m.get("dense"):
        return tensors[key]
    mm = m["mx"]
    fmt = format_from_str(mm["fmt"])
    args = (tensors[key + ".codes"].numpy(), tensors[key + ".scales"].numpy(), fmt, mm["axis"], tuple(mm["shape"]))
    kw = dict(src_torch=True, src_dtype=torch.float32, src_device=torch.device("cpu"))
    if isinstance(fmt, NVFP4Format):
        return NVFP4Tensor(*args, **kw, tensor_scale=mm.get("tensor_scale"))
    return MXTensor(*args, **kw)


def save_quantized(model, path, config=None, info=None):
    """Write every QuantLinear/LLMInt8Linear (codes, scales, factors; no SVD needed to load)
    to one safetensors file, atomically (mxsim.files.atomic_write: mode 0666 & ~umask),
    so a failure half-way leaves any previous file at ``path`` intact."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, layers = {}, {}
    for name, mod in model.named_modules():
        if isinstance(mod, QuantLinear):
            meta = {"type": "QuantLinear", "x_format": format_to_str(mod.x_format),
                    "lowrank_output_format": format_to_str(mod.lowrank_output_format),
                    "lowrank_input": mod.lowrank_input, "fp_bits": mod.fp_bits,
                    "in": mod.in_features, "out": mod.out_features}
            _put(tensors, meta, name + ".W", mod.w_mx if mod.w_mx is not None else mod.weight)
            _put(tensors, meta, name + ".A", mod._A_src)
            _put(tensors, meta, name + ".B", mod._B_src)
            _put(tensors, meta, name + ".bias", mod.bias)
            _put(tensors, meta, name + ".input_transform", mod.input_transform)
            layers[name] = meta
        elif isinstance(mod, LLMInt8Linear):
            meta = {"type": "LLMInt8Linear", "bits": mod.bits, "threshold": mod.threshold,
                    "calib_outliers": mod.calib_outliers}
            _put(tensors, meta, name + ".weight_fp16", mod.weight_fp16)
            _put(tensors, meta, name + ".bias", mod.bias)
            layers[name] = meta
    if not layers:
        raise ValueError("model has no quantized layers to save (run quantize_model first)")
    header = {"lqer_format_version": str(FORMAT_VERSION), "layers": json.dumps(layers)}
    if config is not None:
        header["config"] = json.dumps(config.to_dict() if isinstance(config, QuantConfig) else config)
    if info is not None:
        header["info"] = json.dumps(info, default=float)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def _check_saved_width(name, meta, tensors, target, path) -> None:
    """The saved layer has the (out, in) shape of the model's layer it replaces (else a model of
    another width would get wrong-shaped layers that fail only in forward)."""
    if meta["type"] == "QuantLinear":
        shape = (meta["out"], meta["in"])
    else:
        shape = tuple(tensors[name + ".weight_fp16"].shape)
    have = (getattr(target, "out_features", None), getattr(target, "in_features", None))
    if None not in have and tuple(have) != tuple(shape):
        raise ValueError(f"{str(path)!r}: saved layer {name} is {shape[0]} x {shape[1]} (out x in) but the "
                         f"model's is {have[0]} x {have[1]}: it was saved from another model")


def load_quantized(model_or_path, path):
    """Rebuild the quantized layers saved by ``save_quantized`` into ``model_or_path`` (a
    model with the original architecture, or a model path/name for ``load_model``)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"quantized model file {str(path)!r} does not exist")
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
    else:
        from .model import load_model

        model, _ = load_model(model_or_path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {e}") from e
    if "layers" not in header:
        raise ValueError(f"{str(path)!r} is not an lqer quantized model (no 'layers' metadata)")
    layers = json.loads(header["layers"])
    for name, meta in layers.items():
        try:
            target = model.get_submodule(name)
        except AttributeError as e:
            raise ValueError(f"saved layer {name} does not exist in the given model") from e
        _check_saved_width(name, meta, tensors, target, path)
        if meta["type"] == "QuantLinear":
            mod = QuantLinear(_get(tensors, meta, name + ".W"), bias=_get(tensors, meta, name + ".bias"),
                              x_format=format_from_str(meta["x_format"]), A=_get(tensors, meta, name + ".A"),
                              B=_get(tensors, meta, name + ".B"), lowrank_input=meta["lowrank_input"],
                              lowrank_output_format=format_from_str(meta["lowrank_output_format"]),
                              input_transform=_get(tensors, meta, name + ".input_transform"),
                              fp_bits=meta["fp_bits"], name=name)
        elif meta["type"] == "LLMInt8Linear":
            mod = LLMInt8Linear(_get(tensors, meta, name + ".weight_fp16").float(),
                                _get(tensors, meta, name + ".bias"), bits=meta["bits"],
                                threshold=meta["threshold"], calib_outliers=meta["calib_outliers"], name=name)
        else:
            raise ValueError(f"unknown layer type {meta['type']!r} in {str(path)!r}")
        _set_module(model, name, mod)
    return model
