"""The one place experiments/ touches lqer, hwmodel and mxsim (thin adapters, no maths here).

Everything that depends on the exact names of the packages' functions lives in this module,
so the report and the sweep read as plain steps. Models, token windows and calibration
statistics are memoised per process (a Dask worker evaluates many points with one load).
"""

from __future__ import annotations

import copy
from functools import lru_cache

from .grid import LOW_RANK, DesignPoint

_MODELS: dict = {}
_WINDOWS: dict = {}
_STATS: dict = {}


# ----------------------------------------------------------------------------- model and data
def get_model(model: str, device: str):
    """(model, tokenizer), loaded once per process and device (lqer caches the dequantized GGUF)."""
    from lqer.model import load_model
    from mxsim.errors import user_input

    key = (str(model), device)
    if key not in _MODELS:
        with user_input("--model"):  # lqer's ValueErrors here are about the file (unreadable, not a model)
            m, tok = load_model(model=model, device=device)
        m._mxlab_source = (str(model), device)  # lets ``quantized`` reload a fresh copy from the cache
        _MODELS[key] = (m, tok)
    return _MODELS[key]


def get_windows(tokenizer, seq_len: int, n_windows: int | None, model_key: str = ""):
    """WikiText-2 test windows (n, seq_len); n_windows=None: the whole split."""
    from lqer.data import load_wikitext, token_windows

    key = (model_key, seq_len, n_windows)
    if key not in _WINDOWS:
        _WINDOWS[key] = token_windows(tokenizer, load_wikitext("test"), seq_len, n_windows)
    return _WINDOWS[key]


def perplexity(model, windows, progress: bool = True) -> float:
    from lqer.evaluate import perplexity as ppl

    # On a GPU one window per forward is launch-bound (the emulated quantizers are many small
    # kernels); 8 windows of equal length per batch give the same sums in another order.
    on_gpu = next(model.parameters()).device.type != "cpu"
    return float(ppl(model, windows, batch_size=8 if on_gpu else 1, progress=progress))


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    import os

    return f"CPU ({os.cpu_count()} cores, torch {torch.__version__})"


# ----------------------------------------------------------------------------- configs
def check_preset(name: str) -> None:
    from lqer.config import load_config

    from .util import UserError

    try:
        load_config(name)
    except ValueError as e:
        raise UserError(str(e)) from None


@lru_cache(maxsize=None)
def _preset(name: str):
    from lqer.config import load_config

    return load_config(name)


def describe_preset(name: str) -> str:
    from lqer.config import format_to_str

    c = _preset(name)
    return (f"W {format_to_str(c.w_format)}, x {format_to_str(c.x_format)}, A/B {format_to_str(c.a_format)}"
            f"/{format_to_str(c.b_format)} (factor blocks along the {c.factor_axis} dim), k={c.rank}")


def config_rank(name: str, method: str) -> int:
    return int(_preset(name).rank) if method in LOW_RANK else 0


def make_config(preset: str, method: str, rank: int | None = None):
    kw = {"method": method}
    if rank is not None:
        kw["rank"] = rank
    return _preset(preset).replace(**kw)


def point_config(p: DesignPoint, factor_axis: str | None = None):
    """QuantConfig for a sweep point: MXINT<w>/<block> weights, MXINT<a>/<block> activations,
    factors as the W4A8 preset (MXINT8/16)."""
    from lqer.config import parse_format

    kw = dict(method=p.method, w_format=parse_format(f"MXINT{p.w_bits}/{p.block}"),
              x_format=parse_format(f"MXINT{p.a_bits}/{p.block}"), name=p.label)
    if p.method in LOW_RANK:
        kw["rank"] = p.rank
    if factor_axis:
        kw["factor_axis"] = factor_axis
    return _preset("W4A8").replace(**kw)


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


def fresh_model(model: str, device: str):
    """A new copy of the model to quantize in place (re-read from lqer's on-disk cache: ~1 s,
    cheaper than deepcopy)."""
    from lqer.model import load_model

    m, _ = load_model(model=model, device=device)
    return m


