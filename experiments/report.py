"""The main job's report: the LQER paper's figures on a real model, hardware areas, validation.

``run_report(settings)`` writes ``reports/<name>/report.md`` with the PNGs and CSVs it cites,
building everything in a temp directory that replaces ``reports/<name>`` in one rename.
One calibration pass feeds every method; the rank sweep reuses the table's rank-32 runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from . import analysis, calibration, datapath_table, figures, hardware, models
from . import configs as presets
from mxsim.errors import UserError, user_input
from mxsim.files import atomic_dir, check_output

from .util import Timer, resolve_device


# Which methods the table runs by default, which the figures need (the others may fail and are
# reported) and which have formats of their own (one row for every preset) are fields of lqer's
# method descriptors (lqer.methods.Method: in_default_table, report_required, own_formats), read
# when used, so a method registered after this import counts too.
def _table_methods() -> list[str]:
    from lqer.methods import table_methods

    return table_methods()


def _required_methods() -> list[str]:
    from lqer.methods import required_methods

    return required_methods()


def _own_formats(method: str) -> str | None:
    from lqer.methods import get_method

    return get_method(method).own_formats


def _check_methods(methods) -> None:
    """--methods: lqer's registered methods (lqer.methods), nothing listed again here."""
    from lqer.methods import method_names

    for m in methods:
        if m not in method_names():
            raise UserError(f"--methods: unknown method {m!r} (known: {', '.join(method_names())})")


def _description(method: str) -> str:
    from lqer.methods import get_method

    return get_method(method).description


def _run_configs(preset_names, methods):
    """The QuantConfigs a table run quantizes (what the shared calibration must cover)."""
    from lqer.methods import get_method

    return [presets.make_config(c, m) for c in preset_names for m in methods if not get_method(m).full_precision]


PROFILES = {
    # the CPU default: ~15 minutes on 2 cores (see docs/experiments.md for the measured time)
    "default": dict(windows=4, seq_len=512, calib_samples=4, calib_seq_len=512, ranks=[8, 32, 128]),
    "quick": dict(windows=2, seq_len=256, calib_samples=4, calib_seq_len=256, ranks=[8, 32]),
    "full": dict(windows=None, seq_len=1024, calib_samples=32, calib_seq_len=2048, ranks=[4, 8, 16, 32, 64, 128, 256]),
}


@dataclass
class ReportSettings:
    name: str = "smollm2-cpu"
    reports_dir: str = "reports"
    model: str = "smollm2-135m"
    device: str = "auto"
    windows: int | None = 4
    seq_len: int = 512
    full: bool = False
    calib_samples: int = 4
    calib_seq_len: int = 512
    seed: int = 0
    ranks: list[int] = field(default_factory=lambda: [8, 32, 128])
    configs: list[str] = field(default_factory=lambda: ["W4A8", "W3A8"])
    methods: list[str] = field(default_factory=_table_methods)
    rank_config: str = "W3A8"
    spectrum_layer: str | None = None
    quick: bool = False
    progress: bool = True
    max_blocks: int | None = None  # quantize only the first N decoder blocks (smoke tests)
    svd: str = "randomized"  # lqer's SVD for every quantized model ("full" as the paper; the spectra always use full)
    argv: list[str] = field(default_factory=list)

    @classmethod
    def profile(cls, which: str = "default", **kw) -> "ReportSettings":
        base = dict(PROFILES[which])
        if which == "full":
            base["full"] = True
            base["svd"] = "full"
        if which == "quick":
            base["quick"] = True
        tag = model_tag(kw.get("model") or cls.model)
        base["name"] = f"{tag}-" + {"default": "cpu", "quick": "quick", "full": "full"}[which]
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    @classmethod
    def from_args(cls, args) -> "ReportSettings":
        if args.full and args.windows is not None:
            raise UserError("--full evaluates the whole test split; do not combine it with --windows")
        if args.quick and args.full:
            raise UserError("--quick and --full contradict each other")
        which = "quick" if args.quick else "full" if args.full else "default"
        s = cls.profile(which, name=args.name, reports_dir=args.reports_dir, model=args.model, device=args.device,
                        windows=args.windows, seq_len=args.seq_len, calib_samples=args.calib_samples,
                        calib_seq_len=args.calib_seq_len, seed=args.seed, ranks=args.ranks, configs=args.configs,
                        spectrum_layer=args.spectrum_layer, progress=not args.no_progress, methods=args.methods,
                        svd=args.svd, max_blocks=args.max_blocks)
        s.argv = list(sys.argv[1:])
        s.validate()
        return s

    def validate(self) -> None:
        """Every check that needs no model, before any work (a mistake found after the table loses it)."""
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise UserError(f"--name must be a plain directory name, got {self.name!r}")
        check_output(Path(self.reports_dir), "--reports-dir", "dir")
        check_output(Path(self.reports_dir) / self.name, "--name (reports/<name>)", "dir")
        check_model(self.model)
        check_data_files()
        resolve_device(self.device)
        if self.rank_config not in self.configs:
            raise UserError(f"the rank sweep runs at {self.rank_config}; keep it in --configs (got {self.configs})")
        if self.svd not in ("full", "randomized"):
            raise UserError(f"--svd must be full or randomized, got {self.svd!r}")
        if 32 not in self.ranks:
            self.ranks = sorted(set(self.ranks) | {32})
        for c in self.configs:
            with user_input("--configs"):
                presets.check_preset(c)
        _check_methods(self.methods)
        for m in _required_methods():
            if m not in self.methods:
                raise UserError(f"the report needs method {m!r} (its figures compare against it); got {self.methods}")


