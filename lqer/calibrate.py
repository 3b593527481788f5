"""Calibration: forward pre-hooks on the decoder's linear layers feed each layer's input
(flattened to tokens x in) to an observer.

Observers: ``AbsMeanMax`` (the L2QER scale, exactly the reference recipe), ``SecondMoment``
(sum x^T x in float64 for QERA), ``OutlierColumns`` (input columns with any |x| > 6.0, for
LLM.int8() and the hardware model). Layers that share one input (q/k/v; gate/up) can share
one observer: ``input_groups(model)`` lists them, and ``run_calibration(share_inputs=True)``
hooks only the first layer of each group and maps every member to the same observer.
"""

from __future__ import annotations

import json
from typing import Callable

import torch
import torch.nn as nn

# Sibling projections that read the same tensor in Llama/Mistral/Qwen-style blocks and OPT
# (self_attn.q_proj/k_proj/v_proj); GPT-2 fuses q/k/v into one c_attn, so it has no group.
SHARED_INPUT_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"))


def decoder_blocks(model) -> tuple[str, nn.ModuleList]:
    """(prefix, ModuleList) of the decoder blocks of a HF causal LM. Supported: the Llama
    family (Llama, Mistral, Qwen, SmolLM2...: ``model.layers``), OPT (``model.decoder.layers``)
    and GPT-2 (``transformer.h``; its Conv1D projections are first turned into nn.Linear by
    ``conv1d_to_linear``); GPT-NeoX-style ``gpt_neox.layers`` and bare ``layers`` are also found."""
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers"):
        obj = model
        ok = True
        for part in path.split("."):
            if not hasattr(obj, part):
                ok = False
                break
            obj = getattr(obj, part)
        if ok and isinstance(obj, nn.ModuleList):
            return path, obj
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__} "
                     f"(supported: Llama-family, OPT, GPT-2)")


