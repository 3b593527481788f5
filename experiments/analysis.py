"""Per-layer metrics, error spectra and the emulator check for the report."""

from __future__ import annotations

from .configs import _preset
from .models import selected_layers


def bits_per_weight(info) -> float:
    return float(info["avg_bits_per_weight"])


def layer_metrics(info):
    """One row per quantized linear layer: layer, layer_index, module, metrics from lqer."""
    import re

    import pandas as pd

    rows = []
    for name, d in info["layers"].items():
        m = re.search(r"layers\.(\d+)\.", name)
        row = {"layer": name, "layer_index": int(m.group(1)) if m else -1, "module": name.rsplit(".", 1)[-1]}
        row.update({k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    return pd.DataFrame(rows)


def layer_error_metric(df):
    for m, label in (("rel_frobenius", "‖W − (W_q + (AB)ᵀ)‖_F / ‖W‖_F  (relative, log scale)"),
                     ("frobenius", "‖W − (W_q + (AB)ᵀ)‖_F  (weight units, log scale)"),
                     ("mean_abs", "mean |W − (W_q + (AB)ᵀ)|  (weight units, log scale)")):
        if m in df.columns:
            return m, label
    raise ValueError(f"lqer's per-layer info has no error metric (columns: {list(df.columns)})")


def default_spectrum_layer(model, max_blocks=None) -> str:
    from lqer.calibrate import linear_layers

    names = selected_layers(model, max_blocks) or list(linear_layers(model))
    mid = [n for n in names if ".mlp.down_proj" in n]
    return mid[len(mid) // 2] if mid else names[len(names) // 2]


def error_spectra(model, layer: str, stats, preset: str) -> dict:
    """Singular values of E^T and diag(s)·E^T for one layer (lqer.approximate.decompose)."""
    from lqer.approximate import decompose

    from .calibration import stats_for
    from lqer.calibrate import linear_layers

    lins = linear_layers(model)
    if layer not in lins:
        from .util import UserError

        raise UserError(f"--spectrum-layer {layer!r} is not a quantizable linear layer (e.g. {next(iter(lins))})")
    W = lins[layer].weight.detach().float().cpu()
    cfg = _preset(preset)
    s = stats_for(stats, _preset(preset).replace(method="l2qer"))[layer].scale()
    plain = decompose(W, w_format=cfg.w_format).S
    scaled = decompose(W, w_format=cfg.w_format, scale=s.cpu()).S
    return {"plain": plain.double().numpy(), "scaled": scaled.double().numpy()}


# ----------------------------------------------------------------------------- validation
def validation(quick: bool = False):
    """mxsim's numba-vs-torch-reference comparison (mxsim.validate.run_validation) on the formats
    this report uses: one row per case with n_values and n_mismatch."""
    from mxsim.formats import BlockFP, MXIntFormat
    from mxsim.validate import run_validation

    if quick:
        fmts, blocks = [MXIntFormat(4), MXIntFormat(8)], (16,)
    else:
        fmts, blocks = [MXIntFormat(b) for b in (2, 3, 4, 6, 8)] + [BlockFP(4), BlockFP(8)], (16, 32)
    return run_validation(formats=fmts, blocks=blocks, matmul=not quick)
