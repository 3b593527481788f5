"""Token-level perplexity: exp(mean NLL over every predicted token of every window)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, batch_size: int = 1, progress: bool = True) -> float:
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError("windows must be a LongTensor of shape (n, seq_len) with seq_len >= 2")
    if windows.shape[0] < 1:
        raise ValueError("windows is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    total_nll, total_tok = 0.0, 0
    starts = range(0, windows.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="ppl", unit="batch", leave=False)
    for s in starts:
        ids = windows[s: s + batch_size].to(device)
        logits = model(input_ids=ids).logits.float()
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
        total_nll += float(nll)
        total_tok += ids[:, 1:].numel()
    return math.exp(total_nll / total_tok)
