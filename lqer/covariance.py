"""Second-moment statistics of a layer's input for LRC / GPTQ / QERA, in float64 (or float32).

For a layer input X (n tokens x d_in, rows are tokens) and Y = Q_a(X) (mxsim fake
quantization with the activation format, blocks along d_in):

    Sigma_x = X^T X,  Sigma_y = Y^T Y,  Sigma_xy = X^T Y   (all d_in x d_in, float64 sums)

(The reference writes X as d_in x n and Sigma_x = X X^T: the same matrices.) ``n`` counts
tokens. The sums are not divided by n; every use in lqer.lrc is invariant to a common scale.

``CovarianceObserver`` accumulates these from batches (any leading shape; the last
dimension is d_in). An optional ``transform`` (d_in x d_in, e.g. a rotation R) is applied
first, x <- x R, so the statistics describe the rotated input the quantized layer sees.
Use it as the observer of ``lqer.calibrate.run_calibration``, which feeds each distinct
input once (q/k/v and gate/up share one observer); ``lqer.quantize.collect_stats`` does that.

``dtype`` is the accumulation (and storage) dtype: float64 by default; float32 (LRC's
``stats_dtype``) halves the three d_in^2 matrices (2.9 GB -> 1.45 GB at a 7B down_proj's
d_in = 11008), at a relative rounding of ~1e-7 per entry and per accumulated batch instead of
~1e-16. ``exclusive`` says that one linear layer alone reads these statistics, so it may
overwrite them in place (lqer.lrc's float32 path factorises Sigma_x and Sigma_y in their own
memory); lqer.streaming sets it for an input read by a single linear layer (down_proj, o_proj).
"""

from __future__ import annotations

import dataclasses
import math

import torch

import mxsim

__all__ = ["CovarianceStats", "CovarianceObserver", "MIN_TOKENS_PER_DIM", "check_second_moment", "symmetrize_",
           "cholesky_"]

# relative tolerance for symmetry and for negative diagonals/eigenvalues (float64 sums of
# float32 activations are symmetric to ~1e-16 relative; an asymmetry of 1e-6 is a different matrix)
SYM_RTOL = 1e-6


