"""Regression tests for the method wiring: every path that quantizes with a calibrating method
hands its observer factory the config (sweep points and ``lqer eval`` with gptq/lrc used to
fail), every registered method has a hardware design, lqer's submodules stay importable, and
the Python floor matches the standard library the code imports."""

import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _tiny_llama(device=None, **_):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_world(monkeypatch):
    """lqer.model.load_model / lqer.data return a tiny random Llama and random token ids
    (384 calibration tokens >= 2 x the widest input, 128)."""
    import lqer.data
    import lqer.model

    monkeypatch.setattr(lqer.model, "load_model", lambda model=None, device=None, **kw: (_tiny_llama(), None))
    monkeypatch.setattr(lqer.data, "load_wikitext", lambda split: "")
    monkeypatch.setattr(lqer.data, "token_windows",
                        lambda tok, text, seq_len, n=None: torch.randint(0, 64, (2, 32),
                                                                          generator=torch.Generator().manual_seed(2)))
    monkeypatch.setattr(lqer.data, "calibration_batches",
                        lambda tok, n, seq_len, seed=0: torch.randint(0, 64, (8, 48),
                                                                       generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("method", ["gptq", "lrc"])
def test_sweep_point_with_a_calibrating_method_runs(tiny_world, method):
    from experiments.grid import DEFAULT_SETTINGS, normalise_point
    from experiments.sweep import run_point

    settings = {**DEFAULT_SETTINGS, "model": f"tiny-{method}", "device": "cpu", "hw_shape": "smollm2-135m"}
    p = normalise_point(method, 4, 8, 16, 8)
    rec = run_point(p.to_dict(), settings, None, threads=1)
    assert rec["status"] == "ok", rec.get("error")
    # plain-grid weights (GPTQ) are 4 + 8/16 bits; LRC adds rank-8 fp16 factors per layer
    assert rec["bits_per_weight"] == pytest.approx(4.5) if method == "gptq" else rec["bits_per_weight"] > 4.5
    assert rec["area"] > 0 and rec["perplexity"] > 1


@pytest.mark.parametrize("method", ["gptq", "lrc"])
def test_lqer_eval_with_gptq_and_lrc(tiny_world, method, capsys):
    from lqer.cli import main

    main(["eval", "--config", "W4A8", "--method", method, "--rank", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert re.search(rf"W4A8 {method}( \(accumulator \w+\))?: perplexity \d", out), out


def test_every_registered_method_has_a_hardware_design():
    from experiments.hardware import method_design
    from lqer.config import load_config
    from lqer.methods import METHODS, method_names

    assert all(m.hardware is not None for m in METHODS.values())  # the descriptor carries it
    designs = {m: method_design(load_config("W4A8", method=m), "smollm2-135m")[0] for m in method_names()}
    assert designs == {"fp": "fp16", "plain": "mxint", "rtn": "mxint", "gptq": "mxint", "lqer": "lqer-mxint",
                       "l2qer": "lqer-mxint", "qera": "lqer-mxint", "qera_approx": "lqer-mxint",
                       "llm_int8": "llm.int8", "llm_int4": "llm.int4", "lrc": "lrc"}


def test_lqer_submodules_are_not_shadowed():
    import importlib

    import lqer
    import lqer.gptq
    import lqer.lrc

    assert lqer.lrc is importlib.import_module("lqer.lrc") and callable(lqer.lrc.lrc)
    assert lqer.gptq is importlib.import_module("lqer.gptq") and callable(lqer.gptq.gptq)


def test_python_floor_covers_tomllib():
    """tomllib is in the standard library from Python 3.11: the declared floor must not be lower
    while the code imports it."""
    text = (ROOT / "pyproject.toml").read_text()
    floor = tuple(int(v) for v in re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', text).groups())
    users = [p for pkg in ("mxsim", "lqer", "hwmodel", "experiments") for p in (ROOT / pkg).rglob("*.py")
             if re.search(r"^\s*import tomllib|^\s*from tomllib", p.read_text(), re.M)]
    if users:
        assert floor >= (3, 11), f"requires-python >={floor} but {users[0]} imports tomllib (3.11+)"
    assert sys.version_info >= floor


# the lists as the README table and the report had them written by hand before they became
# descriptor fields (lqer.methods.Method): today's registry must give exactly these
TABLE = ["fp", "plain", "lqer", "l2qer", "qera", "llm_int8"]
REQUIRED = ["fp", "plain", "lqer", "l2qer"]
OWN_FORMATS = {"fp": "fp32", "llm_int8": "int8 + fp16 outliers", "llm_int4": "int4 + fp16 outliers"}


def _option(parser, cmd, flag):
    sub = next(a for a in parser._actions if a.dest == "cmd").choices[cmd]
    return next(a for a in sub._actions if flag in a.option_strings)


def test_method_lists_come_from_the_registry():
    """The default table's methods, the report's required ones, the rows with formats of their own
    and the CLI defaults / help are read from the descriptors (one typed vocabulary): a method
    registered with the fields shows up in every list, without a name written anywhere else."""
    from dataclasses import replace

    from experiments import report
    from experiments.cli import build_parser as mxlab_parser
    from lqer.cli import build_parser as lqer_parser
    from lqer.methods import METHODS, get_method, register_method, required_methods, table_methods

    own_formats = lambda: {n: m.own_formats for n, m in METHODS.items() if m.own_formats is not None}  # noqa: E731
    assert table_methods() == TABLE and list(required_methods()) == list(REQUIRED) and own_formats() == OWN_FORMATS
    assert [n for n, m in METHODS.items() if m.full_precision] == ["fp"]
    assert report.ReportSettings().methods == TABLE
    assert lqer_parser().parse_args(["table"]).methods == "fp,plain,lqer,l2qer,qera,llm_int8"
    assert _option(mxlab_parser(), "report", "--methods").help == \
        "table methods (default fp,plain,lqer,l2qer,qera,llm_int8; fp,plain,lqer,l2qer are required)"
    assert _option(mxlab_parser(), "table", "--methods").help == "methods (default fp,plain,lqer,l2qer,qera,llm_int8)"

    register_method(replace(get_method("plain"), name="_probe", in_default_table=True, report_required=True,
                            own_formats="probe formats"))
    try:
        assert table_methods() == TABLE + ["_probe"] == report.ReportSettings().methods  # registration order
        assert list(required_methods()) == [*REQUIRED, "_probe"]
        assert own_formats() == {**OWN_FORMATS, "_probe": "probe formats"}
        assert lqer_parser().parse_args(["table"]).methods == "fp,plain,lqer,l2qer,qera,llm_int8,_probe"
        assert "fp,plain,lqer,l2qer,_probe are required" in _option(mxlab_parser(), "report", "--methods").help
    finally:
        METHODS.pop("_probe")
    with pytest.raises(ValueError, match="report_required needs in_default_table"):
        replace(get_method("rtn"), name="_probe", report_required=True)  # rtn: not in the default table


def test_figure_colours_and_the_baseline_come_from_the_registry():
    """The figures colour a method by its descriptor's ``color`` and draw the rank figure's dashed
    line for the one ``baseline`` method (plain MXINT, labelled by its descriptor)."""
    from dataclasses import replace

    from experiments.figures import _color
    from lqer.methods import METHODS, baseline_method, get_method, register_method

    # the colours the report's and the sweep's figures have always used
    assert {n: m.color for n, m in METHODS.items() if m.color is not None} == {
        "fp": "black", "plain": "tab:gray", "rtn": "tab:olive", "lqer": "tab:blue", "l2qer": "tab:red",
        "qera": "tab:green", "llm_int8": "tab:purple", "gptq": "tab:brown", "lrc": "tab:orange"}
    assert _color("qera_approx") is None and _color("not-a-method") is None  # matplotlib's next colour
    assert baseline_method() == "plain" and get_method("plain").label == "plain MXINT"
    register_method(replace(get_method("rtn"), name="_probe", color="tab:pink"))
    try:
        assert _color("_probe") == "tab:pink"
    finally:
        METHODS.pop("_probe")
    register_method(replace(get_method("plain"), name="_probe"))  # a second baseline
    try:
        with pytest.raises(ValueError, match="exactly one registered method must have baseline=True"):
            baseline_method()
    finally:
        METHODS.pop("_probe")
    with pytest.raises(ValueError, match="baseline needs report_required"):
        replace(get_method("rtn"), name="_probe", baseline=True)  # rtn: not run by the report


def test_hardware_stages_follow_the_descriptor_not_the_design_name():
    """experiments.hardware adds the input rotation / the accumulator to a design's params by the
    method's hw_rotation / hw_accumulator, whatever its design is called."""
    from dataclasses import replace

    from experiments.hardware import method_design
    from lqer.config import load_config
    from lqer.methods import METHODS, get_method, register_method

    def params(method):
        cfg = load_config("W4A8", method=method, accumulator="fp32", options={"rotation": "random"})
        return method_design(cfg, "smollm2-135m")

    assert params("plain") == ("mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16", "input_rotation": "dense",
                                         "accumulator": "fp32"})
    # hwmodel's lrc design has a rotation stage but no accumulator parameter
    assert "input_rotation" in params("lrc")[1] and "accumulator" not in params("lrc")[1]
    register_method(replace(get_method("plain"), name="_probe", hw_rotation=False, hw_accumulator=False))
    try:
        assert params("_probe") == ("mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16"})
    finally:
        METHODS.pop("_probe")
    assert {n for n, m in METHODS.items() if not m.hw_rotation} == {"fp", "llm_int8", "llm_int4"}
    assert {n for n, m in METHODS.items() if m.hw_accumulator} == {"plain", "rtn", "gptq", "lqer", "l2qer", "qera",
                                                                   "qera_approx"}


def test_report_counts_the_fp_row_at_its_configs_fp_bits(monkeypatch):
    """The full-precision row is the unquantized model counted at the config's FPOptions.fp_bits:
    16 bits per weight (FP16 storage) for the presets, once for all presets, labelled fp32."""
    from experiments import models, report

    monkeypatch.setattr(models, "perplexity", lambda model, windows, progress=True: 10.0)
    df, _ = report.ppl_table(None, None, torch.zeros(1, 8, dtype=torch.long), None, ["W4A8", "W3A8"], ["fp"],
                             progress=False, log=lambda *_: None)
    assert df[["config", "method", "rank", "bits_per_weight"]].values.tolist() == [["fp32", "fp", 0, 16.0]]


def test_rank_figures_methods_come_from_the_registry():
    """The report's rank sweep (paper Fig. 3, perplexity vs rank) and per-layer error figure (paper
    Fig. 4) compare the paper's two corrections, LQER and L2QER: today's registry must give exactly
    these, and a method registered with ``rank_figures`` is swept too, without editing report.py."""
    from dataclasses import replace

    import pandas as pd
    from experiments import report
    from lqer.methods import METHODS, get_method, rank_figure_methods, register_method

    assert rank_figure_methods() == ["lqer", "l2qer"]  # the paper's Fig. 3/4 lines, in its order
    s = report.ReportSettings(ranks=[32], rank_config="W3A8")
    # every method's rank-32 row is in the table, so the sweep reads it and quantizes nothing
    table = pd.DataFrame([{"config": "W3A8", "method": m, "rank": 32, "perplexity": p, "bits_per_weight": 4.5}
                          for m, p in (("lqer", 30.0), ("l2qer", 25.0), ("_probe", 20.0))])
    sweep = lambda: report.rank_sweep(None, None, None, s, table)  # noqa: E731
    assert list(zip(sweep().method, sweep().perplexity)) == [("lqer", 30.0), ("l2qer", 25.0)]
    register_method(replace(get_method("l2qer"), name="_probe"))
    try:
        assert list(sweep().method) == ["lqer", "l2qer", "_probe"]
    finally:
        METHODS.pop("_probe")
    with pytest.raises(ValueError, match="rank_figures needs low_rank and report_required"):
        replace(get_method("plain"), name="_probe", rank_figures=True)  # plain has no rank to sweep
    with pytest.raises(ValueError, match="rank_figures needs low_rank and report_required"):
        replace(get_method("qera"), name="_probe", rank_figures=True)  # qera: not required by the report
