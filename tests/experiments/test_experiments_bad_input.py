"""Bad input to mxlab (report, sweep, table) and to sweep grids (issue 13): one line
`mxlab CMD: error: ...` naming the argument or grid key (and the allowed values), exit 2,
before any model is loaded or any point runs, and no output file or directory created."""

import pytest

from experiments import calibration, models, sweep
from experiments.cli import main
from experiments.grid import parse_grid
from experiments.report import ReportSettings, model_description
from mxsim.errors import UserError


@pytest.fixture
def no_work(monkeypatch):
    """Any model load or sweep point is a failure: every check must fire before them."""
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(models, "get_model", boom)
    monkeypatch.setattr(calibration, "calibrate", boom)
    monkeypatch.setattr(sweep, "_client", boom)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.txt").write_text("not a model\n")
    (d / "fake.gguf").write_text("hello, I am not a GGUF file\n")
    (d / "short.gguf").write_bytes(b"GGUF\x03\x00")
    (d / "empty_dir").mkdir()
    (d / "bad.toml").write_text("[grid\nmethod = [\n")
    (d / "every_point_fails.toml").write_text('[settings]\ntech = "fgpa"\n[grid]\nmethod = ["plain"]\n')
    return d


def _run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own type/choice checks
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.err.strip().splitlines()


CLI_CASES = [
    # (argv, words the one error line must contain)
    (["report", "--model", "/nonexistent/model"], ["--model", "does not exist"]),
    (["report", "--model", "{in}/notes.txt"], ["--model", "gguf"]),
    (["report", "--model", "{in}/fake.gguf"], ["--model", "GGUF"]),
    (["report", "--model", "{in}/short.gguf"], ["--model", "truncated"]),
    (["report", "--model", "{in}/empty_dir"], ["--model", "config.json"]),
    (["report", "--reports-dir", "{in}/notes.txt/reports"], ["--reports-dir", "not a directory"]),
    (["report", "--name", "../up"], ["--name"]),
    (["report", "--methods", "fp,plain,lqer,l2qer,awq"], ["--methods", "l2qer"]),
    (["report", "--configs", "W3A8,W9A9"], ["--configs", "W4A8"]),
    (["report", "--device", "tpu"], ["--device", "cuda"]),
    (["report", "--max-blocks", "-1"], ["--max-blocks"]),
    (["report", "--windows", "0"], ["--windows"]),
    (["table", "--out", "{in}/notes.txt"], ["--out", "not a directory"]),
    (["table", "--model", "/nonexistent/model"], ["--model"]),
    (["table", "--methods", "fp,bogus"], ["--methods", "bogus"]),
    (["sweep", "--out", "{in}/notes.txt/sweep"], ["--out", "not a directory"]),
    (["sweep", "--grid", "{in}/bad.toml"], ["bad.toml", "TOML"]),           # names the file
    (["sweep", "--grid", "{in}/missing.toml"], ["missing.toml"]),
    (["sweep", "--grid", "{in}/every_point_fails.toml"], ["settings.tech", "fpga"]),
    (["sweep", "--model", "/nonexistent/model"], ["settings.model", "--model", "does not exist"]),
    (["sweep", "--device", "tpu"], ["settings.device", "cuda"]),
    (["sweep", "--workers", "0"], ["--workers"]),
    (["reproduce", "--out", "{in}/notes.txt/results"], ["--out", "not a directory"]),
    (["reproduce", "no_such_result"], ["no_such_result"]),
]