# ----------------------------------------------------------------------------- calibration
# One forward pass feeds every method: a MultiObserver per layer holds one observer of each
# kind the requested methods need; ``stats_for`` hands each method the kind it asks for.
def _observer_kinds(methods):
    from lqer.methods import get_method

    kinds = {}
    for m in methods:
        if m == "fp":
            continue
        meth = get_method(m)
        if meth.observer is not None:
            kinds[m] = meth.observer
    return kinds


def calibrate(model, tok, n_samples: int, seq_len: int, seed: int, methods, progress: bool = True):
    """{"per_method_factory": ..., "observers": {layer: MultiObserver}} from one calibration pass."""
    from lqer.calibrate import MultiObserver, run_calibration
    from lqer.data import calibration_batches

    kinds = _observer_kinds(methods)
    if not kinds:
        return {"observers": None, "methods": {}}
    batches = calibration_batches(tok, n_samples, seq_len, seed)

    def factory(name, module):
        return MultiObserver(**{m: f(name, module) for m, f in kinds.items()})

    obs = run_calibration(model, batches, factory, progress=progress)
    return {"observers": obs, "methods": set(kinds), "n_tokens": int(batches.numel())}


def stats_for(stats, method: str):
    """The {layer: observer} dict ``quantize_model`` expects for ``method`` (None if data-free)."""
    if stats is None or stats.get("observers") is None or method not in stats["methods"]:
        if _observer_kinds([method]):
            raise ValueError(f"method {method!r} needs calibration statistics that were not collected")
        return None
    return {name: mo[method] for name, mo in stats["observers"].items()}


def outlier_counts(stats) -> dict | None:
    if stats is None or "llm_int8" not in stats.get("methods", ()):
        return None
    return {name: int(mo["llm_int8"].count) for name, mo in stats["observers"].items()}


class quantized:
    """``with quantized(model, "W3A8", method="lqer", stats=stats, rank=8) as (qmodel, info)``.

    Quantizes a fresh copy (the fp model stays intact) and frees it on exit."""

    def __init__(self, model, preset, method, stats, rank=None, config=None, progress=True, max_blocks=None,
                 svd=None):
        self.model, self.preset, self.method, self.stats, self.rank = model, preset, method, stats, rank
        self.config, self.progress, self.max_blocks, self.svd = config, progress, max_blocks, svd

    def __enter__(self):
        from lqer.calibrate import linear_layers
        from lqer.quantize import quantize_model

        cfg = self.config if self.config is not None else make_config(self.preset, self.method, self.rank)
        if self.svd:
            cfg = cfg.replace(svd=self.svd)
        layers = selected_layers(self.model, self.max_blocks)
        # quantize the model in place, keeping the original nn.Linear modules so that __exit__
        # puts them back: no copy of the model is needed (lqer only reads their weights)
        self.saved = {n: m for n, m in linear_layers(self.model).items() if layers is None or n in layers}
        try:
            self.qm, self.info = quantize_model(self.model, cfg, stats=stats_for(self.stats, cfg.method),
                                                progress=self.progress, layers=layers)
        except BaseException:
            self._restore()
            raise
        return self.qm, self.info

    def _restore(self):
        for name, mod in self.saved.items():
            parent, _, leaf = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, leaf, mod)

    def __exit__(self, *exc):
        self._restore()
        self.qm = None
        return False


def selected_layers(model, max_blocks):
    """None (every decoder linear) or the linears of the first ``max_blocks`` decoder blocks
    (for smoke tests: the rest of the model stays in full precision)."""
    if max_blocks is None:
        return None
    import re

    from lqer.calibrate import linear_layers

    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1:
        raise ValueError(f"max_blocks must be a positive integer or None (every block), got {max_blocks!r}")
    out = []
    for n in linear_layers(model):
        m = re.search(r"layers\.(\d+)\.", n)
        if m and int(m.group(1)) < max_blocks:
            out.append(n)
    if not out:
        raise ValueError(f"max_blocks={max_blocks} selects no decoder linear layer (names like 'model.layers.0.*')")
    return out


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
    from lqer.calibrate import linear_layers

    lins = linear_layers(model)
    if layer not in lins:
        from .util import UserError

        raise UserError(f"--spectrum-layer {layer!r} is not a quantizable linear layer (e.g. {next(iter(lins))})")
    W = lins[layer].weight.detach().float().cpu()
    cfg = _preset(preset)
    s = stats_for(stats, "l2qer")[layer].scale()
    plain = decompose(W, w_format=cfg.w_format).S
    scaled = decompose(W, w_format=cfg.w_format, scale=s.cpu()).S
    return {"plain": plain.double().numpy(), "scaled": scaled.double().numpy()}


