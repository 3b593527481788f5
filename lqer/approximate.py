"""Low-rank reconstruction of the weight quantization error: LQER, L2QER, QERA.

Linear layer y = x W^T (W: out x in). W_q = Q_w(W) (mxsim, blocks along in); E = W - W_q.
Every variant takes the SVD of M = S E^T (in x out) for a left factor S (in x in):

* LQER   S = I                        A_k = U_k,              B_k = Sigma_k V_k^T
* L2QER  S = diag(s), s from calibration   A_k = diag(s)^-1 U_k,  B_k = Sigma_k V_k^T
* QERA   S = R_xx^{1/2} (symmetric root of the input second moment, via eigh in float64)
                                      A_k = S^-1 U_k,          B_k = Sigma_k V_k^T
  (``qera_approx``: S = diag(sqrt(diag R_xx)), the per-channel RMS; equal to L2QER's path.)

A_k (in x k) and B_k (k x out) are then quantized once with mxsim, blocked along their last
dimension (``factor_axis="last"``, as the authors' published sweep) or along the reduction
dimension (``"reduction"``: A along in, B along k, what an MX dot-product unit needs).
Every quantization goes through mxsim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

import mxsim

FACTOR_AXES = {"last": (1, 1), "reduction": (0, 0)}


@dataclass
class LowRankResult:
    """Quantized weight, factors (MXTensor or full-precision tensor), their dequantized values, metrics."""

    w_q: object  # MXTensor of W (out x in), axis 1
    A: object  # MXTensor (in x k) or float tensor if a_format is None
    B: object  # MXTensor (k x out) or float tensor if b_format is None
    w_deq: torch.Tensor
    A_deq: torch.Tensor
    B_deq: torch.Tensor
    rank: int
    singular_values: torch.Tensor
    metrics: dict = field(default_factory=dict)

    @property
    def correction(self) -> torch.Tensor:
        """(A B)^T: the out x in matrix added to W_q."""
        return (self.A_deq @ self.B_deq).T

    @property
    def reconstruction(self) -> torch.Tensor:
        return self.w_deq + self.correction


def _check_weight(W) -> torch.Tensor:
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"W must be a torch tensor or numpy array, got {type(W).__name__}")
    if W.dim() != 2:
        raise ValueError(f"W must be 2-D (out x in), got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise ValueError(f"W must be floating point, got {W.dtype}")
    if not torch.isfinite(W).all():
        raise ValueError("W contains NaN or Inf")
    return W.detach().to(torch.float32)


def check_rank(rank, shape) -> int:
    lim = min(shape)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise ValueError(f"rank must be an integer, got {rank!r}")
    if not 1 <= rank <= lim:
        raise ValueError(f"rank {rank} is out of range: must be in [1, min(in, out) = {lim}] for W of shape {tuple(shape)}")
    return int(rank)


def check_scale(scale, n_in: int) -> torch.Tensor:
    s = torch.as_tensor(scale).detach()
    if s.dim() != 1 or s.numel() != n_in:
        raise ValueError(f"scale must be a vector of length in = {n_in}, got shape {tuple(s.shape)}")
    if not s.is_floating_point():
        s = s.to(torch.float32)
    if not torch.isfinite(s).all():
        raise ValueError(f"scale contains NaN or Inf at {torch.nonzero(~torch.isfinite(s)).flatten()[:5].tolist()}")
    if (s <= 0).any():
        raise ValueError(f"scale must be strictly positive; {(s <= 0).sum().item()} entries are <= 0 "
                         f"(first at index {torch.nonzero(s <= 0).flatten()[0].item()})")
    return s.to(torch.float32)


def check_xtx(xtx, n_in: int) -> torch.Tensor:
    from .covariance import check_second_moment

    return check_second_moment(torch.as_tensor(xtx), "xtx", n_in)


def dequantize_weight(w_q, W) -> torch.Tensor:
    """Values of the MXTensor ``w_q`` as float32. For MX formats mxsim's fake_quantize gives
    the same values as dequantize() (contract) and is much faster on big layers; BlockFP's
    zero pass-through makes them differ, so BlockFP uses the stored codes."""
    fmt = w_q.fmt
    if getattr(fmt, "kind", "") in ("mxint", "mxfp"):
        return mxsim.fake_quantize(W, fmt, axis=w_q.axis).to(torch.float32)
    return torch.as_tensor(w_q.dequantize()).to(torch.float32)


def sym_sqrt(R: torch.Tensor, rel_eps: float = 1e-10):
    """(S, S^-1) for a symmetric PSD R via eigh in float64; eigenvalues floored at rel_eps * max."""
    R = 0.5 * (R + R.T)
    lam, Q = torch.linalg.eigh(R.to(torch.float64))
    top = float(lam.abs().max())
    if float(lam.min()) < -1e-6 * top:  # rounding gives ~1e-16 relative; beyond that it is not X^T X
        raise ValueError(f"xtx is indefinite (eigenvalues from {float(lam.min()):.3g} to {float(lam.max()):.3g}); "
                         "a second moment X^T X is positive semi-definite")
    floor = max(float(lam.max()), 0.0) * rel_eps
    if floor <= 0:
        raise ValueError("xtx is zero (no calibration activations?)")
    lam = lam.clamp_min(floor)
    r = lam.sqrt()
    return (Q * r) @ Q.T, (Q / r) @ Q.T


def rms_scale(xtx, n_tokens=1) -> torch.Tensor:
    """QERA-approx scale: per-channel RMS sqrt(diag(xtx)/n), floored at 1e-4 of its max."""
    d = torch.as_tensor(xtx).diagonal().to(torch.float64) / max(int(n_tokens), 1)
    s = d.clamp_min(0).sqrt()
    return s.clamp_min(float(s.max()) * 1e-4 if float(s.max()) > 0 else 1e-4).to(torch.float32)


def randomized_svd(M: torch.Tensor, rank: int, oversample: int = 16, niter: int = 2, seed: int = 0):
    """Top-``rank`` SVD of M by a seeded randomized range finder with power iterations
    (QR re-orthonormalisation after every product). Returns (U, S, Vh) truncated to ``rank``."""
    m, n = M.shape
    q = min(rank + oversample, m, n)
    g = torch.Generator(device="cpu").manual_seed(seed)
    Omega = torch.randn(n, q, generator=g, dtype=M.dtype).to(M.device)
    Y = M @ Omega
    Q, _ = torch.linalg.qr(Y)
    for _ in range(niter):
        Z, _ = torch.linalg.qr(M.T @ Q)
        Q, _ = torch.linalg.qr(M @ Z)
    Bs = Q.T @ M  # q x n
    Ub, S, Vh = torch.linalg.svd(Bs, full_matrices=False)
    U = Q @ Ub
    return U[:, :rank], S[:rank], Vh[:rank]


@dataclass
class ErrorSVD:
    """SVD of S·E^T kept once so that factors for many ranks come from one decomposition."""

    w_q: object
    w_deq: torch.Tensor
    E: torch.Tensor  # out x in, float32
    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    left_inv: object  # None, a vector (diag(s)^-1), or a matrix S^-1
    kind: str

    @property
    def max_rank(self) -> int:
        return int(self.S.numel())

    def factors(self, rank: int):
        """Unquantized A_k (in x k), B_k (k x out), float32."""
        if not 1 <= rank <= self.max_rank:
            raise ValueError(f"rank {rank} is out of range: this decomposition holds ranks 1..{self.max_rank}")
        Uk = self.U[:, :rank]
        if self.left_inv is None:
            A = Uk
        elif self.left_inv.dim() == 1:
            A = self.left_inv[:, None].to(Uk.dtype) * Uk
        else:
            A = self.left_inv.to(Uk.dtype) @ Uk
        B = self.S[:rank, None] * self.Vh[:rank]
        return A.to(torch.float32).contiguous(), B.to(torch.float32).contiguous()


def _check_scaled(M, left_inv, what: str) -> None:
    """The scaled error and the inverse scale are finite: a scale spanning too many decades
    overflows float32 here and would give Inf factors and metrics without a word."""
    bad = not torch.isfinite(M).all() or (left_inv is not None and not torch.isfinite(left_inv).all())
    if bad:
        raise ValueError(f"{what} spans too wide a range: the scaled quantization error (or its inverse scale) "
                         "overflows float32 (a positive, finite scale within ~1e30 of dynamic range is needed)")


def _check_factor_product(A, B, dec) -> None:
    """(A B) is finite in float32. A = diag(1/s) U_k and B = S_k V_k^T each stay finite for a scale s
    of huge range, but their product overflows: Inf corrections and metrics, silently."""
    bound = float(A.abs().max()) * float(B.abs().max()) * A.shape[1] if A.numel() and B.numel() else 0.0
    if bound < 1e37 or torch.isfinite(A @ B).all():
        return
    what = {"l2qer": "scale", "qera": "xtx", "qera_approx": "xtx (its RMS scale)"}.get(dec.kind, "the weight")
    inv = dec.left_inv
    rng = ""
    if inv is not None and inv.dim() == 1:
        lo, hi = float(inv.abs().min()), float(inv.abs().max())
        rng = f" (the inverse scale spans {math.log10(hi / lo):.0f} decades, {lo:.3g} to {hi:.3g})" if lo > 0 else ""
    raise ValueError(f"{what} spans too wide a range{rng}: the low-rank correction A B overflows float32; "
                     "use a scale within ~1e15 of dynamic range")


def decompose(W, *, w_format, rank=None, scale=None, svd="full", xtx=None, qera_approx=False,
              n_tokens=1, oversample=16, niter=2, seed=0) -> ErrorSVD:
    """Quantize W and take the SVD of (scaled) E^T. ``rank`` caps the randomized SVD (full
    SVD keeps every singular value, so ``factors(k)`` works for any k)."""
    W = _check_weight(W)
    out_f, in_f = W.shape
    if svd not in ("full", "randomized"):
        raise ValueError(f"svd must be 'full' or 'randomized', got {svd!r}")
    if scale is not None and xtx is not None and not qera_approx:
        raise ValueError("give either scale (L2QER) or xtx (QERA), not both")
    if w_format is None:
        raise ValueError("w_format is required")
    if qera_approx and xtx is None:
        raise ValueError("qera_approx=True needs xtx (the input second moment); without it this would be plain LQER")
    w_q = mxsim.quantize(W, w_format, axis=1)
    w_deq = dequantize_weight(w_q, W)
    E = W - w_deq
    Et = E.T
    left_inv = None
    kind = "lqer"
    if xtx is not None:
        R = check_xtx(xtx, in_f).to(W.device)  # statistics may have been kept on another device
        if qera_approx:
            s = rms_scale(R, n_tokens).to(W.device)
            M = s[:, None] * Et
            left_inv = 1.0 / s
            kind = "qera_approx"
        else:
            Sroot, Sinv = sym_sqrt(R)
            M = Sroot @ Et.to(torch.float64)
            left_inv = Sinv
            kind = "qera"
    elif scale is not None:
        s = check_scale(scale, in_f).to(W.device)
        M = s[:, None] * Et
        left_inv = 1.0 / s
        kind = "l2qer"
    else:
        M = Et.contiguous()
    _check_scaled(M, left_inv, "xtx" if xtx is not None else "scale")
    if svd == "full":
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    else:
        r = check_rank(rank, W.shape) if rank is not None else min(32, min(W.shape))
        U, S, Vh = randomized_svd(M, r, oversample=oversample, niter=niter, seed=seed)
    return ErrorSVD(w_q, w_deq, E, U, S, Vh, left_inv, kind)


def quantize_factors(A, B, a_format, b_format, factor_axis="last"):
    """Quantize A (in x k), B (k x out) with mxsim -> (A_q, B_q, A_deq, B_deq); None format = keep."""
    if factor_axis not in FACTOR_AXES:
        raise ValueError(f"factor_axis must be one of {tuple(FACTOR_AXES)}, got {factor_axis!r}")
    ax_a, ax_b = FACTOR_AXES[factor_axis]
    if a_format is None:
        A_q, A_deq = A, A
    else:
        A_q = mxsim.quantize(A, a_format, axis=ax_a)
        A_deq = A_q.dequantize().to(torch.float32)
    if b_format is None:
        B_q, B_deq = B, B
    else:
        B_q = mxsim.quantize(B, b_format, axis=ax_b)
        B_deq = B_q.dequantize().to(torch.float32)
    return A_q, B_q, A_deq, B_deq


def error_metrics(W, w_deq, correction=None) -> dict:
    """Frobenius norm and mean |.| of W - (W_q + (AB)^T) and of W - W_q; relative Frobenius.
    (The LQER reference does not pin down the authors' formula; these are the plain
    definitions: ||.||_F and mean over all out*in elements of |.|.)"""
    E = W - w_deq
    R = E if correction is None else E - correction
    return _metrics(W, E, R)


def _metrics(W, E, R) -> dict:
    fro_w = float(torch.linalg.matrix_norm(W))
    out = {
        "frobenius": float(torch.linalg.matrix_norm(R)),
        "mean_abs": float(R.abs().mean()),
        "frobenius_plain": float(torch.linalg.matrix_norm(E)),
        "mean_abs_plain": float(E.abs().mean()),
    }
    out["rel_frobenius"] = out["frobenius"] / fro_w if fro_w > 0 else 0.0
    out["rel_frobenius_plain"] = out["frobenius_plain"] / fro_w if fro_w > 0 else 0.0
    return out


def result_at_rank(dec: ErrorSVD, W, rank, *, a_format, b_format, factor_axis="last", metrics=True) -> LowRankResult:
    W = _check_weight(W)
    rank = check_rank(rank, W.shape)
    A, B = dec.factors(rank)
    A_q, B_q, A_deq, B_deq = quantize_factors(A, B, a_format, b_format, factor_axis)
    _check_factor_product(A_deq, B_deq, dec)
    res = LowRankResult(dec.w_q, A_q, B_q, dec.w_deq, A_deq, B_deq, rank, dec.S.detach().to(torch.float32).clone())
    if metrics:
        R = torch.addmm(dec.E.T, A_deq, B_deq, alpha=-1.0)  # E^T - A B, one fused product
        res.metrics = _metrics(W, dec.E, R)
        res.metrics["kind"] = dec.kind
    return res


def approximate(W, *, w_format, a_format, b_format, rank, scale=None, svd="full", factor_axis="last",
                xtx=None, qera_approx=False, n_tokens=1, oversample=16, niter=2, seed=0, metrics=True) -> LowRankResult:
    """LQER (scale=None, xtx=None), L2QER (scale vector), QERA-exact (xtx), QERA-approx
    (xtx and qera_approx=True). Returns a LowRankResult; see the module docstring."""
    W = _check_weight(W)
    rank = check_rank(rank, W.shape)
    dec = decompose(W, w_format=w_format, rank=rank, scale=scale, svd=svd, xtx=xtx, qera_approx=qera_approx,
                    n_tokens=n_tokens, oversample=oversample, niter=niter, seed=seed)
    return result_at_rank(dec, W, rank, a_format=a_format, b_format=b_format, factor_axis=factor_axis, metrics=metrics)


def approximate_ranks(W, ranks, *, w_format, a_format, b_format, scale=None, svd="full", factor_axis="last",
                      xtx=None, qera_approx=False, n_tokens=1, metrics=True) -> dict:
    """{rank: LowRankResult} for many ranks from ONE decomposition (randomized: at max(ranks))."""
    W = _check_weight(W)
    ranks = sorted({check_rank(r, W.shape) for r in ranks})
    if not ranks:
        raise ValueError("ranks is empty")
    dec = decompose(W, w_format=w_format, rank=ranks[-1], scale=scale, svd=svd, xtx=xtx, qera_approx=qera_approx,
                    n_tokens=n_tokens)
    return {r: result_at_rank(dec, W, r, a_format=a_format, b_format=b_format, factor_axis=factor_axis,
                              metrics=metrics) for r in ranks}


def output_error(W, Wapprox, X) -> float:
    """||X W^T - X Wapprox^T||_F for inputs X (tokens x in), float64."""
    X = torch.as_tensor(X).to(torch.float64)
    D = (torch.as_tensor(W) - torch.as_tensor(Wapprox)).to(torch.float64)
    return float(torch.linalg.matrix_norm(X @ D.T))


__all__ = ["LowRankResult", "ErrorSVD", "approximate", "approximate_ranks", "decompose", "quantize_factors",
           "error_metrics", "randomized_svd", "sym_sqrt", "rms_scale", "output_error", "check_rank", "check_scale"]
_ = math
