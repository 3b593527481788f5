"""GPTQ onto mxsim block formats, for any Hessian and any target matrix.

``gptq(W, H, fmt)`` minimises ``||(W_q - T) H^{1/2}||_F^2`` over W_q on the format's grid,
column by column (Frantar et al.'s GPTQ with the Cholesky form of the inverse Hessian and
lazy batch updates), where ``T`` is ``target`` if given, else ``W``. With H = X^T X
(X: tokens x d_in) this is the layer output error ||(W - W_q) X^T||^2; LRC's W-step uses
H = Sigma_y and T = (W - U V^T) Sigma_xy Sigma_y^{-1} (see lqer/lrc.py).

Blocks run along the input dimension (rows of W are output channels, the format's blocks
are consecutive input columns). A block's shared exponent is fixed when GPTQ reaches the
block's first column (in visiting order), from the block's *current, error-updated*
weights; later columns of the block are rounded with that fixed exponent (values beyond its
range clamp to the largest element, as a hardware block would).

Every rounding goes through mxsim. mxsim has no "quantize with a given scale" entry point,
so the fixed exponent is imposed by pinning: each column is quantized as a 2-element block
``[pin, w]`` where ``pin`` is a power of two whose exponent mxsim turns into exactly the
block's scale and ``w`` is clipped to the range that keeps that exponent. The pin is
derived from the scale code mxsim.quantize returns for the block; no rounding grid is
written here.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import mxsim
from mxsim.formats import BlockFP, MXFPFormat, MXIntFormat, NVFP4Format

__all__ = ["gptq", "block_pins", "quantize_with_pins"]


def _as_f64(x, name, device=None):
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")
    x = x.detach()
    if device is not None:
        x = x.to(device)
    return x.to(torch.float64)


def block_pins(values: torch.Tensor, fmt):
    """Pin and clip level per row for a block whose current values are ``values`` (rows x <=k).

    Returns (pin, cap) float64 tensors of length rows: quantizing the 2-element block
    ``[pin, clip(w, -cap, cap)]`` with mxsim uses exactly the scale mxsim chose for ``values``.
    """
    q = mxsim.quantize(values.detach().to("cpu", torch.float64).numpy(), fmt, axis=-1)
    codes = np.asarray(q.scales).reshape(values.shape[0], -1)
    if codes.shape[1] != 1:
        raise AssertionError("block_pins expects the columns of exactly one block")
    codes = codes[:, 0].astype(np.int64)
    if isinstance(fmt, (MXIntFormat, MXFPFormat)):
        if np.any(codes == fmt.scale.nan_code):
            raise ValueError("GPTQ: a weight block contains NaN or Inf (mxsim gave it a NaN scale)")
        rule = fmt.scale.rule.value
        s = codes - fmt.scale.bias
        e = s + fmt.emax_elem
        if rule == "floor":  # exponent of the block maximum: floor(log2 amax) = e
            pin = np.ldexp(1.0, e)
            cap = np.nextafter(np.ldexp(1.0, e + 1), 0.0)  # anything below 2^(e+1) keeps the scale
        elif rule == "even":  # amax in [2^e (1 - 2^-(m+2)), 2^(e+1) (1 - 2^-(m+2))) gives e
            m = fmt.element_bits - 2 if isinstance(fmt, MXIntFormat) else fmt.mantissa_bits
            pin = np.ldexp(1.0, e)
            cap = np.nextafter(np.ldexp(1.0 - 2.0 ** -(m + 2), e + 1), 0.0)
        elif rule == "ceil":  # amax in (2^(e-1), 2^e]: the top of the range is the pin
            pin = np.ldexp(1.0, e)
            cap = pin.copy()
        else:  # rceil: amax / element_max in (2^(s-1), 2^s]; element_max * 2^s is exact
            pin = np.ldexp(float(fmt.element_max), s)
            cap = pin.copy()
    elif isinstance(fmt, NVFP4Format):
        if fmt.two_level:
            raise ValueError("GPTQ/LRC: two-level NVFP4 (a per-tensor scale) is not supported; use NVFP4")
        units, nan = q.scale_units()  # E4M3 block scales in units of 2^-9
        if np.any(nan):
            raise ValueError("GPTQ: a weight block contains NaN or Inf (mxsim gave it a NaN scale)")
        # a block max of 6 * sc gives the scale sc again (fl32(6 sc / 6) = sc, sc has 4 bits)
        pin = 6.0 * np.ldexp(units.reshape(values.shape[0], -1)[:, 0].astype(np.float64), -9)
        cap = pin.copy()
    elif isinstance(fmt, BlockFP):
        if np.any(codes == fmt.nan_code):
            raise ValueError("GPTQ: a weight block contains NaN or Inf (mxsim gave it a NaN scale)")
        e = codes - fmt.bias  # ceil(log2 amax)
        pin = np.ldexp(1.0, e)
        cap = pin.copy()  # ceil(log2 |w|) <= e for |w| <= 2^e
    else:  # pragma: no cover - formats are a closed set
        raise ValueError(f"unsupported format {fmt!r}")
    dev = values.device
    return torch.from_numpy(pin).to(dev), torch.from_numpy(cap).to(dev)


def quantize_with_pins(w: torch.Tensor, pin: torch.Tensor, cap: torch.Tensor, fmt) -> torch.Tensor:
    """Round the column ``w`` (float64) with the fixed per-row block scale given by (pin, cap)."""
    v = torch.maximum(torch.minimum(w, cap), -cap)
    pair = torch.stack([pin, v], dim=1).cpu().numpy()
    out = mxsim.fake_quantize(pair, fmt, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out[:, 1])).to(w.device)


def gptq(W, H, fmt, *, target=None, damp=0.01, block=128, act_order=False, return_info=False,
         overwrite_target=False, factor=None, lam=0.0, hessian_trace=False):
    """Quantize ``W`` (d_out x d_in) onto ``fmt`` (blocks along d_in) with GPTQ.

    H: d_in x d_in positive semi-definite Hessian (e.g. X^T X). target: the matrix W_q should
    approximate in the H metric (default W; W then only fixes shape, dtype and device).
    damp: lambda = damp * mean(diag H) is added to the diagonal before the Cholesky
    factorisation. block: lazy-update batch width (columns). act_order: visit columns by
    decreasing diag(H); block exponents are still fixed at the first visited column of each
    format block, from its current updated weights.

    factor (instead of H, which is then None): the lower Cholesky factor L of the damped
    Hessian H + lam I, already made (LRC's float32 W-step shares it with its target), in any
    float dtype; it is overwritten (H^-1 and its upper factor are formed in its memory) and the
    work runs in its dtype. No act_order, no dead-input handling (H + lam I is definite).
    hessian_trace: info also holds tr(W_q (H + lam I) W_q^T) = ||W_q U^-1||^2 (U^T U = (H +
    lam I)^-1), summed in float64, for a caller that no longer holds H.

    Returns W_q (dtype and device of W); with return_info=True, (W_q, info) where info holds
    the column order and the damping used.
    """
    fmt = mxsim.get_format(fmt)
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise ValueError("W must be a 2-d tensor (d_out x d_in)")
    out_dtype, dev = W.dtype, W.device
    T = _as_f64(W if target is None else target, "target", dev) if factor is None else \
        _as_work(W if target is None else target, "target", dev, factor)
    if not (overwrite_target and isinstance(target, torch.Tensor) and T.data_ptr() == target.data_ptr()):
        T = T.clone()  # (overwrite_target: a target of the work dtype on W's device is used as work space)
    if T.shape != W.shape:
        raise ValueError(f"target shape {tuple(T.shape)} != W shape {tuple(W.shape)}")
    d_out, d_in = T.shape
    if factor is not None:
        if H is not None or act_order:
            raise ValueError("gptq: give either H or factor (and no act_order with a factor)")
        if factor.shape != (d_in, d_in):
            raise ValueError(f"factor must be {d_in} x {d_in} (d_in x d_in), got {tuple(factor.shape)}")
        if not (block >= 1 and isinstance(block, int)):
            raise ValueError(f"block must be a positive integer, got {block!r}")
        return _gptq_factored(W, T, factor, fmt, block, lam, return_info, hessian_trace)
    H = _as_f64(H, "H", dev).clone()
    if H.shape != (d_in, d_in):
        raise ValueError(f"H must be {d_in} x {d_in} (d_in x d_in), got {tuple(H.shape)}")
    if not torch.isfinite(H).all() or not torch.isfinite(T).all():
        raise ValueError("GPTQ: H and the target must be finite")
    from .covariance import check_second_moment, cholesky_, symmetrize_

    check_second_moment(H, "GPTQ: H")  # symmetric, diagonal >= 0 (a zero diagonal is a dead input)
    if not (isinstance(block, int) and block >= 1):
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if not (damp >= 0 and math.isfinite(damp)):
        raise ValueError(f"damp must be >= 0, got {damp!r}")
    symmetrize_(H)  # in place: d_in^2 float64 is 0.97 GB at d_in = 11008 (a 7B down_proj)

    diag = torch.diagonal(H)
    dead = diag <= 0
    if dead.any():  # inputs that never fire: any value is optimal, quantize zero
        H[dead, dead] = 1.0
        T[:, dead] = 0.0
    if act_order:
        perm = torch.argsort(torch.diagonal(H), descending=True, stable=True)
    else:
        perm = torch.arange(d_in, device=dev)
    invperm = torch.argsort(perm)
    if act_order:
        T = T[:, perm]
        H = H[perm][:, perm]
    lam = damp * torch.diagonal(H).mean().item()
    torch.diagonal(H).add_(lam)
    # H -> its Cholesky factor L -> H^-1 -> the upper factor U of H^-1, all in H's memory (one
    # d_in x d_in matrix instead of two at a time; the same factors bit for bit, lqer.covariance.cholesky_)
    L, info = cholesky_(H)
    del H
    if info.item() != 0:
        raise ValueError(
            "GPTQ: the damped Hessian is not positive definite (Cholesky failed at column "
            f"{info.item()}); increase damp (now {damp}) or use more calibration tokens")
    Wq, U, perm = _gptq_solve(T, L, fmt, block, perm, invperm)
    Wq = Wq[:, invperm] if act_order else Wq  # (the identity permutation would only copy)
    Wq = Wq.to(out_dtype)
    if return_info:
        return Wq, {"perm": perm, "damp_lambda": lam}
    return Wq


def _as_work(x, name, dev, factor):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch tensor")
    return x.detach().to(dev, factor.dtype)


def _gptq_factored(W, T, L, fmt, block, lam, return_info, hessian_trace):
    perm = torch.arange(T.shape[1], device=W.device)
    Q, U, _ = _gptq_solve(T, L, fmt, block, perm, perm)
    del T
    info = {"perm": perm, "damp_lambda": lam}
    if hessian_trace:
        X = torch.linalg.solve_triangular(U, Q, upper=True, left=False)  # Q U^-1
        info["hessian_trace"] = sum(float(x.double().square().sum()) for x in X.split(256))
        del X
    del U
    Wq = Q.to(W.dtype)
    return (Wq, info) if return_info else Wq


def _gptq_solve(T, L, fmt, block, perm, invperm):
    """The column loop on the target T (overwritten) with the lower factor L of the damped
    Hessian (overwritten): returns (Q in visiting order, U, perm)."""
    from .covariance import cholesky_

    d_out, d_in = T.shape
    dev = T.device
    Hinv = torch.cholesky_inverse(L, out=L)
    del L
    U, _ = cholesky_(Hinv, upper=True)
    del Hinv

    k = fmt.block_size
    nblocks = -(-d_in // k)
    perm_l = perm.tolist()
    invperm_l = invperm.tolist()
    pins = torch.zeros(d_out, nblocks, dtype=torch.float64, device=dev)
    caps = torch.zeros_like(pins)
    have = [False] * nblocks
    # Q is written into T: a batch's columns of T are dead once the batch is copied to W1 (only
    # later columns are read and updated), so T's memory holds W_q in the end (one d_out x d_in less)
    Q = T

    # the per-column quantize calls are tiny (d_out x 2): mxsim runs such calls on the calling
    # thread (mxsim.kernels.serial_if_small), where a parallel launch would wait for its pool
    if dev.type == "cpu":
        _gptq_loop(T, U, Q, fmt, d_in, block, perm_l, invperm_l, pins, caps, have, dev)
    else:
        # Column by column a GPU is launch- and sync-bound (each column goes through the
        # CPU kernels anyway): run the loop on CPU copies, the factorisations stay on the GPU.
        cpu = torch.device("cpu")
        Tc, pc, cc = T.cpu(), pins.cpu(), caps.cpu()
        Qc = Tc
        _gptq_loop(Tc, U.cpu(), Qc, fmt, d_in, block, perm_l, invperm_l, pc, cc, have, cpu)
        Q.copy_(Qc)

    return Q, U, perm


def _gptq_loop(T, U, Q, fmt, d_in, block, perm_l, invperm_l, pins, caps, have, dev):
    k = fmt.block_size
    for i1 in range(0, d_in, block):
        i2 = min(i1 + block, d_in)
        W1 = T[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = perm_l[i1 + i]
            b = col // k
            w = W1[:, i]
            if k == 1:
                q = torch.as_tensor(mxsim.fake_quantize(w[:, None].cpu().numpy(), fmt, axis=-1)[:, 0]).to(dev)
            else:
                if not have[b]:
                    cols = range(b * k, min((b + 1) * k, d_in))
                    pos = [invperm_l[c] for c in cols]  # all >= i1 + i: the block is unvisited
                    vals = []
                    for p in pos:
                        if p < i2:
                            vals.append(W1[:, p - i1])
                        else:  # outside this batch: apply the pending lazy update
                            vals.append(T[:, p] - Err1[:, :i] @ U[i1:i1 + i, p])
                    pins[:, b], caps[:, b] = block_pins(torch.stack(vals, 1), fmt)
                    have[b] = True
                q = quantize_with_pins(w, pins[:, b], caps[:, b], fmt)
            Q[:, i1 + i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        if i2 < d_in:
            T[:, i2:] -= Err1 @ U[i1:i2, i2:]
