"""LRC: Low-Rank Correction for quantized weights AND activations (Scetbon & Hensman 2024).

Layer: y = W_q Q_a(x) + U V^T x, with U (d_out x k), V (d_in x k) acting on the
UNquantized input. Per layer, with calibration inputs X (tokens x d_in) and Y = Q_a(X),
LRC minimises the layer loss

    L(W_q, U, V) = || W X^T - W_q Y^T - U V^T X^T ||_F^2

computed from the float64 covariances Sigma_x = X^T X, Sigma_y = Y^T Y, Sigma_xy = X^T Y
(lqer.covariance), by alternating (derivations: ../shared/reference/lrc_qera_facts.md):

* W-step (U, V fixed): L = ||(W_q - T) Sigma_y^{1/2}||^2 + const with
  T = (W - U V^T) Sigma_xy Sigma_y^{-1}: GPTQ (lqer.gptq) on target T, Hessian Sigma_y.
* UV-step (W_q fixed): reduced-rank regression. B = (W Sigma_x - W_q Sigma_yx) Sigma_x^{-1}
  (= W - W_q Sigma_yx Sigma_x^{-1}), U = top-k eigenvectors of B Sigma_x B^T, V = B^T U.
  With Y = X this is QERA's exact solution.
* init="closed_form": relax W_q to real values: U = top-k eigenvectors of W S W^T with
  S = Sigma_x - Sigma_xy Sigma_y^{-1} Sigma_yx, V = W^T U. init="zero": U = V = 0.
  The order is init, then (W-step, UV-step) x iterations; LRC(1) is one W-step + UV-step.

Damping: lambda = damp * mean(diag Sigma_y) is added to Sigma_y wherever it is inverted
(W-step target, closed-form init) and is GPTQ's damping. Sigma_x (UV-step) gets only a
1e-8-relative ridge, so the UV-step is the exact minimiser of L (with a ridge lambda the
step minimises L + lambda ||U V^T||^2 instead, which can raise L slightly); the full
damping on Sigma_x is used only if that factorisation fails. If a UV-step would raise L
(damping fallback or the randomized eigensolver) the previous factors are kept, so
logged UV-steps never increase the loss. The logged losses are always the undamped L.

Rank: ``mxsim.Rank`` (or an int, or a float fraction read ``of_min_dim``): absolute, or a
fraction read as ``of_min_dim`` (k = floor(f * min(d_in, d_out))) or ``of_params``
(k = floor(f d_in d_out / (d_in + d_out))); both floor, at least 1. 4096 x 4096 at 10%: 409
and 204. The whole-model method ``lrc`` (lqer.methods) reads its options from
lqer.options.LRCOptions.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

import mxsim
from mxsim.rank import Rank

from .covariance import CovarianceStats, cholesky_, symmetrize_
from .gptq import gptq

__all__ = ["lrc", "LRCResult", "layer_loss", "uv_step", "quantize_factors", "top_eigvecs",
           "lowrank_bits_per_element"]

def lowrank_bits_per_element(lowrank_format) -> float:
    """Storage bits per factor element: None (float32 as stored here) 32, "fp16" 16, mxsim format."""
    if lowrank_format is None:
        return 32.0
    if isinstance(lowrank_format, str) and lowrank_format.lower() in ("fp16", "float16"):
        return 16.0
    return float(mxsim.get_format(lowrank_format).bits_per_element)


def quantize_factors(U: torch.Tensor, V: torch.Tensor, lowrank_format):
    """Round the factors: None keeps them, "fp16" casts, an mxsim format blocks V along d_in
    (axis 0, the reduction of V^T x) and U along k (axis 1, the reduction of U (V^T x))."""
    if lowrank_format is None:
        return U, V
    if isinstance(lowrank_format, str) and lowrank_format.lower() in ("fp16", "float16"):
        return U.half().to(U.dtype), V.half().to(V.dtype)
    fmt = mxsim.get_format(lowrank_format)
    return mxsim.fake_quantize(U, fmt, axis=1), mxsim.fake_quantize(V, fmt, axis=0)


def top_eigvecs(K: torch.Tensor, k: int, solver: str = "auto", seed: int = 0, oversample: int | None = None,
                power_iters: int = 4):
    """Top-k eigenpairs of the symmetric PSD matrix K: (values descending, vectors).

    solver "eigh": full torch.linalg.eigh (exact). "randomized": subspace iteration with
    Rayleigh-Ritz (k + oversample columns, ``power_iters`` passes). "auto": eigh up to
    2048 rows, randomized above (exact test coverage uses eigh)."""
    d = K.shape[0]
    if solver == "auto":
        solver = "eigh" if d <= 2048 or k > d // 3 else "randomized"
    if solver == "eigh":
        w, Q = torch.linalg.eigh(K)
        return w.flip(0)[:k], Q.flip(1)[:, :k]
    if solver != "randomized":
        raise ValueError(f"unknown eigen solver {solver!r}; allowed: auto, eigh, randomized")
    p = min(d, k + (oversample if oversample is not None else max(16, k // 8)))
    g = torch.Generator(device="cpu").manual_seed(seed)
    Om = torch.randn(d, p, generator=g, dtype=K.dtype).to(K.device)
    Qm, _ = torch.linalg.qr(K @ Om)
    for _ in range(power_iters):
        Qm, _ = torch.linalg.qr(K @ Qm)
    Bm = Qm.T @ K @ Qm
    w, S = torch.linalg.eigh(0.5 * (Bm + Bm.T))
    return w.flip(0)[:k], (Qm @ S.flip(1))[:, :k]


@dataclasses.dataclass
class LRCResult:
    weight: torch.Tensor          # W_q (on the w_format grid), dtype of W
    U: torch.Tensor               # d_out x k (after lowrank_format rounding)
    V: torch.Tensor               # d_in x k
    rank: int
    losses: list                  # [(step name, layer loss)], undamped, from the covariances
    w_format: object = None
    a_format: object = None
    lowrank_format: object = None
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.losses[-1][1]

    def bits_per_weight(self) -> float:
        d_out, d_in = self.weight.shape
        wb = mxsim.get_format(self.w_format).bits_per_element * d_out * d_in
        fb = lowrank_bits_per_element(self.lowrank_format) * self.rank * (d_in + d_out)
        return (wb + fb) / (d_out * d_in)


class _Problem:
    """Precomputed products of one layer's loss; all float64 on the stats' device.

    Memory (d_in^2 float64 = 0.97 GB at d_in = 11008, a 7B down_proj; the statistics are three
    of those): the Cholesky factors of Sigma_x and Sigma_y are made where they are used and
    dropped before GPTQ (``drop_factors``), which factorises its own Hessian; each is computed
    in the memory of its damped copy (lqer.covariance.cholesky_). Recomputing a factor gives
    the same bits, so the results do not depend on this."""

    def __init__(self, W, stats: CovarianceStats, damp: float, name: str):
        stats.check(d_in=W.shape[1], name=name)
        dev = stats.sx.device
        self.W = W.detach().to(dev, torch.float64)
        self.sx, self.sy, self.sxy = stats.sx, stats.sy, stats.sxy
        self.stats = stats
        self.name = name
        self.damp = damp
        self.lam_x = None  # fixed by the first factorisation of Sigma_x
        self.lam_y = damp * torch.diagonal(self.sy).mean().item()
        self._Lx = self._Ly = None
        # W Sigma_x and W Sigma_xy are recomputed where needed (one matmul each) instead of
        # being kept: two d_out x d_in float64 matrices less at peak.
        self.c0 = ((self.W @ self.sx) * self.W).sum().item()  # tr(W Sigma_x W^T) = ||W X^T||^2

    @property
    def Lx(self):
        # The UV-step is a plain least-squares problem: Sigma_x gets only a tiny ridge
        # (1e-8 relative) so that the step stays the exact minimiser of L; the full damping
        # is the fallback when that factorisation fails.
        if self._Lx is None:
            if self.lam_x is None:
                tiny = 1e-8 * torch.diagonal(self.sx).mean().item()
                Lx, info = cholesky_(self._damped(self.sx, tiny))
                if info.item() == 0 and self.damp > 0:
                    self._Lx, self.lam_x = Lx, tiny
                    return Lx
                del Lx
                self.lam_x = self.damp * torch.diagonal(self.sx).mean().item()
            self._Lx = self._chol(self._damped(self.sx, self.lam_x), "Sigma_x")
        return self._Lx

    @property
    def Ly(self):
        if self._Ly is None:
            self._Ly = self._chol(self._damped(self.sy, self.lam_y), "Sigma_y")
        return self._Ly

    def drop_factors(self):
        self._Lx = self._Ly = None

    @staticmethod
    def _damped(M, lam):
        out = M + M.T
        out.mul_(0.5)
        torch.diagonal(out).add_(lam)
        return out

    def _chol(self, M, what):
        L, info = cholesky_(M)
        del M
        if info.item() != 0:
            raise ValueError(
                f"{self.name}: {what} (+ damping {self.damp}) is not positive definite: too few calibration "
                f"tokens ({self.stats.n}) for width {self.stats.d_in} or degenerate inputs; use at least "
                f"{2 * self.stats.d_in} tokens or a larger damp")
        return L

    def wq_products(self, Wq):
        """(tr(W_q Sigma_y W_q^T), W_q Sigma_yx): the product with Sigma_y is not kept."""
        return ((Wq @ self.sy) * Wq).sum(), Wq @ self.sxy.T

    def loss(self, Wq, U, V, t3=None, WqSyx=None):
        """||W X^T - W_q Y^T - U V^T X^T||^2 from the covariances (low-rank terms kept cheap);
        t3 = tr(W_q Sigma_y W_q^T) if already known."""
        if t3 is None:
            t3 = ((Wq @ self.sy) * Wq).sum()
        if WqSyx is None:
            WqSyx = Wq @ self.sxy.T
        SxV = self.sx @ V
        t1 = self.c0 - 2 * (U * (self.W @ SxV)).sum() + ((V.T @ SxV) * (U.T @ U)).sum()
        # tr(W Sxy Wq^T) = sum(W * (Wq Syx)); tr(U V^T Sxy Wq^T) = sum(U * (Wq Syx V))
        t2 = (self.W * WqSyx).sum() - (U * (WqSyx @ V)).sum()
        return float(t1 - 2 * t2 + t3)

    def uv_step(self, WqSyx, k, solver, seed):
        R = self.W @ self.sx
        R.sub_(WqSyx)                                        # (W Sx - Wq Syx) = B (Sx + lam)
        Gt = torch.linalg.solve_triangular(self.Lx, R.T, upper=False)  # G^T = Lx^{-1} R^T
        del R
        K = Gt.T @ Gt                                        # B (Sx+lam) B^T
        K.add_(K.T.clone()).mul_(0.5)
        _, U = top_eigvecs(K, k, solver, seed)
        del K
        # V = B^T U = (Sx+lam)^{-1} R^T U = Lx^{-T} (G^T U)
        V = torch.linalg.solve_triangular(self.Lx.T, Gt @ U, upper=True)
        return U, V

    def closed_form_init(self, k, solver, seed):
        Mt = torch.linalg.solve_triangular(self.Ly, (self.W @ self.sxy).T, upper=False)  # (W Sxy Ly^-T)^T
        K = (self.W @ self.sx) @ self.W.T
        K.sub_(Mt.T @ Mt)                                                   # W S W^T
        del Mt
        K.add_(K.T.clone()).mul_(0.5)
        _, U = top_eigvecs(K, k, solver, seed)
        del K
        return U, self.W.T @ U

    def target(self, U, V):
        """(W - U V^T) Sigma_xy (Sigma_y + lam)^{-1}."""
        Qc = self.W @ self.sxy
        Qc.sub_(U @ (V.T @ self.sxy))
        # two triangular solves = cholesky_solve bit for bit; cholesky_solve would copy Ly (d_in^2)
        Y = torch.linalg.solve_triangular(self.Ly, Qc.T, upper=False)
        del Qc
        return torch.linalg.solve_triangular(self.Ly.mT, Y, upper=True).T


def _dot64(A, B, rows: int = 256) -> float:
    """sum(A * B) in float64 by row blocks: the products of float32 entries are exact in float64
    and no d_out x d_in temporary (nor a float64 copy of one) is made."""
    total = 0.0
    for i in range(0, A.shape[0], rows):
        total += float((A[i:i + rows].double() * B[i:i + rows].double()).sum())
    return total


class _Problem32(_Problem):
    """float32 statistics (``LRCOptions.stats_dtype="float32"``): products and factors in
    float32, every scalar sum of the loss in float64 (the loss is a small difference of large
    traces). Memory (a 7B down_proj: d_in^2 float32 = 0.48 GB, the statistics 1.45 GB): the
    factor Ly of Sigma_y + lambda is made once and handed to GPTQ as its factor (GPTQ damps
    Sigma_y by the same lambda), which forms H^-1 and its upper factor in Ly's memory and
    returns tr(W_q (Sigma_y + lambda) W_q^T) (t3 needs no Sigma_y afterwards); with
    ``stats.exclusive`` Ly is made in Sigma_y's own memory and Sigma_xy is freed after its last
    use, so at most three d_in^2 matrices are alive (Sigma_x, Sigma_xy, Ly / GPTQ's factor;
    the UV-step: Sigma_x, Lx). Exclusive or not, the arithmetic is the same (tested)."""

    def __init__(self, W, stats: CovarianceStats, damp: float, name: str):
        stats.check(d_in=W.shape[1], name=name)
        dev = stats.sx.device
        self.W = W.detach().to(dev, torch.float32)
        self.sx, self.sy, self.sxy = stats.sx, stats.sy, stats.sxy
        self.exclusive = stats.exclusive
        if self.exclusive:  # this problem owns the matrices now: its deletions free them
            stats.sx = stats.sy = stats.sxy = None
        self.stats = dataclasses.replace(stats, sx=self.sx, sy=None, sxy=None)  # n, d_in for messages
        self.name = name
        self.damp = damp
        self.lam_x = None
        self.lam_y = damp * torch.diagonal(self.sy).double().mean().item()
        self.dead = torch.diagonal(self.sy) <= 0  # inputs that never fire: quantized to zero, as gptq
        self._Lx = self._Ly = None
        self.c0 = _dot64(self.W @ self.sx, self.W)

    @property
    def Ly(self):
        if self._Ly is None:
            if self.exclusive:  # symmetrize_ + ridge = _damped's bits, in Sigma_y's memory
                M, self.sy = symmetrize_(self.sy), None
                torch.diagonal(M).add_(self.lam_y)
                self._Ly = self._chol(M, "Sigma_y")
                del M
            else:
                self._Ly = self._chol(self._damped(self.sy, self.lam_y), "Sigma_y")
        return self._Ly

    def w_step(self, T, w_format, block, keep):
        """GPTQ on target T (overwritten) with Ly as its factor; (W_q, t3). ``keep``: another
        iteration follows (Ly is copied for GPTQ and Sigma_xy kept)."""
        T[:, self.dead] = 0.0
        L = self.Ly.clone() if keep else self.Ly
        if not keep:
            self._Ly = None
        self._Lx = None  # recomputed for the UV-step (the same bits)
        Wq, info = gptq(self.W, None, w_format, target=T, factor=L, lam=self.lam_y, block=block,
                        overwrite_target=True, return_info=True, hessian_trace=True)
        del L
        t3 = info["hessian_trace"] - self.lam_y * _dot64(Wq, Wq)
        return Wq, t3

    def wq_products(self, Wq, keep=True):
        WqSyx = Wq @ self.sxy.T
        if self.exclusive and not keep:
            self.sxy = None  # its last use
        return WqSyx

    def loss(self, Wq, U, V, t3=None, WqSyx=None):
        if t3 is None or WqSyx is None:
            raise ValueError("the float32 loss needs t3 and W_q Sigma_yx")
        SxV = self.sx @ V
        t1 = self.c0 - 2 * _dot64(U, self.W @ SxV) + _dot64(V.T @ SxV, U.T @ U)
        t2 = _dot64(self.W, WqSyx) - _dot64(U, WqSyx @ V)
        return float(t1 - 2 * t2 + t3)


def uv_step(W, Wq, stats: CovarianceStats, rank, *, damp=0.0, solver="eigh", seed=0):
    """One UV-step on its own (W_q fixed): returns (U, V) float64."""
    pr = _Problem(W, stats, damp, "layer")
    Wq64 = Wq.detach().to(pr.W.device, torch.float64)
    k = Rank.of(rank).resolve(W.shape[1], W.shape[0])
    return pr.uv_step(Wq64 @ pr.sxy.T, k, solver, seed)


def layer_loss(W, Wq, U, V, stats: CovarianceStats) -> float:
    """||W X^T - W_q Y^T - U V^T X^T||^2 from the statistics (U, V may be None)."""
    pr_W = W.detach().to(stats.sx.device, torch.float64)
    Wq = Wq.detach().to(pr_W.device, torch.float64)
    if U is None:
        U = torch.zeros(W.shape[0], 1, dtype=torch.float64, device=pr_W.device)
        V = torch.zeros(W.shape[1], 1, dtype=torch.float64, device=pr_W.device)
    U = U.to(pr_W.device, torch.float64)
    V = V.to(pr_W.device, torch.float64)
    sx, sy, sxy = stats.sx, stats.sy, stats.sxy
    E = pr_W - U @ V.T
    return float((E @ sx * E).sum() - 2 * (E @ sxy * Wq).sum() + (Wq @ sy * Wq).sum())


def lrc(W, stats: CovarianceStats, *, w_format, a_format=None, rank, iterations: int = 1,
        init: str = "closed_form", damp: float = 0.01, lowrank_format=None,
        gptq_block: int = 128, act_order: bool = False, solver: str = "auto", seed: int = 0,
        name: str = "layer", log=None) -> LRCResult:
    """Low-Rank Correction of one linear layer (W: d_out x d_in). See the module doc.

    stats: CovarianceStats of the layer input collected with ``a_format`` (checked if given).
    Returns an LRCResult; ``losses`` holds the layer loss after init and after every step
    (and after rounding the factors when lowrank_format is set). ``log``: optional callable
    receiving each (step, loss).
    """
    t0 = time.perf_counter()
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise ValueError(f"{name}: W must be a 2-d tensor (d_out x d_in)")
    if not isinstance(stats, CovarianceStats):
        raise ValueError(f"{name}: stats must be CovarianceStats (lqer.covariance), got {type(stats).__name__}")
    if a_format is not None and stats.a_format is not None and mxsim.get_format(a_format) != stats.a_format:
        raise ValueError(f"{name}: statistics were collected with activation format {stats.a_format}, "
                         f"not {mxsim.get_format(a_format)}")
    if init not in ("closed_form", "zero"):
        raise ValueError(f"init must be 'closed_form' or 'zero', got {init!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if not (isinstance(damp, (int, float)) and damp >= 0 and math.isfinite(damp)):
        raise ValueError(f"damp must be a finite number >= 0, got {damp!r}")
    w_format = mxsim.get_format(w_format)
    d_out, d_in = W.shape
    k = Rank.of(rank).resolve(d_in, d_out)
    if not torch.isfinite(W).all():
        raise ValueError(f"{name}: W contains NaN or Inf")
    lean = stats.sx.dtype == torch.float32
    pr = (_Problem32 if lean else _Problem)(W, stats, damp, name)
    dt = pr.W.dtype
    losses = []

    def record(step, value):
        if not math.isfinite(value):
            raise ValueError(f"{name}: loss became {value} at {step} (ill-conditioned statistics?)")
        losses.append((step, value))
        if log is not None:
            log(step, value)

    if init == "closed_form":
        U, V = pr.closed_form_init(k, solver, seed)
    else:
        U = torch.zeros(d_out, k, dtype=dt, device=pr.W.device)
        V = torch.zeros(d_in, k, dtype=dt, device=pr.W.device)
    Wq = WqSyx = None
    for it in range(1, iterations + 1):
        WqSyx = None  # the previous iteration's product is not needed any more
        T = pr.target(U, V)
        if lean:
            if act_order:
                raise ValueError(f"{name}: act_order needs float64 statistics")
            Wq, t3 = pr.w_step(T, w_format, gptq_block, keep=it < iterations)
            del T
            WqSyx = pr.wq_products(Wq, keep=it < iterations)
        else:
            pr.drop_factors()  # GPTQ factorises its own Hessian: two d_in^2 matrices less at its peak
            Wq = gptq(pr.W, pr.sy, w_format, target=T, damp=damp, block=gptq_block, act_order=act_order,
                      overwrite_target=True)
            del T
            t3, WqSyx = pr.wq_products(Wq)
        record(f"w_step{it}", pr.loss(Wq, U, V, t3, WqSyx))
        Un, Vn = pr.uv_step(WqSyx, k, solver, seed + it)
        new_loss = pr.loss(Wq, Un, Vn, t3, WqSyx)
        if new_loss <= losses[-1][1]:
            U, V = Un, Vn
        else:  # only possible through damping or an approximate eigensolver: keep the old factors
            new_loss = losses[-1][1]
        record(f"uv_step{it}", new_loss)
    if lowrank_format is not None:
        U, V = quantize_factors(U, V, lowrank_format)
        record("factors_rounded", pr.loss(Wq, U.to(dt), V.to(dt), t3, WqSyx))
    if not (torch.isfinite(U).all() and torch.isfinite(V).all()):
        raise ValueError(f"{name}: non-finite low-rank factors (ill-conditioned statistics)")
    return LRCResult(weight=Wq.to(W.dtype).to(W.device), U=U, V=V, rank=k, losses=losses, w_format=w_format,
                     a_format=stats.a_format, lowrank_format=lowrank_format, seconds=time.perf_counter() - t0)
