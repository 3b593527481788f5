"""Models larger than memory: quantize and evaluate one decoder layer at a time.

``quantize_streaming(model, config, calibration_batches, out_dir)`` reads the checkpoint
lazily (lqer.checkpoint: sharded safetensors or GGUF), never holding more than the embedding
(only while the calibration batches are embedded), one decoder layer and the calibration
activations:

1. The calibration batches are embedded; the inputs of decoder layer 0 (hidden states and
   the keyword arguments the model hands its layers: rotary cos/sin, mask, positions) are
   captured by running the model up to its first layer, so every layer is later called
   exactly as the whole model calls it.
2. For each layer l: read its weights (disk -> ``device``), collect the method's statistics
   with forward pre-hooks on its linear layers (q/k/v and gate/up share one observer, as in
   ``lqer.calibrate.run_calibration``), quantize every linear layer with the method's
   per-layer function (``get_method(config.method).build(name, linear, stats, config)``), write
   the layer's file, carry the activations on to layer l + 1, drop the layer.
3. The head is never needed for quantization; ``perplexity_streaming`` streams the same way
   and reads the final norm and LM head last.

Calibration input of layer l (``calibration_input``):

* ``"fp_prefix"`` (default): the activations of the full-precision model. Statistics are
  those ``run_calibration`` collects on the whole model, which is what LQER, L2QER and QERA
  (and lqer's LRC/GPTQ today) calibrate on; with the same dtype the quantized layers are
  bit-identical to ``quantize_model``'s.
* ``"quantized_prefix"``: the activations of the model quantized so far, GPTQ's sequential
  mode: every earlier layer AND the earlier groups of the same layer (q/k/v, then o_proj, then
  gate/up, then down_proj) are already the quantized modules when a group's input is
  observed. One forward per group (stopped right after the observed input) plus one through
  the quantized layer: about 3x the compute of "fp_prefix".

Output directory: ``layer-NNNNN.safetensors`` per decoder layer (the format of
``save_quantized``, holding that layer's quantized modules), ``carry.safetensors`` (the
activations entering the next layer, for resuming) and ``manifest.json`` (settings,
checkpoint fingerprint, finished layers with sizes and metrics). Every file is written to a
temp file in the same directory and renamed, and the manifest is rewritten only after the
layer's file is complete, so a run killed or failing at any point (disk full included)
leaves the finished layers intact and nothing half-written; re-running the same call
resumes at the first unfinished layer. A directory made with other settings is refused.

Dtype: ``dtype="auto"`` computes in the checkpoint's stored dtype (bf16 stays bf16): layer
forwards (norms, attention, the full-precision linears) run in that dtype and activations
are carried in it. The quantization maths is the method's own: plain / LQER / L2QER cast W
to fp32 (mxsim quantization, SVD, L2QER's scale in fp32); QERA's second moment and square
root in float64; GPTQ / LRC covariances, Cholesky factors and eigensolvers in float64;
QuantLinear computes in fp32 and returns the input's dtype.

Architectures: the Llama family as transformers builds it (``model.embed_tokens``,
``model.layers``, ``model.rotary_emb``, ``model.norm``, ``lm_head``; SmolLM2 is Llama).
Another architecture needs its entry in ``ARCHITECTURES``: the modules before and after the
blocks (OPT: embed_tokens + embed_positions, final_layer_norm; GPT-2: wte + wpe, ln_f, and
its Conv1D layers turned into nn.Linear per layer) and a test against the whole-model path;
the layer-input capture already handles other keyword arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mxsim.errors import UserError
from mxsim.files import atomic_write, write_text

from .calibrate import input_groups
from .checkpoint import open_checkpoint
from .config import QuantConfig, load_config
from .methods import get_method

CALIBRATION_INPUTS = ("fp_prefix", "quantized_prefix")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MANIFEST = "manifest.json"
CARRY = "carry.safetensors"
STREAM_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Architecture:
    blocks: str         # the ModuleList of decoder layers
    before: tuple       # modules read from the checkpoint before the first layer
    after: tuple        # modules read after the last layer (the head)
    rotary: str | None  # a module rebuilt from the config (its tables are not in the file)


_LLAMA = Architecture("model.layers", ("model.embed_tokens",), ("model.norm", "lm_head"), "model.rotary_emb")
ARCHITECTURES = {"llama": _LLAMA}


def _layer_file(i: int) -> str:
    return f"layer-{i:05d}.safetensors"


class _Stop(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward is skipped."""