@pytest.mark.parametrize("argv, needles", CLI_CASES, ids=[" ".join(c[0][:3]) for c in CLI_CASES])
def test_cli_mistakes_are_one_line_exit_2_before_work(argv, needles, inputs, tmp_path, monkeypatch, capsys,
                                                      no_work):
    monkeypatch.chdir(tmp_path)  # default outputs (reports/...) would land here
    argv = [a.format(**{"in": inputs}) for a in argv]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    rc, lines = _run(argv, capsys)
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith(f"mxlab {argv[0]}: error: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no output file or directory


GRID_CASES = [
    # a setting that would fail inside every point after its work, or silently do nothing
    ({"tech": "fgpa"}, ["settings.tech", "fpga"]),
    ({"hw_shape": "llama-70b"}, ["settings.hw_shape", "llama-7b"]),
    ({"svd": "bogus"}, ["settings.svd", "randomized"]),
    ({"device": "tpu"}, ["settings.device", "cuda"]),
    ({"seed": "x"}, ["settings.seed"]),
    ({"max_blocks": -1}, ["settings.max_blocks"]),   # quantized nothing and was reported ok
    ({"max_blocks": 0}, ["settings.max_blocks"]),
    ({"factor_axis": "rows"}, ["settings.factor_axis", "reduction"]),
    ({"model": 3}, ["settings.model"]),
    ({"windows": 1.5}, ["settings.windows"]),
]


@pytest.mark.parametrize("settings, needles", GRID_CASES, ids=[next(iter(c[0])) + "=" + repr(next(iter(c[0].values())))
                                                               for c in GRID_CASES])
def test_grid_settings_are_validated_up_front(settings, needles):
    with pytest.raises(UserError) as e:
        parse_grid({"settings": settings, "grid": {"method": ["plain"]}})
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


@pytest.mark.parametrize("grid, needles", [
    ({"method": ["plain"], "w_bits": [9]}, ["grid.w_bits", "9", "[2, 8]"]),
    ({"method": ["plain"], "a_bits": [1]}, ["grid.a_bits"]),
    ({"method": ["plain"], "block": [0]}, ["grid.block"]),
])
def test_grid_point_formats_are_validated_up_front(grid, needles):
    with pytest.raises(UserError) as e:
        parse_grid({"grid": grid})
    for n in needles:
        assert n in str(e.value)


def test_sweep_where_every_point_failed_exits_nonzero(monkeypatch, tmp_path, capsys):
    import pandas as pd

    df = pd.DataFrame({"key": ["a", "b"], "label": ["x", "y"], "status": ["error", "error"]})
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: df)
    rc, lines = _run(["sweep", "--out", str(tmp_path / "s")], capsys)
    assert rc == 1 and any("every one of the 2 point(s) failed" in ln for ln in lines)


def test_ctrl_c_in_a_sweep_is_one_line_with_a_resume_hint(monkeypatch, tmp_path, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    rc, lines = _run(["sweep", "--out", str(tmp_path / "s")], capsys)
    assert rc == 130 and len(lines) == 1
    assert "interrupted" in lines[0] and "resume" in lines[0] and str(tmp_path / "s" / "points") in lines[0]


def test_report_names_the_model_it_ran(tmp_path):
    # was: always "SmolLM2-135M-Instruct" in the header and reports/smollm2-cpu
    s = ReportSettings.profile("default", model=str(tmp_path / "TinyStories-8M.gguf"))
    assert s.name == "TinyStories-8M-cpu"
    assert ReportSettings.profile("quick", model=str(tmp_path / "my-hf-model")).name == "my-hf-model-quick"
    assert ReportSettings.profile("default").name == "smollm2-cpu"
    assert "TinyStories-8M.gguf" in model_description(str(tmp_path / "TinyStories-8M.gguf"))
    assert "SmolLM2" not in model_description(str(tmp_path / "my-hf-model"))
    assert "SmolLM2-135M" in model_description("smollm2-135m")


@pytest.mark.parametrize("max_blocks", [-1, 0, 1.5, True])
def test_max_blocks_must_select_blocks(tiny_model, max_blocks):
    # -1 used to select no layer at all: "quantized" points were the fp model, on the Pareto front
    with pytest.raises(ValueError, match="max_blocks"):
        models.selected_layers(tiny_model, max_blocks)


def test_max_blocks_selects_the_first_blocks(tiny_model):
    names = models.selected_layers(tiny_model, 1)
    assert len(names) == 7 and all(".layers.0." in n for n in names)  # q, k, v, o, gate, up, down


@pytest.fixture
def tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_spectrum_layer_is_checked_right_after_loading(tiny_model):
    # was: checked only after the whole perplexity table
    from experiments.report import check_spectrum_layer

    with pytest.raises(UserError, match="--spectrum-layer 'nope'") as e:
        check_spectrum_layer(tiny_model, "nope")
    assert "model.layers.0.self_attn.q_proj" in str(e.value)  # an example of a valid name
    check_spectrum_layer(tiny_model, "model.layers.1.mlp.down_proj")
    check_spectrum_layer(tiny_model, None)


@pytest.mark.parametrize("cmd", [["report"], ["table", "--configs", "W4A8"]])
def test_missing_wikitext_is_one_line_before_the_model_loads(cmd, tmp_path, monkeypatch, capsys, no_work):
    # it used to load the model, then die with a ValueError traceback inside get_windows
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MXLAB_DATA", str(tmp_path / "no_data_here"))
    rc, lines = _run(cmd, capsys)
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith(f"mxlab {cmd[0]}: error: $MXLAB_DATA"), lines
    assert "wikitext-2" in lines[0] and "test.txt" in lines[0]
    assert list(tmp_path.iterdir()) == []