def conv1d_to_linear(model) -> int:
    """Replace, in place, every ``transformers`` Conv1D inside the decoder blocks (GPT-2's
    c_attn, attn.c_proj, c_fc, mlp.c_proj) by the equivalent nn.Linear: weight transposed
    from (in, out) to (out, in), bias kept, same device, dtype and requires_grad. Module names
    do not change. Embeddings and the LM head are left alone. Idempotent (a second call finds
    no Conv1D); a model without Conv1D (or without known decoder blocks) is untouched.
    Returns how many layers were replaced."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return 0
    try:
        _, blocks = decoder_blocks(model)
    except ValueError:  # not a supported layout: nothing to convert (linear_layers will say so)
        return 0
    todo = [(block, name, mod) for block in blocks for name, mod in block.named_modules()
            if isinstance(mod, Conv1D)]
    for block, name, conv in todo:
        w = conv.weight
        n_in, n_out = w.shape
        # built on the meta device: no throw-away random init of a weight we overwrite
        lin = nn.Linear(n_in, n_out, bias=conv.bias is not None, device="meta")
        lin.weight = nn.Parameter(w.detach().t().contiguous(), requires_grad=w.requires_grad)
        if conv.bias is not None:
            lin.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=conv.bias.requires_grad)
        lin.train(conv.training)
        parent_name, _, leaf = name.rpartition(".")
        setattr(block.get_submodule(parent_name) if parent_name else block, leaf, lin)
    return len(todo)


def linear_layers(model) -> dict[str, nn.Module]:
    """{full name: module} of every nn.Linear (or already-quantized linear) inside the decoder blocks."""
    from .linear import QuantLinear

    prefix, blocks = decoder_blocks(model)
    out = {}
    for i, block in enumerate(blocks):
        for name, mod in block.named_modules():
            if isinstance(mod, (nn.Linear, QuantLinear)) and name:
                out[f"{prefix}.{i}.{name}"] = mod
    if not out:
        raise ValueError(f"no nn.Linear layers found in the decoder blocks of {type(model).__name__} "
                         f"(GPT-2-style Conv1D layers: call lqer.calibrate.conv1d_to_linear(model) first)")
    return out


def input_groups(names) -> list[list[str]]:
    """Group layer names that share one input (q/k/v of one block; gate/up of one block).
    Every name appears in exactly one group; order follows ``names``."""
    names = list(names)
    groups, seen = [], set()
    for n in names:
        if n in seen:
            continue
        parent, _, leaf = n.rpartition(".")
        grp = [n]
        for g in SHARED_INPUT_GROUPS:
            if leaf in g:
                grp = [f"{parent}.{x}" for x in g if f"{parent}.{x}" in names]
                break
        groups.append(grp)
        seen.update(grp)
    return groups


def rotate_input(x: torch.Tensor, transform) -> torch.Tensor:
    """x R (float64 product, x's dtype) for observers of a rotated layer; x itself without R."""
    if transform is None:
        return x
    return (x.to(torch.float64) @ transform.to(x.device, torch.float64)).to(x.dtype)


class AbsMeanMax:
    """L2QER scale: per batch mean |x| over tokens per input channel; elementwise max over
    batches; then clamp at 1e-4 and normalise s / sqrt(min(s) max(s)).
    ``transform``: an input rotation R; the statistics are then of x R (what a rotated layer sees)."""

    def __init__(self, n_in: int | None = None, transform=None):
        self.s = None
        self.n_batches = 0
        self.transform = transform

    def update(self, x: torch.Tensor):
        m = rotate_input(x.detach(), self.transform).abs().to(torch.float32).mean(dim=0)
        self.s = m if self.s is None else torch.maximum(self.s, m)
        self.n_batches += 1

    def scale(self) -> torch.Tensor:
        if self.s is None:
            raise ValueError("AbsMeanMax saw no calibration batch")
        s = self.s.clamp_min(1e-4)
        return s / torch.sqrt(s.min() * s.max())

    def result(self):
        return self.scale()


class SecondMoment:
    """sum x^T x (in x in, float64) and the number of tokens; for QERA (and QERA-approx).
    ``transform`` as for AbsMeanMax."""

    def __init__(self, n_in: int | None = None, transform=None):
        self.xtx = None
        self.n = 0
        self.transform = transform

    def update(self, x: torch.Tensor):
        x = rotate_input(x.detach(), self.transform).to(torch.float64)
        xtx = x.T @ x
        self.xtx = xtx if self.xtx is None else self.xtx + xtx
        self.n += x.shape[0]

    def mean(self) -> torch.Tensor:
        """R_xx = E[x^T x]."""
        if self.xtx is None:
            raise ValueError("SecondMoment saw no calibration batch")
        return self.xtx / self.n

    def result(self):
        return self.mean()


class OutlierColumns:
    """Input columns with any |x| > threshold seen on the calibration data."""

    def __init__(self, n_in: int | None = None, threshold: float = 6.0):
        self.threshold = float(threshold)
        self.mask = None
        self.max_abs = None

    def update(self, x: torch.Tensor):
        a = x.detach().abs()
        m = (a > self.threshold).any(dim=0)
        mx = a.amax(dim=0).to(torch.float32)
        self.mask = m if self.mask is None else (self.mask | m)
        self.max_abs = mx if self.max_abs is None else torch.maximum(self.max_abs, mx)

    @property
    def count(self) -> int:
        return 0 if self.mask is None else int(self.mask.sum())

    def columns(self) -> list[int]:
        return [] if self.mask is None else torch.nonzero(self.mask).flatten().tolist()

    def result(self):
        return self.count


class MultiObserver:
    """Several observers fed the same input: ``obs["abs"]``, ``obs["xtx"]``..."""

    def __init__(self, **observers):
        self.observers = observers

    def update(self, x):
        for o in self.observers.values():
            o.update(x)

    def __getitem__(self, k):
        return self.observers[k]


def outlier_counts_json(stats: dict, path=None) -> str:
    """{layer_name: count} as JSON (for the hardware model); written to ``path`` if given."""
    d = {}
    for name, o in stats.items():
        if isinstance(o, MultiObserver):
            o = next((v for v in o.observers.values() if isinstance(v, OutlierColumns)), None)
        if isinstance(o, OutlierColumns):
            d[name] = o.count
    text = json.dumps(d, indent=1)
    if path is not None:
        from mxsim.files import write_text

        write_text(path, text)
    return text


@torch.no_grad()
def _vocab_size(model) -> int | None:
    try:
        return int(model.get_input_embeddings().num_embeddings)
    except (AttributeError, TypeError):
        return None


def check_token_ids(ids, vocab: int | None, what: str = "token ids") -> None:
    """Token ids are an integer tensor (torch.long as nn.Embedding wants) within [0, vocab)."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{what} must be a torch tensor of token ids (LongTensor batch x seq), got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer token ids (torch.long), got dtype {ids.dtype}")
    if ids.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(ids.shape)})")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        raise ValueError(f"{what}: token ids must be in [0, {vocab}) (the model's vocabulary), got range [{lo}, {hi}]")


def run_calibration(model, batches, observer_factory: Callable, layers=None, progress: bool = True,
                    share_inputs: bool = True, batch_size: int = 1) -> dict:
    """Run ``batches`` (LongTensor n x seq, or an iterable of them) through ``model`` with
    forward pre-hooks on the decoder's linear layers. ``observer_factory(name, module)`` makes
    one observer (``.update(x2d)``) per layer or per shared-input group. Returns {name: observer}
    (members of a group map to the same object). Each forward call of ``batch_size`` samples
    is one "batch" for the observers. GPT-2's Conv1D layers are turned into nn.Linear first
    (``conv1d_to_linear``, same names)."""
    conv1d_to_linear(model)
    all_layers = linear_layers(model)
    if layers is None:
        names = list(all_layers)
    else:
        names = list(layers)
        missing = [n for n in names if n not in all_layers]
        if missing:
            raise ValueError(f"unknown layers: {missing[:5]}")
    groups = input_groups(names) if share_inputs else [[n] for n in names]
    observers, handles = {}, []
    for grp in groups:
        head = all_layers[grp[0]]
        obs = observer_factory(grp[0], head)
        for n in grp:
            observers[n] = obs

        def hook(mod, args, obs=obs):
            x = args[0]
            obs.update(x.reshape(-1, x.shape[-1]))

        handles.append(head.register_forward_pre_hook(hook))
    if isinstance(batches, torch.Tensor):
        if batches.dim() == 1:
            batches = batches[None]
        chunks = [batches[i: i + batch_size] for i in range(0, batches.shape[0], batch_size)]
    else:
        chunks = list(batches)
    if not chunks:
        raise ValueError("no calibration batches given")
    vocab = _vocab_size(model)
    for i, ids in enumerate(chunks):
        check_token_ids(ids, vocab, f"calibration_batches[{i}]")
    device = next(model.parameters()).device
    it = chunks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(chunks, desc="calibrate", unit="batch", leave=False)
    try:
        for ids in it:
            model(input_ids=ids.to(device))
    finally:
        for h in handles:
            h.remove()
    return observers
