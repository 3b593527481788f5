"""Bad input to lqer (issue 13): the CLI refuses mistakes in one line before loading a model;
statistics and models are checked, not silently repaired. Expected behaviour from the issue and
from what torch does with such input (nn.Embedding wants integer ids in [0, vocab); a second
moment X^T X is symmetric positive semi-definite)."""

import pytest
import torch

import mxsim
from lqer import model as lqer_model
from lqer.approximate import approximate
from lqer.cli import main
from lqer.config import load_config
from lqer.gptq import gptq
from lqer.quantize import load_quantized, quantize_model, save_quantized

FMT = mxsim.MXIntFormat(4, block_size=16)
F8 = mxsim.MXIntFormat(8, block_size=16)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture
def no_model_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(lqer_model, "load_model", boom)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.txt").write_text("not a model\n")
    (d / "fake.gguf").write_text("not a GGUF file at all\n")
    (d / "empty_dir").mkdir()
    (d / "broken.toml").write_text('method = "lqer"\nrank = [\n')
    (d / "wrong_type.toml").write_text('rank = "many"\n')
    return d


CLI_CASES = [
    (["eval", "--method", "lqr"], ["--method", "l2qer"]),                 # lists the registered methods
    (["eval", "--config", "W9A9"], ["--config", "W4A8"]),                 # lists the presets
    (["eval", "--config", "{in}/broken.toml"], ["--config", "broken.toml", "TOML"]),
    (["eval", "--config", "{in}/wrong_type.toml"], ["--config", "rank"]),
    (["eval", "--config", "{in}/missing.toml"], ["--config", "missing.toml"]),
    (["eval", "--rank", "0"], ["--rank"]),
    (["eval", "--rank", "x"], ["--rank"]),
    (["eval", "--windows", "0"], ["--windows"]),
    (["eval", "--seq-len", "1"], ["--seq-len"]),
    (["eval", "--calib-samples", "-2"], ["--calib-samples"]),
    (["eval", "--svd", "exact"], ["--svd", "randomized"]),
    (["eval", "--model", "/nonexistent/model"], ["--model", "does not exist"]),
    (["eval", "--model", "{in}/notes.txt"], ["--model", "gguf"]),
    (["eval", "--model", "{in}/fake.gguf"], ["--model", "GGUF"]),
    (["eval", "--model", "{in}/empty_dir"], ["--model", "config.json"]),
    (["table", "--methods", " , "], ["--methods"]),
    (["table", "--methods", "fp,plain,nope"], ["--methods", "nope"]),
    (["table", "--configs", "W4A8,W5A5"], ["--configs", "W5A5"]),
    (["table", "--csv", "{in}/notes.txt/rows.csv"], ["--csv", "not a directory"]),
    (["table", "--csv", "{in}"], ["--csv", "directory"]),
]


@pytest.mark.parametrize("argv, needles", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_mistakes_are_one_line_exit_2_before_loading(argv, needles, inputs, capsys, no_model_load):
    argv = [a.format(**{"in": inputs}) for a in argv]
    before = sorted(str(p) for p in inputs.rglob("*"))
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own type/choice checks
        rc = e.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith(f"lqer {argv[0]}: error: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert sorted(str(p) for p in inputs.rglob("*")) == before  # no CSV, no directory


def test_malformed_toml_config_names_its_file(inputs):
    with pytest.raises(ValueError, match="broken.toml"):
        load_config(inputs / "broken.toml")


# ----------------------------------------------------------------------------- statistics
def _spd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4 * n, n, generator=g, dtype=torch.float64)
    return X.T @ X


def _w(seed=1):
    return torch.randn(8, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("H, needle", [
    (-_spd(32), "negative diagonal"),            # was: an all-zero W_q, silently
    (_spd(32) + torch.triu(torch.ones(32, 32, dtype=torch.float64), 1), "not symmetric"),
    (torch.ones(32, 16, dtype=torch.float64), "32 x 32"),
])
def test_gptq_refuses_a_hessian_that_is_not_a_second_moment(H, needle):
    with pytest.raises(ValueError, match=needle) as e:
        gptq(_w(), H, FMT)
    assert "H" in str(e.value)


def _indefinite(n):
    # symmetric, positive diagonal, but one eigenvalue -1: not X^T X for any X
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    lam = torch.linspace(1.0, 10.0, n, dtype=torch.float64)
    lam[0] = -1.0
    M = (Q * lam) @ Q.T
    return 0.5 * (M + M.T)


@pytest.mark.parametrize("xtx, needle", [
    (_indefinite(32), "indefinite"),
    (_spd(32) + torch.triu(torch.ones(32, 32, dtype=torch.float64), 1), "not symmetric"),
    (-_spd(32), "negative diagonal"),
    (_spd(16), "(32, 32)"),
])
def test_qera_refuses_a_second_moment_that_is_not_psd(xtx, needle):
    assert torch.diagonal(xtx).min() > 0 or needle != "indefinite"  # the diagonal alone would not tell
    with pytest.raises(ValueError, match=needle) as e:
        approximate(_w(), w_format=FMT, a_format=F8, b_format=F8, rank=4, xtx=xtx)
    assert "xtx" in str(e.value)


def test_qera_approx_without_the_matrix_is_refused():
    # was: silently plain LQER
    with pytest.raises(ValueError, match="qera_approx=True needs xtx"):
        approximate(_w(), w_format=FMT, a_format=F8, b_format=F8, rank=4, qera_approx=True)


def test_scale_of_60_decades_is_refused_instead_of_inf_metrics():
    s = torch.logspace(-30, 30, 32)
    with pytest.raises(ValueError, match="scale spans too wide a range") as e:
        approximate(_w(), w_format=FMT, a_format=F8, b_format=F8, rank=4, scale=s)
    assert "60 decades" in str(e.value)


# ----------------------------------------------------------------------------- models
def test_load_quantized_into_a_model_of_another_width_is_refused(tiny_llama, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    qm, _ = quantize_model(tiny_llama, load_config("W4A8", method="plain"), progress=False)
    f = save_quantized(qm, tmp_path / "q.safetensors")
    wider = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64)).eval()
    with pytest.raises(ValueError, match=r"another model") as e:
        load_quantized(wider, f)
    assert "32" in str(e.value) and "48" in str(e.value)  # both widths named


@pytest.mark.parametrize("ids, needle", [
    (torch.rand(2, 8), "integer token ids"),                    # float ids: torch's Embedding refuses them
    (torch.full((2, 8), 64), r"\[0, 64\)"),                     # vocab_size is 64: id 64 is out of range
    (torch.tensor([[1, 2, -1, 3]]), r"\[0, 64\)"),
])
def test_quantize_model_checks_calibration_token_ids(tiny_llama, ids, needle):
    with pytest.raises(ValueError, match=needle) as e:
        quantize_model(tiny_llama, load_config("W4A8", method="l2qer"), calibration_batches=ids, progress=False)
    assert "calibration_batches" in str(e.value)


def test_quantize_model_with_an_empty_layer_list_is_refused(tiny_llama):
    # an empty selection used to "quantize" nothing and report avg bits NaN as a result
    with pytest.raises(ValueError, match="layers is empty"):
        quantize_model(tiny_llama, load_config("W4A8", method="plain"), layers=[], progress=False)
