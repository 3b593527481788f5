"""WikiText-2 text (word-level form in ../shared/data) and token windows for ppl/calibration."""

from __future__ import annotations

import os
from pathlib import Path

import torch

SPLITS = {"valid": "valid.txt", "validation": "valid.txt", "test": "test.txt"}


def data_dir() -> Path:
    """$MXLAB_DATA, else ../shared/data relative to the repository root."""
    env = os.environ.get("MXLAB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _split_path(split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown wikitext-2 split {split!r}; allowed: valid, test")
    path = data_dir() / "wikitext-2" / SPLITS[split]
    if not path.is_file():
        raise ValueError(f"wikitext-2 {split} split not found at {str(path)!r} (set $MXLAB_DATA to the folder "
                         "holding wikitext-2/test.txt and valid.txt)")
    return path


def check_data(splits=("valid", "test")) -> None:
    """The text files a run will read exist: called by the CLIs before the model is loaded."""
    for split in splits:
        _split_path(split)


def load_wikitext(split: str = "test") -> str:
    return _split_path(split).read_text(encoding="utf-8")


def _encode(tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    return ids.reshape(-1).long()


def token_windows(tokenizer, text: str, seq_len: int, n_windows: int | None = None) -> torch.Tensor:
    """Consecutive non-overlapping windows of ``seq_len`` tokens: LongTensor (n, seq_len).
    ``n_windows=None`` takes every full window of the text."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    if n_windows is not None and (isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1):
        raise ValueError(f"n_windows must be None or an integer >= 1, got {n_windows!r}")
    if n_windows is not None:
        # tokenize only a prefix that is surely long enough (whitespace words >= ~1 token)
        words = text.split(" ")
        need = seq_len * n_windows
        if len(words) > 2 * need:
            text = " ".join(words[: 2 * need])
    ids = _encode(tokenizer, text)
    n_full = ids.numel() // seq_len
    if n_full < 1:
        raise ValueError(f"text has {ids.numel()} tokens, shorter than one window of seq_len={seq_len}")
    n = n_full if n_windows is None else min(n_windows, n_full)
    return ids[: n * seq_len].reshape(n, seq_len).clone()


def calibration_batches(tokenizer, n_samples: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens from valid.txt (seeded): (n, seq_len)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    ids = _encode(tokenizer, load_wikitext("valid"))
    if ids.numel() < seq_len + 1:
        raise ValueError(f"valid split has {ids.numel()} tokens, shorter than one window of seq_len={seq_len}")
    g = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, ids.numel() - seq_len + 1, (n_samples,), generator=g)
    return torch.stack([ids[s: s + seq_len] for s in starts.tolist()])