def model_tag(model) -> str:
    """Short name of a model for report names: 'smollm2' for the bundled one, else the file/dir stem."""
    from lqer.model import is_default_model

    if is_default_model(model):
        return "smollm2"
    p = Path(str(model)).expanduser()
    stem = (p.stem if p.suffix.lower() == ".gguf" else p.name) or "model"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem).lstrip("._-") or "model"


def _model_label(model) -> str:
    """The model's name in table titles: 'SmolLM2-135M' for the bundled one, else its tag."""
    tag = model_tag(model)
    return "SmolLM2-135M" if tag == "smollm2" else tag


def model_description(model) -> str:
    from lqer.model import is_default_model

    if is_default_model(model):
        return "SmolLM2-135M-Instruct dequantized from its Q4_1 GGUF"
    p = Path(str(model)).expanduser()
    if p.suffix.lower() == ".gguf":
        return f"`{p.name}` dequantized from its GGUF"
    return f"the Hugging Face model in `{p}`, as stored"


def check_data_files() -> None:
    """WikiText-2's files exist ($MXLAB_DATA or ../shared/data) before the model loads."""
    from lqer.data import check_data

    with user_input("$MXLAB_DATA"):
        check_data()


def check_model(model) -> None:
    """The model argument names the bundled model, a GGUF file or an HF directory (nothing is loaded)."""
    from lqer.model import resolve_model_path

    with user_input("--model"):
        resolve_model_path(model)


