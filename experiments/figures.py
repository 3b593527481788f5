"""The report's and the sweep's figures (matplotlib, Agg backend; one function per figure)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402



def _color(method: str):
    """A method's colour (lqer.methods.Method.color); None (matplotlib's next colour) for a method
    without one or a name the registry does not know."""
    from lqer.methods import METHODS

    m = METHODS.get(method)
    return None if m is None else m.color


def _save(fig, path: Path):
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def normalise_spectrum(sv) -> np.ndarray:
    """Singular values scaled so that sqrt(sum sigma^2) (the Frobenius norm) is 1."""
    sv = np.asarray(sv, dtype=np.float64)
    n = np.sqrt((sv ** 2).sum())
    return sv / n if n > 0 else sv


def spectra_plot(sv_plain, sv_scaled, path: Path, layer: str, k: int | None = None) -> None:
    """Paper Fig. 1: singular values of E^T and of diag(s) E^T, each normalised to unit Frobenius norm."""
    a, b = normalise_spectrum(sv_plain), normalise_spectrum(sv_scaled)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.semilogy(np.arange(1, len(a) + 1), a, color=_color("lqer"), label="plain: $E^T$ (LQER)")
    ax.semilogy(np.arange(1, len(b) + 1), b, color=_color("l2qer"), label="scaled: diag(s) $E^T$ (L2QER)")
    if k:
        ax.axvline(k, color="k", ls=":", lw=1, label=f"rank k = {k}")
    ax.set_xlabel("singular value index i")
    ax.set_ylabel("σ_i / ‖·‖_F  (dimensionless, log scale)")
    ax.set_title(f"Quantization-error spectrum, {layer}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def rank_plot(df: pd.DataFrame, path: Path, fp_ppl: float | None = None, plain_ppl: float | None = None,
              title: str = "W3A8") -> None:
    """Paper Fig. 3: perplexity against rank k, one line per method (columns method, rank, perplexity)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for m, g in df.groupby("method", sort=False):
        g = g.sort_values("rank")
        ax.plot(g["rank"], g["perplexity"], "o-", color=_color(m), label=m.upper())
    if plain_ppl is not None:  # the report's baseline method (lqer.methods.baseline_method)
        from lqer.methods import baseline_method, get_method

        base = get_method(baseline_method())
        ax.axhline(plain_ppl, color=base.color, ls="--", lw=1, label=f"{base.label} ({plain_ppl:.2f})")
    if fp_ppl is not None:
        ax.axhline(fp_ppl, color="k", ls=":", lw=1, label=f"full precision ({fp_ppl:.2f})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank k of the low-rank correction (log2 scale)")
    ax.set_ylabel("WikiText-2 perplexity (lower is better)")
    ax.set_title(f"Perplexity vs rank, {title}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def layer_error_plot(df: pd.DataFrame, path: Path, metric: str, ylabel: str) -> None:
    """Paper Fig. 4: reconstruction error per decoder layer (columns layer_index, method, <metric>)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for m, g in df.groupby("method", sort=False):
        g = g.groupby("layer_index", as_index=False)[metric].mean().sort_values("layer_index")
        ax.plot(g["layer_index"], g[metric], "o-", ms=3, color=_color(m), label=m.upper())
    ax.set_yscale("log")
    ax.set_xlabel("decoder layer index")
    ax.set_ylabel(ylabel)
    ax.set_title("Reconstruction error per decoder layer (mean over the layer's linear modules)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def pareto_plot(df: pd.DataFrame, path: Path, tech: str | None = None) -> None:
    """Perplexity against area for every successful design point; the Pareto front joined by a line."""
    ok = df[(df["status"] == "ok") & df["area"].notna() & df["perplexity"].notna()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # colour: method; marker: the datapath's accumulator (the trade-off of issue 15)
    ok = ok.assign(accumulator=ok["accumulator"].fillna("float") if "accumulator" in ok else "float")
    accs = list(dict.fromkeys(ok["accumulator"]))
    markers = dict(zip(accs, "osD^v<>pPX*h"))
    for (m, a), g in ok.groupby(["method", "accumulator"], sort=False):
        lab = m if len(accs) == 1 else f"{m}, acc {a}"
        ax.scatter(g["area"], g["perplexity"], color=_color(m), marker=markers.get(a, "o"), label=lab, zorder=3)
    front = ok[ok["pareto"]].sort_values("area")
    if len(front):
        ax.plot(front["area"], front["perplexity"], "k--", lw=1, label="Pareto front", zorder=2)
    for _, r in ok.iterrows():
        ax.annotate(r["label"], (r["area"], r["perplexity"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    unit = ok["area_unit"].dropna().iloc[0] if "area_unit" in ok and ok["area_unit"].notna().any() else "area units"
    ax.set_xlabel(f"hardware area of the unit that runs every linear layer ({unit}{', ' + tech if tech else ''})")
    wide = len(ok) and ok["perplexity"].max() / ok["perplexity"].min() > 5
    ax.set_ylabel("WikiText-2 perplexity (lower is better" + (", log scale)" if wide else ")"))
    if wide:
        ax.set_yscale("log")
    ax.set_title("Design-space sweep: accuracy vs area", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def breakdown_plot(bd: pd.DataFrame, path: Path, title: str, by: str = "component") -> None:
    """Stacked area per design (rows of hwmodel's breakdown: design, component, area, unit)."""
    unit = bd["unit"].iloc[0]
    piv = bd.pivot_table(index="design", columns=by, values="area", aggfunc="sum", sort=False).fillna(0.0)
    piv = piv.loc[:, piv.sum(axis=0) > 0]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    bottom = np.zeros(len(piv))
    cmap = plt.get_cmap("tab20")
    for i, col in enumerate(piv.columns):
        ax.bar(range(len(piv)), piv[col].values, bottom=bottom, label=col, color=cmap(i % 20))
        bottom += piv[col].values
    ax.set_xticks(range(len(piv)), piv.index, rotation=25, ha="right", fontsize=8)
    ax.set_xlabel("design")
    ax.set_ylabel(f"area ({unit})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3, axis="y", which="both")
    _save(fig, path)
