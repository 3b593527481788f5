"""QuaRot-style orthogonal rotation of a linear layer's input.

For an orthogonal R (d_in x d_in): y = W x = (W R)(R^T x), i.e. with row-vector inputs
y = (x R)(W R)^T. The quantized layer stores W <- W R and computes on x <- x R, so in full
precision the output is unchanged, while the rotation spreads activation outliers over
all channels before the activation quantizer sees them.

``rotation_matrix(d, kind, seed)``:
* "hadamard": Sylvester Hadamard H_d / sqrt(d); d must be a power of two.
* "random": Q of the QR of a seeded Gaussian matrix (signs fixed so the draw is uniform
  over the orthogonal group).
* "auto": Hadamard when d is a power of two, else random (SmolLM2's 576 and 1536 are not
  powers of two, so they get random rotations).
Off by default everywhere (``rotation="none"``).
"""

from __future__ import annotations

import torch

__all__ = ["rotation_matrix", "hadamard", "ROTATIONS", "rotate_weight", "input_rotation", "check_stats_rotation"]

ROTATIONS = ("none", "hadamard", "random", "auto")


def _is_pow2(d: int) -> bool:
    return d >= 1 and (d & (d - 1)) == 0


def hadamard(d: int, dtype=torch.float64) -> torch.Tensor:
    """Normalised Sylvester Hadamard matrix (d a power of two): orthogonal and symmetric."""
    if not _is_pow2(d):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power-of-two size, got {d}")
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < d:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return (H / d**0.5).to(dtype)


def rotation_matrix(d: int, kind: str = "auto", seed: int = 0, dtype=torch.float64):
    """An orthogonal d x d matrix (see module doc), or None for kind "none"."""
    if kind not in ROTATIONS:
        raise ValueError(f"unknown rotation {kind!r}; allowed: {', '.join(ROTATIONS)}")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"rotation size must be a positive integer, got {d!r}")
    if kind == "none":
        return None
    if kind == "hadamard" or (kind == "auto" and _is_pow2(d)):
        return hadamard(d, dtype)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + d)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))[None, :]
    return Q.to(dtype)


def rotate_weight(W: torch.Tensor, R: torch.Tensor | None) -> torch.Tensor:
    """W R (W: d_out x d_in) computed in float64, returned in W's dtype."""
    if R is None:
        return W
    return (W.to(torch.float64) @ R.to(W.device, torch.float64)).to(W.dtype)


def input_rotation(config, d_in: int):
    """A QuantConfig's input rotation R for a layer of input width ``d_in``, or None: its
    options' ``rotation``/``rotation_seed`` (lqer.options.RotationOptions); methods whose
    options have no rotation (fp, LLM.int8()) never rotate."""
    from .options import RotationOptions

    o = config.options
    if not isinstance(o, RotationOptions):
        return None
    return rotation_matrix(d_in, o.rotation, o.rotation_seed)


def check_stats_rotation(name: str, stats, R) -> None:
    """Statistics of a rotated layer must have been taken on x R (the observer's ``transform``)."""
    T = getattr(stats, "transform", None)
    if (R is None) != (T is None) or (R is not None and not torch.equal(R.to(T.dtype), T.cpu())):
        raise ValueError(f"{name}: calibration statistics were taken with a different input rotation than the "
                         f"config's (give the observers transform=lqer.rotation.input_rotation(config, d_in))")
