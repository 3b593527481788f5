"""The whole-model pipeline on a CUDA device gives what it gives on the CPU (skipped without one).

Same tiny model, same calibration ids, every method: the quantized layers must end up on the
GPU and the logits agree with the CPU run up to float32 matmul differences (the formats' grids
are the same; GPU and CPU SVD/eigh/Cholesky differ in the last bits, which can move a few
weights across a rounding boundary, hence a loose tolerance relative to the quantization noise).
"""

import copy

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _run(model, method, ids, device):
    from lqer.config import QuantConfig, load_config
    from lqer.quantize import collect_stats, quantize_model

    model = copy.deepcopy(model).to(device)
    ids = ids.to(device)
    if method in ("rtn", "gptq", "lrc"):
        cfg = QuantConfig(method=method, w_format="MXINT4/16", x_format="MXINT4/16", rank=0.25,
                          options={"rotation": "auto"})
        stats = collect_stats(model, cfg, ids, progress=False)
        quantize_model(model, cfg, stats=stats, progress=False)
    else:
        quantize_model(model, load_config("W4A8", method=method, rank=4), calibration_batches=ids, progress=False)
    for mod in model.modules():
        for t in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)):
            assert t.device.type == torch.device(device).type, f"{type(mod).__name__} holds a {t.device} tensor"
    with torch.no_grad():
        return model(input_ids=ids[:2]).logits.float().cpu()


@pytest.mark.parametrize("method", ["plain", "lqer", "l2qer", "qera", "llm_int8", "rtn", "gptq", "lrc"])
def test_whole_model_on_cuda_matches_cpu(method):
    model = _tiny_llama()
    ids = torch.randint(0, 64, (8, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp = model(input_ids=ids[:2]).logits
    cpu = _run(model, method, ids, "cpu")
    gpu = _run(model, method, ids, "cuda")
    assert torch.isfinite(gpu).all()
    noise = float((cpu - fp).pow(2).mean())
    diff = float((gpu - cpu).pow(2).mean())
    # LRC alternates GPTQ with eigen-solves: one weight rounded the other way on a GPU bit
    # difference changes its targets for the rest of the layer, so it gets a looser bound
    # (seen on an H100: 26% of the quantization noise); everything else agrees within 5%.
    tol = 0.5 if method == "lrc" else 0.05
    assert diff <= tol * noise + 1e-10, (diff, noise)