def _resolve_dtype(dtype, ckpt):
    if dtype in (None, "auto"):
        return ckpt.stored_dtype()
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise UserError(f"dtype must be 'auto' or one of {', '.join(DTYPES)}, got {dtype!r}")


class StreamedModel:
    """A causal LM on disk, materialized piece by piece on ``device`` in ``dtype``.

    The model is built from its config on the meta device (no memory); ``layer(i)`` returns a
    real copy of decoder layer i with its weights read from the checkpoint, ``embed`` and
    ``logits`` materialize the embedding and the head only while they run."""

    def __init__(self, model, dtype="auto", device="cpu"):
        from transformers import AutoModelForCausalLM

        self.ckpt = model if hasattr(model, "read") else open_checkpoint(model)
        cfg = self.ckpt.config
        self.arch = ARCHITECTURES.get(getattr(cfg, "model_type", None))
        if self.arch is None:
            raise UserError(f"streaming does not support model_type {getattr(cfg, 'model_type', None)!r} "
                             f"(supported: {', '.join(sorted(ARCHITECTURES))}); lqer.quantize_model loads "
                             f"OPT and GPT-2 whole")
        self.dtype = _resolve_dtype(dtype, self.ckpt)
        self.device = torch.device(device)
        with torch.device("meta"):
            self.skeleton = AutoModelForCausalLM.from_config(cfg, dtype=self.dtype)
        self.skeleton.eval()
        self.blocks = self.skeleton.get_submodule(self.arch.blocks)
        self.n_layers = len(self.blocks)
        self._meta_layers = list(self.blocks)
        self._check_shapes()

    # ------------------------------------------------------------ reading
    def _source(self, key: str) -> str:
        """The checkpoint name of parameter ``key`` (the tied LM head reads the embedding)."""
        if not self.ckpt.has(key) and key == "lm_head.weight" and getattr(self.ckpt.config, "tie_word_embeddings", False):
            return self.arch.before[0] + ".weight"
        return key

    def _check_shapes(self):
        """Every tensor the config's model needs is in the checkpoint with its shape (before any work)."""
        missing, wrong = [], []
        for key, t in self.skeleton.state_dict().items():
            src = self._source(key)
            if not self.ckpt.has(src):
                missing.append(key)
            elif tuple(self.ckpt.shape(src)) != tuple(t.shape):
                wrong.append(f"{key}: checkpoint {list(self.ckpt.shape(src))}, config wants {list(t.shape)}")
        if missing:
            raise UserError(f"checkpoint {str(self.ckpt.path)!r} lacks tensors its config needs: {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''} ({len(missing)} in all)")
        if wrong:
            raise UserError(f"checkpoint {str(self.ckpt.path)!r} has tensors of the wrong shape for its config: "
                             f"{wrong[:3]}{' ...' if len(wrong) > 3 else ''}")

    def materialize(self, name: str, module: nn.Module, skip=()) -> nn.Module:
        """A real copy of the meta ``module`` (full name ``name``) with weights from disk.
        Parameters under ``skip`` (module names relative to ``module``) stay on meta."""
        real = copy.deepcopy(module)
        sd = {}
        for key in module.state_dict():
            if any(key.startswith(s + ".") for s in skip):
                continue
            sd[key] = self.ckpt.read(self._source(f"{name}.{key}" if name else key), self.dtype).to(self.device)
        real.load_state_dict(sd, strict=False, assign=True)
        return real

    def layer(self, i: int, skip=()) -> nn.Module:
        return self.materialize(f"{self.arch.blocks}.{i}", self._meta_layers[i], skip)

    def set_layer(self, i: int, module: nn.Module | None):
        """Put ``module`` at position i of the skeleton (None: back to the meta layer)."""
        self.blocks[i] = self._meta_layers[i] if module is None else module

    def _rotary(self):
        rot = self.skeleton.get_submodule(self.arch.rotary)
        with torch.device(self.device):
            new = type(rot)(config=self.ckpt.config)
        return new.to(self.device)

    # ------------------------------------------------------------ running
    @torch.no_grad()
    def embed(self, batches):
        """[(hidden states, layer kwargs)] per batch: the inputs the model gives layer 0."""
        parent_name, _, leaf = self.arch.blocks.rpartition(".")
        saved = {}
        for name in self.arch.before + ((self.arch.rotary,) if self.arch.rotary else ()):
            mod = self.skeleton.get_submodule(name)
            saved[name] = mod
            new = self._rotary() if name == self.arch.rotary else self.materialize(name, mod)
            _set_module(self.skeleton, name, new)
        captured = []

        class Catcher(nn.Module):
            def forward(self, hidden_states, *args, **kwargs):
                if args:
                    raise UserError("the model passes positional arguments to its layers; unsupported")
                kwargs = {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values", "past_key_value")}
                kwargs["use_cache"] = False
                captured.append((hidden_states, kwargs))
                raise _Stop

        first = self.blocks[0]
        self.blocks[0] = Catcher()
        try:
            for ids in batches:
                try:
                    self.skeleton(input_ids=ids.to(self.device), use_cache=False)
                except _Stop:
                    pass
        finally:
            self.blocks[0] = first
            for name, mod in saved.items():
                _set_module(self.skeleton, name, mod)
        return captured

    @torch.no_grad()
    def logits_fn(self):
        """A function hidden states -> logits (float32) with the final norm and head materialized."""
        mods = [self.materialize(n, self.skeleton.get_submodule(n)) for n in self.arch.after]

        def f(h):
            for m in mods:
                h = m(h)
            return h.float()

        return f


def _set_module(root, name, new):
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _run_layer(layer, h, kwargs):
    out = layer(h, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _linears(layer) -> list[str]:
    from .linear import QuantLinear

    names = [n for n, m in layer.named_modules() if n and isinstance(m, (nn.Linear, QuantLinear))]
    if not names:
        raise UserError(f"decoder layer {type(layer).__name__} has no nn.Linear layers")
    return names


def _batches_list(batches):
    if isinstance(batches, torch.Tensor):
        if batches.dim() == 1:
            batches = batches[None]
        if batches.dim() != 2 or batches.shape[0] < 1:
            raise UserError("calibration_batches must be a LongTensor (n, seq_len) with n >= 1")
        return [batches[i: i + 1] for i in range(batches.shape[0])]
    out = list(batches)
    if not out:
        raise UserError("no calibration batches given")
    return out


def _fingerprint_batches(chunks) -> str:
    h = hashlib.sha256()
    for ids in chunks:
        h.update(str(tuple(ids.shape)).encode())
        h.update(ids.detach().cpu().to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def _observe(layer, names, factory, carry, stop: bool):
    """Feed each batch through ``layer`` with pre-hooks on the heads of ``names``' input groups;
    returns ({name: observer}, outputs or None). ``stop``: raise after the (single) group's input."""
    observers, handles = {}, []
    for grp in input_groups(names):
        head = layer.get_submodule(grp[0])
        obs = factory(grp[0], head)
        if len(grp) == 1 and hasattr(obs, "exclusive"):
            obs.exclusive = True  # read by this one linear layer only: it may reuse their memory
        for n in grp:
            observers[n] = obs

        def hook(mod, args, obs=obs):
            x = args[0]
            obs.update(x.reshape(-1, x.shape[-1]))
            if stop:
                raise _Stop

        handles.append(head.register_forward_pre_hook(hook))
    outs = [] if not stop else None
    try:
        for h, kw in carry:
            try:
                y = _run_layer(layer, h, kw)
            except _Stop:
                continue
            outs.append(y)
    finally:
        for hd in handles:
            hd.remove()
    return observers, outs


def _quantize_linear(method, full_name, layer, leaf, stats, config):
    lin = layer.get_submodule(leaf)
    if method.observer is not None and stats is None:
        raise ValueError(f"no calibration statistics for layer {full_name}")
    new = method.build(full_name, lin, stats, config).to(lin.weight.device)
    n_w = lin.in_features * lin.out_features
    bits = int(getattr(new, "nbits", n_w * 16))
    info = {"shape": [lin.out_features, lin.in_features], "bits": bits, "bits_per_weight": bits / n_w,
            **getattr(new, "metrics", {})}
    return new, info


def _settings(config, mode, dtype, ckpt, chunks, method):
    return {"format": "lqer-streaming", "version": STREAM_FORMAT_VERSION, "config": config.to_dict(),
            "calibration_input": mode, "dtype": str(dtype).replace("torch.", ""),
            "checkpoint": ckpt.fingerprint(),
            "calibration": None if method.observer is None else _fingerprint_batches(chunks)}


def _read_manifest(out: Path):
    f = out / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{str(f)!r} is unreadable ({e}); delete {str(out)!r} to start over") from None


def _save_carry(out: Path, carry, next_layer: int, tag: str):
    from safetensors.torch import save_file

    tensors = {f"h.{i}": h.detach().contiguous().cpu() for i, (h, _) in enumerate(carry)}
    with atomic_write(out / CARRY) as tmp:
        save_file(tensors, str(tmp), metadata={"next_layer": str(next_layer), "settings": tag})


def _load_carry(out: Path, captured, next_layer: int, tag: str, device):
    """The saved activations entering ``next_layer`` paired with the captured kwargs, or None."""
    from safetensors import safe_open

    f = out / CARRY
    if not f.is_file():
        return None
    try:
        with safe_open(str(f), framework="pt") as sf:
            meta = sf.metadata() or {}
            if meta.get("next_layer") != str(next_layer) or meta.get("settings") != tag:
                return None
            hs = [sf.get_tensor(f"h.{i}").to(device) for i in range(len(captured))]
    except Exception:  # noqa: BLE001 - a damaged carry file is recomputed, not trusted
        return None
    return [(h, kw) for h, (_, kw) in zip(hs, captured)]


def quantize_streaming(model, config, calibration_batches=None, out_dir="quantized-stream", *,
                       calibration_input: str = "fp_prefix", dtype="auto", device="cpu", progress=True,
                       layers=None, log=None) -> dict:
    """Quantize ``model`` (name, .gguf or HF directory; read lazily) layer by layer into
    ``out_dir`` (see the module doc). Resumes a finished prefix written with the same settings.
    ``layers``: quantize only the first ``layers`` decoder layers (benchmarks; the manifest says
    how many of how many are done). Returns the manifest."""
    config = load_config(config) if not isinstance(config, QuantConfig) else config
    method = get_method(config.method)
    if calibration_input not in CALIBRATION_INPUTS:
        raise UserError(f"calibration_input must be one of {', '.join(CALIBRATION_INPUTS)}, got {calibration_input!r}")
    if method.observer is not None and calibration_batches is None:
        raise UserError(f"method {config.method!r} needs calibration_batches")
    chunks = _batches_list(calibration_batches) if calibration_batches is not None else []
    from mxsim.files import check_output

    check_output(out_dir, "out_dir", kind="dir")
    sm = StreamedModel(model, dtype, device)
    n_todo = sm.n_layers if layers is None else int(layers)
    if not 1 <= n_todo <= sm.n_layers:
        raise UserError(f"layers must be in 1..{sm.n_layers}, got {layers!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(config, calibration_input, sm.dtype, sm.ckpt, chunks, method)
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    manifest = _read_manifest(out)
    if manifest is not None and manifest.get("settings") != json.loads(json.dumps(settings, default=str)):
        raise UserError(f"{str(out)!r} holds a streaming run with other settings (config, model, calibration "
                         f"or dtype); pass another out_dir or delete it")
    done = [] if manifest is None else manifest["layers"]
    # trust a finished layer only if its file is there with the recorded size
    for k, rec in enumerate(done):
        f = out / rec["file"]
        if rec["index"] != k or not f.is_file() or f.stat().st_size != rec["size"]:
            done = done[:k]
            break
    manifest = {"settings": settings, "n_layers": sm.n_layers, "layers": done, "complete": False}
    say = log or (lambda s: None)
    start = len(done)
    if start:
        say(f"stream: resuming at layer {start} ({start} finished in {out})")
    from .datapath import check_config_accumulator
    from .quantize import _release_freed_memory

    check_config_accumulator(config)  # before any work, as quantize_model
    from .calibrate import conv1d_to_linear

    factory = None if method.observer is None else (lambda name, module: method.observer(name, module, config))
    carry = None
    if factory is not None and start < n_todo:
        captured = sm.embed(chunks)
        if start == 0:
            carry = captured
        else:
            carry = _load_carry(out, captured, start, tag, sm.device)
            if carry is None:  # recompute the activations entering layer `start`
                say(f"stream: no usable {CARRY}; recomputing the activations of layers 0..{start - 1}")
                carry = captured
                for i in range(start):
                    lay = (sm.layer(i) if calibration_input == "fp_prefix"
                           else _load_quantized_layer(sm, out, i, config.accumulator))
                    carry = [(_run_layer(lay, h, kw), kw) for h, kw in carry]
                    del lay
        del captured
    it = range(start, n_todo)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"stream {config.method}", unit="layer", leave=False)
    prefix = sm.arch.blocks
    with torch.no_grad():
        for i in it:
            t0 = time.perf_counter()
            layer = sm.layer(i)
            conv1d_to_linear(layer)
            names = _linears(layer)
            full = lambda leaf: f"{prefix}.{i}.{leaf}"  # noqa: E731
            info = {}
            wrapped = None if factory is None else (lambda n, m: factory(full(n), m))
            if factory is None:
                for leaf in names:
                    new, info[full(leaf)] = _quantize_linear(method, full(leaf), layer, leaf, None, config)
                    _set_module(layer, leaf, new)
            elif calibration_input == "fp_prefix":
                # One input group at a time, the last group first: a group's input depends only
                # on the groups before it, so quantizing from the back keeps every observed input
                # full precision while only one group's statistics are alive (LRC/GPTQ at 7B:
                # 3 x 11008^2 float64 = 2.9 GB for down_proj alone) and each group's fp weights
                # go as its quantized modules come in. The first pass (the last group, no stop)
                # runs the whole fp layer and gives the activations carried on.
                outs = None
                order = list(reversed(input_groups(names)))
                for k, grp in enumerate(order):
                    stats, y = _observe(layer, grp, wrapped, carry, stop=k > 0)
                    if k == 0:
                        outs = y
                    del y
                    # while this group is quantized, the fp weights of the groups still to come are
                    # not needed: back to meta, re-read after (the same bits; LRC at 7B: 0.3 GB less
                    # beside down_proj's statistics)
                    later = [leaf for g in order[k + 1:] for leaf in g]
                    for leaf in later:
                        layer.get_submodule(leaf).to("meta")
                    # the activations (layer inputs, and the outputs once made) wait on disk meanwhile
                    spilled = _spill(out, carry, outs)
                    carry = outs = None
                    _release_freed_memory()
                    for leaf in grp:
                        new, info[full(leaf)] = _quantize_linear(method, full(leaf), layer, leaf, stats[leaf],
                                                                 config)
                        _set_module(layer, leaf, new)
                        del new
                    del stats
                    _release_freed_memory()
                    carry, outs = _unspill(spilled, sm.device)
                    for leaf in later:
                        _reread(sm, f"{prefix}.{i}.{leaf}", layer.get_submodule(leaf))
                info = {full(n): info[full(n)] for n in names}
                carry = [(y, kw) for y, (_, kw) in zip(outs, carry)]
                del outs
            else:
                for grp in input_groups(names):
                    stats, _ = _observe(layer, grp, wrapped, carry, stop=True)
                    for leaf in grp:
                        new, info[full(leaf)] = _quantize_linear(method, full(leaf), layer, leaf, stats[leaf], config)
                        _set_module(layer, leaf, new)
                    del stats
                _apply_accumulator(layer, config.accumulator)
                carry = [(_run_layer(layer, h, kw), kw) for h, kw in carry]
            _apply_accumulator(layer, config.accumulator)  # as quantize_model; the files do not hold it
            t_q = time.perf_counter() - t0
            _save_layer(sm, out, i, layer, config, info)
            del layer
            _release_freed_memory()
            if carry is not None and i + 1 < n_todo:
                _save_carry(out, carry, i + 1, tag)
            rec = {"index": i, "file": _layer_file(i), "size": (out / _layer_file(i)).stat().st_size,
                   "seconds": time.perf_counter() - t0, "quantize_seconds": t_q, "linears": info}
            manifest["layers"].append(rec)
            manifest["complete"] = len(manifest["layers"]) == sm.n_layers
            _write_json_or_explain(out, manifest, i)
            say(f"stream: layer {i} done in {rec['seconds']:.1f} s")
    manifest["complete"] = len(manifest["layers"]) == sm.n_layers
    if manifest["complete"] and (out / CARRY).exists():
        os.unlink(out / CARRY)
    bits = sum(r["bits"] for rec in manifest["layers"] for r in rec["linears"].values())
    n_w = sum(math.prod(r["shape"]) for rec in manifest["layers"] for r in rec["linears"].values())
    manifest["avg_bits_per_weight"] = bits / n_w if n_w else float("nan")
    return manifest


SPILL = "spill.safetensors"


def _spill(out: Path, carry, outs):
    """Write the activations (inputs with their kwargs, outputs) to ``out/SPILL``: while a
    group is quantized they wait on disk (LRC at 7B: 0.35 GB less beside its statistics)."""
    from safetensors.torch import save_file

    t = {f"h.{j}": h.detach().contiguous().cpu() for j, (h, _) in enumerate(carry)}
    t.update({f"y.{j}": y.detach().contiguous().cpu() for j, y in enumerate(outs or [])})
    with atomic_write(out / SPILL) as tmp:
        save_file(t, str(tmp))
    return out / SPILL, [kw for _, kw in carry], len(outs or [])


def _unspill(spilled, device):
    """The activations back from disk (the same bits); the file is removed."""
    from safetensors.torch import load_file

    f, kws, n_out = spilled
    t = load_file(str(f))
    os.unlink(f)
    carry = [(t[f"h.{j}"].to(device), kw) for j, kw in enumerate(kws)]
    outs = [t[f"y.{j}"].to(device) for j in range(n_out)]
    return carry, outs


def _reread(sm, name, module):
    """The weights of ``module`` (full name ``name``, on meta) read from the checkpoint again."""
    sd = {k: sm.ckpt.read(sm._source(f"{name}.{k}"), sm.dtype).to(sm.device) for k in module.state_dict()}
    module.load_state_dict(sd, assign=True)


def _write_json_or_explain(out, manifest, i):
    try:
        # the manifest's own spelling, not mxsim.files.write_json's: a resumed run reads the layers'
        # linears back in module order (write_json sorts keys), and a numpy/torch scalar in a
        # method's metrics stays a number (write_json's default=str would make it a string)
        write_text(out / MANIFEST, json.dumps(manifest, indent=1, default=float))
    except OSError as e:
        raise OSError(e.errno, f"writing {MANIFEST} after layer {i} in {str(out)!r} failed ({e.strerror}); "
                               f"layers 0..{i - 1} stay recorded, re-run to resume") from e


def _save_layer(sm, out: Path, i: int, layer, config, info):
    from .quantize import save_quantized

    sm.set_layer(i, layer)
    try:
        with atomic_write(out / _layer_file(i)) as tmp:
            save_quantized(sm.skeleton, str(tmp), config=config, info={"layer": i, "linears": info})
    except OSError as e:
        raise OSError(e.errno, f"writing layer {i} to {str(out)!r} failed ({e.strerror or e}); nothing of it was "
                               f"kept, layers 0..{i - 1} are saved and a re-run resumes at layer {i}") from e
    finally:
        sm.set_layer(i, None)


def _apply_accumulator(layer, accumulator):
    from mxsim.accumulators import Float

    if accumulator is not None and not isinstance(accumulator, Float):
        from .datapath import set_accumulator

        set_accumulator(layer, accumulator)


def _manifest_accumulator(out: Path):
    m = _read_manifest(Path(out))
    return None if m is None else QuantConfig.from_dict(m["settings"]["config"]).accumulator


def _load_quantized_layer(sm, out: Path, i: int, accumulator=None):
    """Decoder layer i with its linear layers from ``out``'s layer file (the rest from the checkpoint)."""
    from safetensors import safe_open

    from .quantize import load_quantized

    f = out / _layer_file(i)
    if not f.is_file():
        raise UserError(f"{str(f)!r} is missing; the quantized model in {str(out)!r} is incomplete")
    with safe_open(str(f), framework="pt") as sf:
        saved = json.loads((sf.metadata() or {}).get("layers", "{}"))
    prefix = f"{sm.arch.blocks}.{i}."
    skip = [n[len(prefix):] for n in saved if n.startswith(prefix)]
    layer = sm.layer(i, skip=skip)
    sm.set_layer(i, layer)
    try:
        load_quantized(sm.skeleton, f)
    finally:
        sm.set_layer(i, None)
    left = [n for n, t in list(layer.named_parameters()) + list(layer.named_buffers()) if t.is_meta]
    if left:
        raise UserError(f"{str(f)!r} lacks quantized modules for {left[:3]} of layer {i}")
    _apply_accumulator(layer, accumulator)
    return layer.to(sm.device)


def read_manifest(out_dir) -> dict:
    m = _read_manifest(Path(out_dir))
    if m is None:
        raise UserError(f"{str(out_dir)!r} has no {MANIFEST} (not a streaming quantization output)")
    return m


@torch.no_grad()
def perplexity_streaming(model, windows: torch.Tensor, quantized=None, *, dtype="auto", device="cpu",
                         batch_size: int = 1, progress=True) -> float:
    """Token-level perplexity (as lqer.evaluate.perplexity) computed layer by layer: the
    checkpoint's own layers, or with ``quantized`` (an output directory of quantize_streaming,
    all layers finished) the quantized ones."""
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[1] < 2 or windows.shape[0] < 1:
        raise UserError("windows must be a LongTensor of shape (n, seq_len) with n >= 1, seq_len >= 2")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    sm = StreamedModel(model, dtype, device)
    if quantized is not None:
        m = read_manifest(quantized)
        if len(m["layers"]) != sm.n_layers:
            raise UserError(f"{str(quantized)!r} holds {len(m['layers'])} of {sm.n_layers} quantized layers; "
                             f"finish the run (re-run quantize_streaming) first")
        if m["settings"]["checkpoint"]["files"] != sm.ckpt.fingerprint()["files"]:
            raise UserError(f"{str(quantized)!r} was quantized from another checkpoint than {str(sm.ckpt.path)!r}")
    acc = None if quantized is None else _manifest_accumulator(Path(quantized))
    chunks = [windows[s: s + batch_size] for s in range(0, windows.shape[0], batch_size)]
    carry = sm.embed(chunks)
    it = range(sm.n_layers)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="ppl (streamed)", unit="layer", leave=False)
    for i in it:
        layer = sm.layer(i) if quantized is None else _load_quantized_layer(sm, Path(quantized), i, acc)
        carry = [(_run_layer(layer, h, kw), kw) for h, kw in carry]
        del layer
    head = sm.logits_fn()
    total_nll, total_tok = 0.0, 0
    for ids, (h, _) in zip(chunks, carry):
        logits = head(h)
        ids = ids.to(logits.device)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
        total_nll += float(nll)
        total_tok += ids[:, 1:].numel()
    return math.exp(total_nll / total_tok)


def load_streamed(model, out_dir):
    """The quantized layers of ``out_dir`` loaded into an in-memory ``model`` (nn.Module), for
    models that fit: the same modules ``load_quantized`` would build from one file."""
    from .quantize import load_quantized

    m = read_manifest(out_dir)
    for rec in m["layers"]:
        load_quantized(model, Path(out_dir) / rec["file"])
    _apply_accumulator(model, _manifest_accumulator(Path(out_dir)))
    return model