# ----------------------------------------------------------------------------- hardware
HW_DESIGNS = [
    # (label, hwmodel design, params); formats as the report's W4A8 preset
    ("FP16", "fp16", {}),
    ("MXINT W4A8", "mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16"}),
    ("MXINT W3A8", "mxint", {"w_fmt": "MXINT3/16", "x_fmt": "MXINT8/16"}),
    ("(L2)QER-MXINT W4A8 k=32", "lqer-mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16", "lr_fmt": "MXINT8/16", "rank": 32}),
    ("LLM.int8()", "llm.int8", {}),
    ("LLM.int4()", "llm.int4", {}),
    ("GPTQ/AWQ W4 (FP16 compute)", "gptq", {}),
]


def _fmt_params(params: dict) -> dict:
    from lqer.config import parse_format

    return {k: (parse_format(v) if k.endswith("_fmt") else v) for k, v in params.items()}


def model_area(shape: str, design: str, params: dict, tech: str = "fpga", outliers=None):
    """(totals row, breakdown) of one design over every linear layer of a model shape."""
    from hwmodel.report import canonical, model_report

    d = canonical(design)
    r = model_report(shape, [d], tech=tech, params={d: _fmt_params(params)}, outliers=outliers)
    return r.totals.iloc[0].to_dict(), r.breakdown


def hardware_tables(out, tech: str = "fpga", outliers=None) -> dict:
    """Area per design for SmolLM2 and LLaMA-7B shapes, the paper table, breakdown plots."""
    import pandas as pd
    from hwmodel.paper import paper_table

    from . import figures

    tables, md = {}, []
    for shape, tag in (("smollm2-135m", "smollm2"), ("llama-7b", "llama7b")):
        rows, bds = [], []
        for label, design, params in HW_DESIGNS:
            o = outliers if (tag == "smollm2" and design.startswith("llm")) else None
            tot, bd = model_area(shape, design, params, tech, o)
            rows.append({"design": label, "hwmodel_design": design, "area": tot["area"], "unit": tot["unit"],
                         "on_chip_memory_bits": tot["on_chip_memory_bits"],
                         "offchip_bytes_per_token": tot["offchip_bytes_per_token"], "cycles": tot["cycles"]})
            bds.append(bd.assign(design=label))
        df = pd.DataFrame(rows)
        df["area_ratio_to_fp16"] = df["area"] / float(df.loc[df.design == "FP16", "area"].iloc[0])
        tables[f"area_{tag}"] = df
        bd = pd.concat(bds, ignore_index=True)
        tables[f"breakdown_{tag}"] = bd
        figures.breakdown_plot(bd, out / f"hw_breakdown_{tag}.png",
                               title=f"Area of one time-shared unit for {shape}'s largest linear layer ({tech})")
    pt = paper_table(tech)
    tables["paper"] = pt
    unit = tables["area_smollm2"]["unit"].iloc[0]
    note = ("LLM.int8()/int4() outlier columns per layer: calibrated on SmolLM2 (|x| > 6 on the calibration "
            "tokens)" if outliers else "LLM.int8()/int4() outlier columns: hwmodel's default") + "; LLaMA-7B uses hwmodel's default."
    md.append(f"Each design is one hardware unit time-shared over all linear layers (hwmodel's whole-model view: the area "
              f"is the largest unit's; memory and cycles add up), technology `{tech}`, area in {unit}. L2QER and LQER "
              f"have the same datapath (L2QER's scale is folded into A). {note}\n")
    for tag, shape in (("smollm2", "SmolLM2-135M"), ("llama7b", "LLaMA-7B")):
        show = tables[f"area_{tag}"][["design", "area", "area_ratio_to_fp16", "on_chip_memory_bits",
                                      "offchip_bytes_per_token", "cycles"]]
        md.append(f"### {shape} layer shapes\n\n![breakdown](hw_breakdown_{tag}.png)\n\n"
                  f"*Stacked area per component for each design's largest unit; look for the LQER-MXINT bar staying "
                  f"close to plain MXINT and far below FP16 and the LLM.int8()/GPTQ designs.* "
                  f"Data: [hw_area_{tag}.csv](hw_area_{tag}.csv), [hw_breakdown_{tag}.csv](hw_breakdown_{tag}.csv).\n\n"
                  + show.to_markdown(index=False, floatfmt=".4g") + "\n")
    cols = [c for c in ("design", "rows", "paper_area", "paper_ratio", "model_ratio", "diff_%", "fit_ratio",
                        "fit_diff_%", "within_10%_fit") if c in pt.columns]
    md.append("### Model vs the paper's figures (one LLaMA-7B MLP layer, x 1×4096 · W 4096×11008, k = 32)\n\n"
              "*Ratios to FP16: the paper's (authors' workbook) beside hwmodel's, with the difference; "
              "`fit` rows use hwmodel's documented one-parameter FP16 fit. Gaps are explained in "
              "[hw_paper.csv](hw_paper.csv) (columns assumptions, gap).*\n\n"
              + pt[cols].to_markdown(index=False, floatfmt=".4g") + "\n")
    return {"tables": tables, "markdown": "\n".join(md)}