def check_spectrum_layer(model, layer: str | None) -> None:
    if layer is None:
        return
    from lqer.calibrate import linear_layers

    lins = linear_layers(model)
    if layer not in lins:
        names = list(lins)
        raise UserError(f"--spectrum-layer {layer!r} is not a quantizable linear layer of the model "
                        f"(e.g. {', '.join(names[:2])}; {len(names)} in all)")


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _md(df: pd.DataFrame, floatfmt=".4g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt)


def _log(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the table
def ppl_table(model, tok, windows, stats, configs, methods, progress=True, log=_log, keep_info=(), max_blocks=None,
              svd=None):
    """Rows (config, method, rank, perplexity, bits_per_weight, seconds); infos for ``keep_info`` pairs."""
    import time

    from lqer.methods import get_method

    rows, infos = [], {}
    required = _required_methods()
    for cfg in configs:
        for m in methods:
            own = _own_formats(m)
            if own is not None and any(r["method"] == m for r in rows):
                continue  # its own formats: the same model for every preset, run once
            t = time.perf_counter()
            log(f"{cfg} {m}: quantize + perplexity on {windows.shape[0]}x{windows.shape[1]} tokens")
            if get_method(m).full_precision:  # the unquantized model, counted as the config's fp_bits
                bits = float(presets.make_config(cfg, m).options.fp_bits)
                ppl, rank, info = models.perplexity(model, windows, progress), 0, None
            else:
                try:
                    with calibration.quantized(model, cfg, method=m, stats=stats, progress=progress,
                                           max_blocks=max_blocks, svd=svd) as (qm, info):
                        ppl = models.perplexity(qm, windows, progress)
                except Exception as e:  # noqa: BLE001 - an optional method must not sink the report
                    if m in required:
                        raise
                    log(f"  -> FAILED: {type(e).__name__}: {e}")
                    rows.append({"config": own or cfg, "method": m, "rank": presets.config_rank(cfg, m),
                                 "perplexity": float("nan"), "bits_per_weight": float("nan"),
                                 "seconds": time.perf_counter() - t, "error": f"{type(e).__name__}: {e}"})
                    continue
                bits, rank = analysis.bits_per_weight(info), presets.config_rank(cfg, m)
            rows.append({"config": own or cfg, "method": m, "rank": rank, "perplexity": ppl,
                         "bits_per_weight": bits, "seconds": time.perf_counter() - t})
            if (cfg, m) in keep_info:
                infos[(cfg, m)] = info
            log(f"  -> ppl {ppl:.3f}, {bits:.3f} bits/weight ({rows[-1]['seconds']:.0f} s)")
    df = pd.DataFrame(rows)
    if "error" not in df.columns:
        df["error"] = None
    return df, infos


def check_table_args(args) -> None:
    """``mxlab table``'s arguments, before any work."""
    if args.full and args.windows is not None:
        raise UserError("--full evaluates the whole test split; do not combine it with --windows")
    check_output(Path(args.out), "--out", "dir")
    check_model(args.model)
    check_data_files()
    resolve_device(args.device)
    _check_methods(args.methods or _table_methods())
    for c in args.configs:
        with user_input("--configs"):
            presets.check_preset(c)


def run_table(args) -> Path:
    """``mxlab table``: the perplexity table alone (e.g. the full split on a CUDA GPU)."""
    check_table_args(args)
    out = Path(args.out)
    device = resolve_device(args.device)
    methods = args.methods or _table_methods()
    seq_len = args.seq_len or 1024
    n_windows = None if args.full else (args.windows or 4)
    timer = Timer()
    with timer("load"):
        model, tok = models.get_model(args.model, device)
        windows = models.get_windows(tok, seq_len, n_windows, str(args.model))
    with timer("calibration"):
        stats = calibration.calibrate(model, tok, args.calib_samples or 32, args.calib_seq_len or 2048, args.seed,
                                      _run_configs(args.configs, methods), progress=not args.no_progress)
    with timer("table"):
        df, _ = ppl_table(model, tok, windows, stats, args.configs, methods, progress=not args.no_progress)
    meta = {"device": device, "gpu": models.device_name(device), "model": args.model,
            "windows": int(windows.shape[0]), "seq_len": seq_len, "tokens": int(windows.numel()),
            "full_split": bool(args.full), "calib_samples": args.calib_samples or 32,
            "calib_seq_len": args.calib_seq_len or 2048, "seconds": round(timer.total, 1),
            "commit": _git_commit(), "command": "mxlab table " + " ".join(sys.argv[2:])}
    with atomic_dir(out) as tmp:
        df.to_csv(tmp / "table.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        (tmp / "table.md").write_text(
            f"# Perplexity table ({meta['gpu']})\n\n"
            f"WikiText-2 test, {'the whole split' if args.full else str(meta['windows']) + ' windows'} "
            f"({meta['tokens']} tokens, {seq_len} per window); {meta['seconds']} s.\n\n"
            f"`{meta['command']}`\n\n" + _md(_pretty_table(df)) + "\n")
    return out / "table.md"


def _pretty_table(df: pd.DataFrame) -> pd.DataFrame:
    t = df.copy()
    t["method"] = t["method"].map(_description)
    cols = ["config", "method", "rank", "perplexity", "bits_per_weight", "seconds"]
    if "error" in t.columns and t["error"].notna().any():
        cols.append("error")
    return t[cols]


# ----------------------------------------------------------------------------- the report
def run_report(s: ReportSettings) -> Path:
    from lqer.methods import baseline_method, get_method, rank_figure_methods

    timer = Timer()
    device = resolve_device(s.device)
    final = Path(s.reports_dir) / s.name
    _log(f"writing {final} (device {device})")
    with timer("load model + data"):  # before the report directory: a bad model leaves nothing behind
        model, tok = models.get_model(s.model, device)
        check_spectrum_layer(model, s.spectrum_layer)
        windows = models.get_windows(tok, s.seq_len, None if s.full else s.windows, s.model)
        hw_shape, hw_shape_error = hardware.report_shape(s.model, model)
    with atomic_dir(final) as out:
        sections: list[str] = []
        with timer("calibration"):
            _log(f"calibration: {s.calib_samples} x {s.calib_seq_len} tokens from the valid split")
            stats = calibration.calibrate(model, tok, s.calib_samples, s.calib_seq_len, s.seed,
                                          _run_configs(s.configs, s.methods), progress=s.progress)

        # 4. the table (first: its runs feed figures 3 and 4)
        keep = {(c, m) for c in s.configs for m in rank_figure_methods()}  # figure 4's layer records
        with timer("perplexity table"):
            table, infos = ppl_table(model, tok, windows, stats, s.configs, s.methods, s.progress, keep_info=keep,
                                     max_blocks=s.max_blocks, svd=s.svd)
        table.to_csv(out / "ppl_table.csv", index=False)

        # 1. spectra
        with timer("error spectra"):
            layer = s.spectrum_layer or analysis.default_spectrum_layer(model, s.max_blocks)
            sp = analysis.error_spectra(model, layer, stats, s.rank_config)
            pd.DataFrame({"index": range(1, len(sp["plain"]) + 1), "sigma_plain": sp["plain"],
                          "sigma_scaled": sp["scaled"],
                          "sigma_plain_normalised": figures.normalise_spectrum(sp["plain"]),
                          "sigma_scaled_normalised": figures.normalise_spectrum(sp["scaled"])}
                         ).to_csv(out / "fig1_spectra.csv", index=False)
            figures.spectra_plot(sp["plain"], sp["scaled"], out / "fig1_spectra.png", f"{layer} ({s.rank_config})", k=32)

        # 2. perplexity vs rank
        with timer("rank sweep"):
            rank_df = rank_sweep(model, windows, stats, s, table)
            rank_df.to_csv(out / "fig3_rank_sweep.csv", index=False)
            fp_rows = table.method.map(lambda m: get_method(m).full_precision).astype(bool)
            fp_ppl = float(table.loc[fp_rows, "perplexity"].iloc[0])
            base = (table.method == baseline_method()) & (table.config == s.rank_config)
            plain_ppl = float(table.loc[base, "perplexity"].iloc[0])
            figures.rank_plot(rank_df, out / "fig3_rank_sweep.png", fp_ppl, plain_ppl, title=s.rank_config)

        # 3. per-layer error
        with timer("per-layer error"):
            layer_df = pd.concat([analysis.layer_metrics(infos[k]).assign(config=k[0], method=k[1]) for k in sorted(keep)],
                                 ignore_index=True)
            layer_df.to_csv(out / "fig4_layer_error.csv", index=False)
            metric, ylabel = analysis.layer_error_metric(layer_df)
            figures.layer_error_plot(layer_df[layer_df.config == s.rank_config], out / "fig4_layer_error.png",
                                     metric, ylabel)

        # 5. hardware
        with timer("hardware model"):
            hw = hardware.hardware_tables(out, s.configs, s.methods, hw_shape, model_label=_model_label(s.model),
                                          tag=model_tag(s.model), outliers=calibration.outlier_counts(stats),
                                          shape_error=hw_shape_error)
            for name, df in hw["tables"].items():
                df.to_csv(out / f"hw_{name}.csv", index=False)

        # 5b. the real datapath (issue 15): short sub-grid by default, every accumulator on --full
        with timer("datapath accumulators"):
            dp_rows = datapath_section_rows(s, device)
            pd.DataFrame(dp_rows).reindex(columns=datapath_table.TABLE_COLUMNS).to_csv(out / "datapath_table.csv",
                                                                                       index=False)

        # 6. validation
        with timer("emulator validation"):
            val = analysis.validation(quick=s.quick)
            val.to_csv(out / "validation.csv", index=False)

        sections = _sections(s, device, windows, table, sp, layer, rank_df, layer_df, metric, hw, val)
        sections.insert(len(sections) - 1, datapath_section(s, dp_rows))
        timing = pd.DataFrame([{"step": k, "seconds": round(v, 1)} for k, v in timer.sections.items()])
        timing.loc[len(timing)] = {"step": "total", "seconds": round(timer.total, 1)}
        timing.to_csv(out / "timings.csv", index=False)
        header = _header(s, device, windows, timer.total)
        (out / "report.md").write_text(header + "\n".join(sections) + "\n## Timings\n\n" + _md(timing) + "\n")
        (out / "settings.json").write_text(json.dumps({**asdict(s), "device_resolved": device}, indent=2))
    _log(f"done in {timer.total:.0f} s: {final / 'report.md'}")
    return final / "report.md"


# the report's datapath sub-grid (experiments.datapath_table): plain W8A8 MXINT8, blocks of 32, one
# window, float emulation vs fused fp32 vs fixed point; --full runs the whole study on its windows
DATAPATH_SHORT = dict(settings=("W8A8-MXINT8",), blocks=(32,),
                      accumulators=("float", "fp32", "fixed:24:saturate", "fixed:20:wrap"), windows=1, seq=256)


def datapath_section_rows(s: ReportSettings, device) -> list[dict]:
    """The datapath study's rows for this report ([] with --quick: it is the smoke-test profile)."""
    if s.quick:
        return []
    if s.full:
        kw = dict(settings=datapath_table.SETTINGS, blocks=datapath_table.BLOCKS,
                  accumulators=datapath_table.FULL_ACCUMULATORS, windows=None, seq=s.seq_len)
    else:
        kw = dict(DATAPATH_SHORT)
    _log(f"datapath: {len(kw['settings']) * len(kw['blocks']) * len(kw['accumulators'])} rows")
    return [r for r, _ in datapath_table.run(s.model, kw["settings"], kw["blocks"], kw["accumulators"],
                                             windows=kw["windows"], seq=kw["seq"], calib=2, device=device,
                                             log=lambda m: None)]


def datapath_section(s: ReportSettings, rows: list[dict]) -> str:
    head = "## 5b. Accuracy under the real MX datapath (issue 15)\n\n"
    if not rows:
        return head + "*Skipped in the --quick profile; `python -m experiments.datapath_table` runs it.*\n"
    grid = "every setting, block and accumulator" if s.full else \
        f"the short sub-grid ({DATAPATH_SHORT['windows']} window of {DATAPATH_SHORT['seq']} tokens; --full: all)"
    return (head + f"*Every quantized GEMM on mxsim.matmul with the accumulator of the row ({grid}); fixed point "
            "with per-layer fraction bits from the calibrated partial-sum range "
            "(F = W - 1 - (floor(log2 max|S|) + 1)); 'ovf' = the fraction of outputs that overflow changed. Look for fp32 matching "
            "the float emulation and for the fixed-point width where perplexity leaves it.* "
            "Data: [datapath_table.csv](datapath_table.csv).\n\n"
            + datapath_table.markdown(rows) + "\n" + ("" if s.full else committed_datapath_study()))


def committed_datapath_study(results_dir=None) -> str:
    """The full study as committed (docs/results/datapath_table.csv and its meta): every setting,
    block and accumulator, which this run's short sub-grid samples; "" when not committed."""
    import json

    from .results import RESULTS_DIR

    d = Path(results_dir or RESULTS_DIR)
    if not (d / "datapath_table.csv").is_file():
        return ""
    rows = datapath_table.read_rows(d / "datapath_table.csv")
    meta = json.loads((d / "datapath_table.meta.json").read_text())
    return ("\n### The full study (committed: docs/results/datapath_table.csv)\n\n"
            f"*{meta.get('settings_note', '')} Commands: " + "; ".join(f"`{c}`" for c in meta.get("commands", []))
            + ". 'not representable': the width is narrower than one block's integer sum "
              "(mxsim.check_accumulator_fits).*\n\nPerplexity:\n\n" + datapath_table.markdown(rows)
            + "\n\nmax |logit - float's| / share of positions whose argmax changed:\n\n"
            + datapath_table.diff_markdown(rows) + "\n\nWhich layer overflows first:\n\n"
            + datapath_table.overflow_markdown(rows) + "\n")


def rank_sweep(model, windows, stats, s: ReportSettings, table: pd.DataFrame) -> pd.DataFrame:
    """Perplexity at each rank for the figure's low-rank corrections (lqer.methods.rank_figure_methods:
    LQER and L2QER) at ``s.rank_config``; rank 32 comes from the table."""
    from lqer.methods import rank_figure_methods

    rows = []
    for m in rank_figure_methods():
        have = table[(table.config == s.rank_config) & (table.method == m)]
        for k in s.ranks:
            if len(have) and int(have["rank"].iloc[0]) == k:
                rows.append({"method": m, "rank": k, "perplexity": float(have["perplexity"].iloc[0]),
                             "bits_per_weight": float(have["bits_per_weight"].iloc[0])})
                continue
            _log(f"rank sweep {s.rank_config} {m} k={k}")
            with calibration.quantized(model, s.rank_config, method=m, stats=stats, rank=k, progress=s.progress,
                                   max_blocks=s.max_blocks, svd=s.svd) as (qm, info):
                ppl = models.perplexity(qm, windows, s.progress)
            rows.append({"method": m, "rank": k, "perplexity": ppl, "bits_per_weight": analysis.bits_per_weight(info)})
            _log(f"  -> ppl {ppl:.3f}")
    return pd.DataFrame(rows)


def _header(s, device, windows, total) -> str:
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python -m experiments.cli " + (" ".join(s.argv) if s.argv else "report")
    return (f"# LQER on a real model: {s.model}, WikiText-2\n\n"
            f"Generated {when} by `{cmd.strip()}` (commit {_git_commit()}), on {models.device_name(device)} "
            f"({platform.processor() or platform.machine()}), in {total / 60:.1f} minutes.\n\n"
            f"- Perplexity: WikiText-2 test (word-level form, `../shared/data`), "
            f"{'the whole split' if s.full else f'the first {windows.shape[0]} windows'} of {s.seq_len} tokens "
            f"({windows.numel()} tokens). Perplexities on this form and on this few tokens are for comparing "
            f"methods with each other, not with published numbers.\n"
            f"- Calibration: {s.calib_samples} random windows of {s.calib_seq_len} tokens from the valid split "
            f"(seed {s.seed}), one pass shared by every method.\n"
            f"- Low-rank factors from lqer's {s.svd} SVD"
            f"{' (randomized: within 1% of the full SVD error per lqer tests, much faster on CPU)' if s.svd == 'randomized' else ''}"
            f"; the spectrum figure always uses the full SVD.\n"
            f"- The \"full-precision\" model is {model_description(s.model)}.\n"
            f"- Presets: {', '.join(f'{c} = {presets.describe_preset(c)}' for c in s.configs)}.\n"
            f"- {overrides_note(s)}\n\n")


def overrides_note(s) -> str:
    """What this run changes with respect to the presets it names (their TOML files)."""
    notes = []
    svds = {c: presets.preset(c).svd for c in s.configs}
    changed = sorted(c for c, v in svds.items() if v != s.svd)
    if changed:
        notes.append(f"svd: {', '.join(f'{c} {svds[c]!r}' for c in changed)} -> {s.svd!r}")
    if s.max_blocks:
        notes.append(f"only the first {s.max_blocks} decoder block(s) quantized (the rest full precision)")
    return "Settings this report overrides in the presets: " + ("; ".join(notes) if notes else "none") + "."


def _sections(s, device, windows, table, sp, layer, rank_df, layer_df, metric, hw, val) -> list[str]:
    out = []
    # 1
    import numpy as np

    a, b = figures.normalise_spectrum(sp["plain"]), figures.normalise_spectrum(sp["scaled"])
    ea, eb = float((a[:32] ** 2).sum()), float((b[:32] ** 2).sum())
    out.append(
        "## 1. Singular values of the quantization error (paper Fig. 1)\n\n"
        f"![spectra](fig1_spectra.png)\n\n"
        f"*Layer `{layer}`, weights quantized as in {s.rank_config}. Both spectra scaled to unit Frobenius norm; "
        f"look for the scaled (L2QER) curve falling faster, so a small rank captures more of it.* "
        f"Share of the squared norm in the top 32 singular values: plain {ea:.1%}, scaled {eb:.1%}. "
        f"Data: [fig1_spectra.csv](fig1_spectra.csv).\n")
    # 2
    piv = rank_df.pivot(index="rank", columns="method", values="perplexity").reset_index()
    out.append(
        f"## 2. Perplexity vs rank at {s.rank_config} (paper Fig. 3)\n\n![rank](fig3_rank_sweep.png)\n\n"
        f"*Look for L2QER reaching close to full precision at a small rank while LQER needs a much larger one "
        f"(the dashed line is plain MXINT without correction).* Data: [fig3_rank_sweep.csv](fig3_rank_sweep.csv).\n\n"
        + _md(piv) + "\n")
    # 3
    summ = layer_df.groupby(["config", "method"])[metric].agg(["mean", "median", "max"]).reset_index()
    wins = layer_df.pivot_table(index=["config", "layer"], columns="method", values=metric).dropna()
    frac = (wins["l2qer"] < wins["lqer"]).groupby("config").mean() if {"l2qer", "lqer"} <= set(wins.columns) else None
    out.append(
        f"## 3. Per-layer reconstruction error, LQER vs L2QER (paper Fig. 4)\n\n![layers](fig4_layer_error.png)\n\n"
        f"*`{metric}` per decoder layer at {s.rank_config}, k = 32, averaged over the layer's q/k/v/o/gate/up/down "
        f"projections. LQER minimises exactly this weight-space error at each rank, L2QER an activation-weighted one, so look "
        f"for how far apart the lines are compared with the perplexity gap in sections 2 and 4, not for L2QER below LQER.* "
        f"Data for every linear layer and both presets: [fig4_layer_error.csv](fig4_layer_error.csv).\n\n"
        + _md(summ) + "\n\n"
        + ("".join(f"- {c}: L2QER below LQER on {v:.0%} of linear layers\n" for c, v in frac.items()) if frac is not None else "")
        + "\n")
    # 4
    out.append(
        "## 4. Perplexity and bits per weight (W4A8, W3A8; k = 32)\n\n"
        "*Look for L2QER < LQER < plain MXINT, with the largest gap at 3 bits.* Bits per weight count element "
        "bits, shared exponents and the low-rank factors (and FP16 outlier columns for LLM.int8()). "
        "Data: [ppl_table.csv](ppl_table.csv).\n\n" + _md(_pretty_table(table)) + "\n")
    # 5
    out.append("## 5. Hardware area (hwmodel)\n\n" + hw["markdown"] + "\n")
    # 6
    n_val, n_bad = int(val["n_values"].sum()), int(val["n_mismatch"].sum())
    verdict = "**0 mismatches**" if n_bad == 0 else f"**{n_bad} MISMATCHES — the emulator is wrong**"
    out.append(
        "## 6. Emulator validation (numba kernels vs the pure-torch reference)\n\n"
        f"{n_val:,} values compared across {len(val)} format/rounding/block/axis cases: {verdict}. "
        "Data for every case: [validation.csv](validation.csv); summed per check and format:\n\n"
        + _md(val.groupby(["check", "format"], sort=False)[["n_values", "n_mismatch"]].sum().reset_index()) + "\n")
    return out
