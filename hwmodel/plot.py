"""Stacked area breakdown per design (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mxsim.files import atomic_write, check_output  # noqa: E402


def plot_breakdown(breakdown: pd.DataFrame, path, by: str = "component", title: str | None = None, log: bool = False):
    """One stacked bar per design, stacked by ``by`` ('component' or 'path'); saves a PNG at path."""
    if by not in ("component", "path"):
        raise ValueError(f"by must be 'component' or 'path', got {by!r}")
    if breakdown.empty:
        raise ValueError("breakdown is empty: nothing to plot")
    unit = breakdown["unit"].iloc[0]
    piv = breakdown.pivot_table(index="design", columns=by, values="area", aggfunc="sum", sort=False).fillna(0.0)
    piv = piv.loc[:, piv.sum(axis=0) > 0]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(piv)), 4.5))
    bottom = pd.Series(0.0, index=piv.index)
    cmap = plt.get_cmap("tab20")
    for i, col in enumerate(piv.columns):
        ax.bar(piv.index, piv[col], bottom=bottom, label=col, color=cmap(i % 20))
        bottom += piv[col]
    ax.set_ylabel(f"area ({unit})")
    if log:
        ax.set_yscale("log")
    ax.set_title(title or "area breakdown per design")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fmt = _image_format(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
    return path


def _image_format(path) -> str:
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    allowed = FigureCanvasBase.get_supported_filetypes()
    if fmt not in allowed:
        raise ValueError(f"image format {fmt!r} (from {str(path)!r}) is not one matplotlib writes "
                         f"(allowed: {', '.join(sorted(allowed))})")
    return fmt


def check_plot_path(path, what: str = "path") -> Path:
    """Before any work: ``path`` is writable and its suffix names an image format (UserError otherwise)."""
    from mxsim.errors import user_input

    path = check_output(path, what, "file")
    with user_input(what):
        _image_format(path)
    return path