def area_for_point(p: DesignPoint, shape: str, tech: str, outliers=None, factor_axis: str | None = None):
    """(area, unit) of a sweep point's datapath over a model shape's linear layers."""
    w, x = f"MXINT{p.w_bits}/{p.block}", f"MXINT{p.a_bits}/{p.block}"
    if p.method == "llm_int8":
        design, params = "llm.int8", {}
    else:
        design, params = method_design(p.method, w, x, p.rank, "MXINT8/16", factor_axis)
    tot, _ = model_area(shape, design, params, tech, outliers if design.startswith("llm") else None)
    return float(tot["area"]), str(tot["unit"])


def method_design(method: str, w_fmt: str, x_fmt: str, rank, lr_fmt: str, lr_block_axis: str | None = None):
    """(hwmodel design, params) of an lqer method's datapath: fp -> fp16; plain/rtn/gptq -> mxint;
    lqer/l2qer/qera -> lqer-mxint (factors ``lr_fmt``); lrc, lrc<i> -> lrc (FP16 factors; LRC(i) for
    any number of iterations is the same hardware)."""
    if method == "fp":
        return "fp16", {}
    if method in ("plain", "rtn", "gptq"):
        return "mxint", {"w_fmt": w_fmt, "x_fmt": x_fmt}
    if method in ("lqer", "l2qer", "qera"):
        params = {"w_fmt": w_fmt, "x_fmt": x_fmt, "lr_fmt": lr_fmt, "rank": rank}
        if lr_block_axis:
            params["lr_block_axis"] = lr_block_axis
        return "lqer-mxint", params
    if method == "lrc" or (method.startswith("lrc") and method[3:].isdigit()):
        return "lrc", {"w_fmt": w_fmt, "x_fmt": x_fmt, "rank": rank}
    raise ValueError(f"no hardware design for method {method!r}")


