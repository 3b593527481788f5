"""Second-moment statistics of a layer's input for LRC / GPTQ / QERA, in float64.

For a layer input X (n tokens x d_in, rows are tokens) and Y = Q_a(X) (mxsim fake
quantization with the activation format, blocks along d_in):

    Sigma_x = X^T X,  Sigma_y = Y^T Y,  Sigma_xy = X^T Y   (all d_in x d_in, float64 sums)

(The reference writes X as d_in x n and Sigma_x = X X^T: the same matrices.) ``n`` counts
tokens. The sums are not divided by n; every use in lqer.lrc is invariant to a common scale.

``CovarianceObserver`` accumulates these from batches (any leading shape; the last
dimension is d_in). An optional ``transform`` (d_in x d_in, e.g. a rotation R) is applied
first, x <- x R, so the statistics describe the rotated input the quantized layer sees.
``observe_inputs`` collects them for a set of ``nn.Linear`` modules with forward hooks,
once per distinct input (modules that read the same tensor, q/k/v or gate/up, share one
observer), for use without lqer.calibrate.
"""

from __future__ import annotations

import dataclasses
import math

import torch

import mxsim

__all__ = ["CovarianceStats", "CovarianceObserver", "observe_inputs", "MIN_TOKENS_PER_DIM"]

# n >= MIN_TOKENS_PER_DIM * d_in tokens are required before the statistics are used.
MIN_TOKENS_PER_DIM = 2


@dataclasses.dataclass
class CovarianceStats:
    sx: torch.Tensor   # X^T X
    sy: torch.Tensor   # Y^T Y
    sxy: torch.Tensor  # X^T Y
    n: int
    a_format: object = None

    @property
    def d_in(self) -> int:
        return self.sx.shape[0]

    def check(self, d_in: int | None = None, min_tokens_per_dim: float = MIN_TOKENS_PER_DIM, name: str = "layer"):
        """Raise ValueError for mismatched, non-finite or too-few-token statistics."""
        d = self.sx.shape[0]
        for nm, m in (("sx", self.sx), ("sy", self.sy), ("sxy", self.sxy)):
            if m.ndim != 2 or m.shape != (d, d):
                raise ValueError(f"{name}: statistic {nm} has shape {tuple(m.shape)}, expected ({d}, {d})")
            if not torch.isfinite(m).all():
                raise ValueError(f"{name}: statistic {nm} contains NaN or Inf (non-finite activations?)")
        if d_in is not None and d != d_in:
            raise ValueError(f"{name}: statistics are for inputs of width {d}, the weight has d_in={d_in}")
        need = math.ceil(min_tokens_per_dim * d)
        if self.n < need:
            raise ValueError(
                f"{name}: only {self.n} calibration tokens for input width {d}; the covariances are "
                f"singular or ill-conditioned: need at least {need} tokens "
                f"({min_tokens_per_dim:g} x d_in), more is better")
        return self


class CovarianceObserver:
    """Accumulates Sigma_x, Sigma_y, Sigma_xy (float64) and the token count of one input."""

    def __init__(self, a_format, *, transform: torch.Tensor | None = None, device=None):
        self.a_format = mxsim.get_format(a_format)
        self.transform = transform
        self.device = device
        self.sx = self.sy = self.sxy = None
        self.n = 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        d = x.shape[-1]
        x = x.reshape(-1, d)
        if self.transform is not None:
            R = self.transform.to(device=x.device, dtype=torch.float64)
            x = (x.to(torch.float64) @ R).to(x.dtype)
        y = mxsim.fake_quantize(x, self.a_format, axis=-1)
        dev = self.device if self.device is not None else x.device
        x64 = x.to(dev, torch.float64)
        y64 = y.to(dev, torch.float64)
        if self.sx is None:
            z = lambda: torch.zeros(d, d, dtype=torch.float64, device=dev)  # noqa: E731
            self.sx, self.sy, self.sxy = z(), z(), z()
        elif self.sx.shape[0] != d:
            raise ValueError(f"input width changed from {self.sx.shape[0]} to {d}")
        self.sx.addmm_(x64.T, x64)
        self.sy.addmm_(y64.T, y64)
        self.sxy.addmm_(x64.T, y64)
        self.n += x.shape[0]

    __call__ = update

    def result(self) -> CovarianceStats:
        if self.sx is None:
            raise ValueError("no activations were observed (did the calibration run reach this layer?)")
        return CovarianceStats(self.sx, self.sy, self.sxy, self.n, self.a_format)


def observe_inputs(model, batches, linear_names, a_format, *, transforms=None, device=None, forward=None):
    """Run ``batches`` (LongTensor n x seq of token ids, or an iterable of them) through
    ``model`` and collect CovarianceStats for the inputs of the named linear layers.

    Layers that receive the very same input tensor (q/k/v, gate/up) share one observer: the
    result maps every name to its (shared) stats object. ``transforms``: optional
    {name: R} applied to that layer's input. Returns {name: CovarianceStats}.
    """
    modules = dict(model.named_modules())
    missing = [n for n in linear_names if n not in modules]
    if missing:
        raise ValueError(f"unknown module names: {missing[:5]}")
    transforms = transforms or {}
    observers: dict[str, CovarianceObserver] = {}
    by_tensor: dict[tuple, str] = {}
    handles = []
    state = {"seen": {}, "keep": []}

    def make_hook(name):
        def hook(mod, inp, out):
            x = inp[0]
            key = (x.data_ptr(), tuple(x.shape), id(transforms.get(name)))
            owner = state["seen"].get(key)
            state["keep"].append(x)  # keep alive so no later input reuses this address
            if owner is None:
                state["seen"][key] = name
                if name not in observers:
                    observers[name] = CovarianceObserver(a_format, transform=transforms.get(name), device=device)
                observers[name].update(x)
                by_tensor[name] = name
            else:
                by_tensor[name] = owner
        return hook

    for n in linear_names:
        handles.append(modules[n].register_forward_hook(make_hook(n)))
    try:
        if isinstance(batches, torch.Tensor):
            batches = [batches[i: i + 1] for i in range(batches.shape[0])]
        with torch.no_grad():
            for b in batches:
                state["seen"], state["keep"] = {}, []
                (forward or model)(b)
    finally:
        for h in handles:
            h.remove()
    results = {n: o.result() for n, o in observers.items()}
    return {n: results[by_tensor[n]] for n in linear_names if n in by_tensor}