def check_second_moment(M, name: str, n: int | None = None, keep_dtype: bool = False) -> torch.Tensor:
    """A second-moment matrix (X^T X, a GPTQ Hessian) as float64 (``keep_dtype``: a float32
    tensor stays float32, no d x d float64 copy): square (n x n), finite,
    symmetric and with a non-negative diagonal, within SYM_RTOL of its largest entry. Raises
    ValueError naming ``name`` (an indefinite matrix is caught where its eigenvalues or Cholesky
    factor are computed anyway: lqer.approximate.sym_sqrt, lqer.gptq)."""
    if not isinstance(M, torch.Tensor):
        import numpy as np

        if not isinstance(M, np.ndarray):
            raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(M).__name__}")
        M = torch.from_numpy(M)
    if M.is_complex() or M.dtype == torch.bool:
        raise ValueError(f"{name} must be real, got dtype {M.dtype}")
    M = M.detach()
    if not (keep_dtype and M.dtype == torch.float32):
        M = M.to(torch.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or (n is not None and M.shape[0] != n):
        want = f"({n}, {n})" if n is not None else "square"
        raise ValueError(f"{name} must be {want} (in x in), got shape {tuple(M.shape)}")
    if not torch.isfinite(M).all():
        raise ValueError(f"{name} contains NaN or Inf")
    lo, hi = torch.aminmax(M) if M.numel() else (torch.zeros(()), torch.zeros(()))
    scale = max(-float(lo), float(hi))  # max |M| without a d x d temporary
    if scale == 0.0:
        return M
    asym = _max_asymmetry(M)
    if asym > SYM_RTOL * scale:
        raise ValueError(f"{name} is not symmetric (max |M - M^T| = {asym:.3g}, max |M| = {scale:.3g}); "
                         "a second moment X^T X is symmetric positive semi-definite")
    d = torch.diagonal(M)
    if float(d.min()) < -SYM_RTOL * scale:
        i = int(torch.argmin(d))
        raise ValueError(f"{name} has negative diagonal entries (e.g. [{i}, {i}] = {float(d[i]):.3g}); "
                         "a second moment X^T X is positive semi-definite")
    return M

# Row blocks of the d x d helpers below: their temporaries are ROW_BLOCK x d instead of d x d
# (at d_in = 11008 in float64 a full temporary is 0.97 GB; LRC/GPTQ at 7B hold three statistics).
ROW_BLOCK = 1024


def _max_asymmetry(M: torch.Tensor) -> float:
    """max |M - M^T| (exact: the maximum does not depend on the order), by row blocks."""
    d, worst = M.shape[0], 0.0
    for i in range(0, d, ROW_BLOCK):
        worst = max(worst, float((M[i:i + ROW_BLOCK] - M[:, i:i + ROW_BLOCK].T).abs().max()))
    return worst


def symmetrize_(M: torch.Tensor) -> torch.Tensor:
    """M <- (M + M^T) / 2 in place, by blocks; bit-identical to ``M.add_(M.T.clone()).mul_(0.5)``
    (each entry is fl(fl(M_ab + M_ba) * 0.5) either way; addition commutes) without its d x d copy."""
    d = M.shape[0]
    for i in range(0, d, ROW_BLOCK):
        for j in range(i, d, ROW_BLOCK):
            S = M[i:i + ROW_BLOCK, j:j + ROW_BLOCK] + M[j:j + ROW_BLOCK, i:i + ROW_BLOCK].T
            S.mul_(0.5)
            M[i:i + ROW_BLOCK, j:j + ROW_BLOCK] = S
            M[j:j + ROW_BLOCK, i:i + ROW_BLOCK] = S.T
    return M


def cholesky_(M: torch.Tensor, upper: bool = False):
    """Cholesky factor of the symmetric M computed in M's own memory: (factor, info), the factor
    the same LAPACK call as ``torch.linalg.cholesky_ex(M, upper=upper)`` and M's contents replaced
    (MKL's result may differ in the last bits from a call on a differently aligned copy).

    LAPACK works on column-major storage; torch copies a row-major input into a column-major
    buffer first (one d x d temporary: 0.97 GB at d = 11008 in float64). M^T is a column-major
    view of the same memory and, M being symmetric, the same matrix, so factorising it with
    ``out=`` that view needs no copy. The factor is returned as that column-major view (any torch
    op takes it; ``.contiguous()`` would copy). A column-major M (such a view) is used as is."""
    if M.dim() != 2 or M.shape[0] != M.shape[1]:
        raise ValueError("cholesky_ needs a square matrix")
    if M.is_contiguous():
        M = M.mT
    elif not M.mT.is_contiguous():
        raise ValueError("cholesky_ needs a row- or column-major matrix")
    info = torch.empty((), dtype=torch.int32, device=M.device)
    torch.linalg.cholesky_ex(M, upper=upper, out=(M, info))
    return M, info


# n >= MIN_TOKENS_PER_DIM * d_in tokens are required before the statistics are used.
MIN_TOKENS_PER_DIM = 2


@dataclasses.dataclass
class CovarianceStats:
    sx: torch.Tensor   # X^T X
    sy: torch.Tensor   # Y^T Y
    sxy: torch.Tensor  # X^T Y
    n: int
    a_format: object = None
    exclusive: bool = False  # the reader may overwrite sx, sy, sxy (CovarianceObserver.exclusive)

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
            if nm != "sxy":  # X^T Y is not symmetric; X^T X and Y^T Y are
                check_second_moment(m, f"{name}: statistic {nm}", keep_dtype=True)
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

    def __init__(self, a_format, *, transform: torch.Tensor | None = None, device=None, dtype=torch.float64):
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        self.dtype = dtype
        self.exclusive = False  # one linear layer alone reads the statistics (see the module doc)
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
        x64 = x.to(dev, self.dtype)  # (named for the default dtype)
        y64 = y.to(dev, self.dtype)
        if self.sx is None:
            z = lambda: torch.zeros(d, d, dtype=self.dtype, device=dev)  # noqa: E731
            self.sx, self.sy, self.sxy = z(), z(), z()
        elif self.sx.shape[0] != d:
            raise ValueError(f"input width changed from {self.sx.shape[0]} to {d}")
        self.sx.addmm_(x64.T, x64)
        self.sy.addmm_(y64.T, y64)
        self.sxy.addmm_(x64.T, y64)
        self.n += x.shape[0]

    __call__ = update

    def result(self) -> CovarianceStats:
        """The statistics; an ``exclusive`` observer hands them over (it forgets them, so the
        one layer reading them can free or overwrite their memory) and cannot be read twice."""
        if self.sx is None:
            why = " (its exclusive statistics were already handed over)" if self.n else ""
            raise ValueError(f"no activations were observed (did the calibration run reach this layer?){why}")
        st = CovarianceStats(self.sx, self.sy, self.sxy, self.n, self.a_format, exclusive=self.exclusive)
        if self.exclusive:
            self.sx = self.sy = self.sxy = None
        return st