def lrc_row_design(row: dict, shape: str = "smollm2-135m", block: int = 32) -> tuple[str, dict, int | None]:
    """(hwmodel design, params, rank) for one row of ``benchmarks/bench_lrc.py model`` (keys setting
    "W<w>A<a>", method fp/rtn/gptq/lqer/l2qer/qera/lrc<i>, rank fraction or None, rotation).

    Formats mirror bench_lrc's ``_configs``: W MXINT<w>/block, x MXINT<a>/block; LQER/L2QER/QERA-exact:
    factors A, B MXINT8/block blocked along their last dimension, x·A re-quantized into x's format
    (lqer-mxint's xA cast); LRC(i): FP16 factors on the unquantized x (LRC(1) and LRC(5) are the same
    hardware). Rank: the design is one unit time-shared by all linears, sized for the largest, so it
    gets the largest per-layer rank under lqer's ``of_min_dim`` reading (SmolLM2: 57 at 10%, 172 at 30%).
    Rotation (every method but fp, which has none): "auto" (lqer.rotation: Hadamard for power-of-two
    widths, else a dense random orthogonal R) is "hadamard" when every linear's input width is a power
    of two, else "dense" (SmolLM2's 576 and 1536 are not); "random" is "dense"."""
    from hwmodel.shapes import get_model as get_shape
    from lqer.lrc import rank_from_fraction

    method = str(row["method"]).lower()
    if method == "fp":
        return "fp16", {}, None
    setting = str(row["setting"]).upper()
    try:
        w_bits, a_bits = (int(v) for v in setting.lstrip("W").split("A"))
    except ValueError:
        raise ValueError(f"setting must look like 'W4A8', got {row['setting']!r}") from None
    w, x = f"MXINT{w_bits}/{block}", f"MXINT{a_bits}/{block}"
    layers = [L for _, _, L in get_shape(shape).layer_shapes("all", 1)]
    rank = None
    if method in ("lqer", "l2qer", "qera") or method.startswith("lrc"):
        frac = row.get("rank")
        if frac is None:
            raise ValueError(f"method {method!r} needs a rank fraction, got None")
        rank = max(rank_from_fraction(float(frac), L.in_features, L.out_features, "of_min_dim") for L in layers)
    rot = str(row.get("rotation") or "none").lower()
    if rot == "auto":
        rot = "hadamard" if all(L.in_features & (L.in_features - 1) == 0 for L in layers) else "dense"
    elif rot == "random":
        rot = "dense"
    design, params = method_design(method, w, x, rank, f"MXINT8/{block}", "last")
    if rot != "none":
        params["input_rotation"] = rot
    return design, params, rank


def area_for_lrc_row(row: dict, shape: str = "smollm2-135m", tech: str = "fpga") -> tuple[float, str]:
    """(area, unit) of the hwmodel design for one ``bench_lrc.py model`` row (see lrc_row_design)."""
    design, params, _ = lrc_row_design(row, shape)
    tot, _ = model_area(shape, design, params, tech)
    return float(tot["area"]), str(tot["unit"])


# ----------------------------------------------------------------------------- a sweep point
def evaluate_point(p: DesignPoint, settings: dict) -> dict:
    """Perplexity, bits per weight and area of one design point (runs inside a Dask worker)."""
    from .util import resolve_device

    device = resolve_device(settings.get("device") or "auto")
    model, tok = get_model(settings["model"], device)
    windows = get_windows(tok, settings["seq_len"], settings["windows"], settings["model"])
    shape = settings.get("hw_shape") or "smollm2-135m"
    outliers = None
    if p.method == "fp":
        ppl, bits = perplexity(model, windows, progress=False), 16.0
    else:
        cfg = point_config(p, settings.get("factor_axis"))
        if settings.get("svd"):
            cfg = cfg.replace(svd=settings["svd"])
        skey = (settings["model"], device, settings["calib_samples"], settings["calib_seq_len"], settings["seed"], p.method)
        if skey not in _STATS:
            _STATS[skey] = calibrate(model, tok, settings["calib_samples"], settings["calib_seq_len"],
                                     settings["seed"], [p.method], progress=False)
        stats = _STATS[skey]
        outliers = outlier_counts(stats)
        with quantized(model, None, p.method, stats, config=cfg, progress=False,
                       max_blocks=settings.get("max_blocks")) as (qm, info):
            ppl = perplexity(qm, windows, progress=False)
        bits = bits_per_weight(info)
    area, unit = area_for_point(p, shape, settings.get("tech", "fpga"), outliers, settings.get("factor_axis"))
    return {"perplexity": ppl, "bits_per_weight": bits, "area": area, "area_unit": unit, "device": device,
            "tokens": int(windows.numel())}
