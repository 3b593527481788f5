"""The report and the sweep price the model they quantize (its own layer shapes), not SmolLM2's:
the report's hardware section used SmolLM2's and LLaMA-7B's shapes whatever --model was, and a
sweep with hw_shape unset priced SmolLM2 for any model. The report's design rows come from the
methods' hardware designs (no hand-written list)."""

import json

import pytest
import torch

from mxsim.errors import UserError

# published Hugging Face configs (config.json of HuggingFaceTB/SmolLM2-135M and facebook/opt-125m)
SMOLLM2_CONFIG = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                  "num_attention_heads": 9, "num_key_value_heads": 3}
OPT125M_CONFIG = {"model_type": "opt", "hidden_size": 768, "ffn_dim": 3072, "num_hidden_layers": 12,
                  "num_attention_heads": 12}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def test_shape_from_a_published_config_is_hwmodels_named_shape():
    from hwmodel.shapes import MODELS, from_hf_config

    for cfg, name in ((SMOLLM2_CONFIG, "smollm2-135m"), (OPT125M_CONFIG, "opt-125m")):
        s = from_hf_config(cfg, name=name)
        assert s == MODELS[name]
    with pytest.raises(ValueError, match="model_type.*'gpt2'"):
        from_hf_config({"model_type": "gpt2", "n_embd": 768})


def _tiny_dir(tmp_path, model_type="llama"):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type, **TINY}))
    return d


def test_sweep_shape_is_the_swept_models_own_or_refused(tmp_path):
    from experiments.grid import DEFAULT_SETTINGS
    from experiments.hardware import sweep_shape

    assert sweep_shape({**DEFAULT_SETTINGS}).name == "smollm2-135m"  # the bundled model
    assert sweep_shape({**DEFAULT_SETTINGS, "model": "x", "hw_shape": "llama-7b"}) == "llama-7b"
    s = sweep_shape({**DEFAULT_SETTINGS, "model": str(_tiny_dir(tmp_path))})
    assert (s.name, s.hidden, s.intermediate, s.layers, s.heads, s.kv_heads) == ("tiny", 64, 128, 2, 4, 2)
    other = tmp_path / "o"
    other.mkdir()
    d = _tiny_dir(other, "gpt2")
    with pytest.raises(UserError, match=r"settings\.hw_shape.*gpt2.*llama-7b"):
        sweep_shape({**DEFAULT_SETTINGS, "model": str(d)})


def test_report_prices_the_reported_models_shapes_and_labels_the_reference(tmp_path):

    from experiments.hardware import hardware_tables
    from hwmodel.shapes import from_hf_config

    shape = from_hf_config({"model_type": "llama", **TINY}, name="tiny")
    hw = hardware_tables(tmp_path, ["W4A8"], ["fp", "plain", "lqer", "l2qer"], shape, model_label="tiny", tag="tiny")
    area = hw["tables"]["area_tiny"]
    # rows from the methods' designs: LQER and L2QER share one datapath
    assert area["design"].tolist() == ["FP", "plain MXINT W4A8", "LQER / L2QER W4A8 k=32"]
    # one 16-lane FP16 unit: cycles = sum over linears of in x out / 16, by hand for the tiny shape
    # (head dim 16, kv 32): q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64; 2 blocks
    per_block = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128
    assert area.loc[area.design == "FP", "cycles"].iloc[0] == 2 * per_block / 16
    ref = hw["tables"]["area_llama7b"]
    assert ref.loc[ref.design == "FP", "cycles"].iloc[0] == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) / 16
    md = hw["markdown"]
    assert "### tiny (the reported model): layer shapes" in md
    assert "LLaMA-7B (the LQER paper's reference shape, not the reported model)" in md
    assert not any(k.endswith("smollm2") for k in hw["tables"])


def test_report_without_a_layout_says_so(tmp_path):
    from experiments.hardware import hardware_tables, report_shape

    class Model:  # a loaded model whose architecture hwmodel cannot lay out
        config = {"model_type": "gpt2"}

    shape, why = report_shape("gpt2-dir", Model())
    assert shape is None and "gpt2" in why
    hw = hardware_tables(tmp_path, ["W4A8"], ["fp", "plain"], None, model_label="gpt2-dir", shape_error=why)
    assert set(hw["tables"]) == {"area_llama7b", "breakdown_llama7b", "paper"}
    assert f"Not priced: {why}" in hw["markdown"]


def test_a_sweep_point_records_the_swept_models_shape(monkeypatch):
    import lqer.data
    import lqer.model
    from transformers import LlamaConfig, LlamaForCausalLM

    from experiments.grid import DEFAULT_SETTINGS, normalise_point
    from experiments.sweep import run_point

    def tiny(model=None, device=None, **_):
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=64, max_position_embeddings=64, **TINY)).eval(), None

    monkeypatch.setattr(lqer.model, "load_model", tiny)
    monkeypatch.setattr(lqer.data, "load_wikitext", lambda split: "")
    monkeypatch.setattr(lqer.data, "token_windows", lambda tok, text, seq_len, n=None: torch.randint(0, 64, (1, 16)))
    monkeypatch.setattr(lqer.data, "calibration_batches", lambda tok, n, seq_len, seed=0: torch.randint(0, 64, (2, 16)))
    settings = {**DEFAULT_SETTINGS, "model": "tiny-hw", "device": "cpu"}  # hw_shape unset
    rec = run_point(normalise_point("plain", 4, 8, 16, 8).to_dict(), settings, None, threads=1)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["hw_shape"] == "tiny-hw"
