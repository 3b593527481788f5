"""quantize_model on the other supported decoder layouts: OPT (nn.Linear at
model.decoder.layers) and GPT-2 (transformers Conv1D at transformer.h, turned into nn.Linear
by conv1d_to_linear). Tiny randomly initialised models built from a config: no hub, no files."""
import copy

import pytest
import torch
import torch.nn as nn

import mxsim
from lqer.calibrate import conv1d_to_linear, decoder_blocks, input_groups, linear_layers
from lqer.config import load_config
from lqer.linear import QuantLinear
from lqer.quantize import load_quantized, quantize_model, save_quantized

I8 = mxsim.MXINT8.with_block_size(16)

# Leaf names per block, counted by hand from the HF modelling code:
# GPT-2: attn.c_attn (q, k, v fused), attn.c_proj, mlp.c_fc, mlp.c_proj -> 4 per block;
# OPT: self_attn.{q,k,v,out}_proj, fc1, fc2 -> 6 per block. Both tiny models have 2 blocks.
GPT2_LEAVES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
OPT_LEAVES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"]


def make_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # initializer_range 0.2 (not GPT-2's 0.02): with 0.02 the blocks barely change the residual
    # stream, and logits would stay close to the fp model whatever the blocks computed.
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=64, initializer_range=0.2,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def make_opt():
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4, vocab_size=64,
                    max_position_embeddings=64, word_embed_proj_dim=32, init_std=0.2)
    return OPTForCausalLM(cfg).eval()


ARCHS = {
    "gpt2": (make_gpt2, "transformer.h", GPT2_LEAVES),
    "opt": (make_opt, "model.decoder.layers", OPT_LEAVES),
}


def expected_names(arch):
    _, prefix, leaves = ARCHS[arch]
    return {f"{prefix}.{i}.{leaf}" for i in range(2) for leaf in leaves}


def ids_for_test():
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))


def calib_ids():
    return torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(2))


@torch.no_grad()
def logits(model, ids):
    return model(input_ids=ids).logits


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_gpt2_conv1d_to_linear_keeps_logits_and_names():
    from transformers.pytorch_utils import Conv1D

    m = make_gpt2()
    ids = ids_for_test()
    ref = logits(m, ids)
    c_attn = m.transformer.h[0].attn.c_attn
    w_before, b_before = c_attn.weight.detach().clone(), c_attn.bias.detach().clone()
    lm_head, wte = m.lm_head, m.transformer.wte
    assert conv1d_to_linear(m) == 8  # 4 Conv1D per block, 2 blocks
    assert not any(isinstance(mod, Conv1D) for mod in m.modules())
    new = m.transformer.h[0].attn.c_attn
    assert isinstance(new, nn.Linear) and (new.in_features, new.out_features) == (32, 96)
    assert torch.equal(new.weight, w_before.T) and torch.equal(new.bias, b_before)
    assert m.lm_head is lm_head and m.transformer.wte is wte  # head and embeddings untouched
    assert m.lm_head.weight is m.transformer.wte.weight  # still tied
    # the same affine map: Conv1D is addmm(b, x, W) and Linear addmm(b, x, (W^T)^T)
    torch.testing.assert_close(logits(m, ids), ref, atol=1e-6, rtol=1e-6)
    assert conv1d_to_linear(m) == 0  # idempotent
    assert decoder_blocks(m)[0] == "transformer.h"
    assert set(linear_layers(m)) == expected_names("gpt2")


def test_opt_layers_and_shared_qkv_group():
    m = make_opt()
    ref = logits(m, ids_for_test())
    assert conv1d_to_linear(m) == 0  # OPT already uses nn.Linear
    torch.testing.assert_close(logits(m, ids_for_test()), ref, atol=0, rtol=0)
    names = list(linear_layers(m))
    assert set(names) == expected_names("opt")
    groups = input_groups(names)
    p = "model.decoder.layers.0.self_attn."
    assert [p + "q_proj", p + "k_proj", p + "v_proj"] in groups  # one observer for q/k/v
    assert len(groups) == 2 * 4  # per block: {q,k,v}, out_proj, fc1, fc2


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_blocks_matter(arch):
    """Guard for the tolerance below: zeroing every decoder linear layer moves the logits by
    far more than the 5% allowed to the W8A8 models, so that bound is not vacuous."""
    make, _, _ = ARCHS[arch]
    m = make()
    ids = ids_for_test()
    ref = logits(m, ids)
    conv1d_to_linear(m)
    with torch.no_grad():
        for lin in linear_layers(m).values():
            lin.weight.zero_()
    assert rel_err(logits(m, ids), ref) > 0.3


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_fp_method_reproduces_logits(arch):
    make, _, _ = ARCHS[arch]
    m = make()
    ids = ids_for_test()
    ref = logits(m, ids)
    model, info = quantize_model(m, load_config("W4A8", method="fp", rank=4), progress=False)
    assert info["n_layers"] == len(expected_names(arch))
    assert all(isinstance(model.get_submodule(n), QuantLinear) for n in expected_names(arch))
    torch.testing.assert_close(logits(model, ids), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["plain", "lqer", "l2qer", "qera"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_w8a8_methods_stay_close(arch, method):
    make, _, _ = ARCHS[arch]
    m = make()
    ids = ids_for_test()
    ref = logits(m, ids)
    cfg = load_config("W4A8", method=method, rank=4, w_format=I8, x_format=I8)
    model, info = quantize_model(m, cfg, calibration_batches=calib_ids(), progress=False)
    names = expected_names(arch)
    assert info["n_layers"] == len(names) and set(info["layers"]) == names
    assert all(isinstance(model.get_submodule(n), QuantLinear) for n in names)
    assert isinstance(model.lm_head, nn.Linear) and not isinstance(model.lm_head, QuantLinear)
    out = logits(model, ids)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, ref)  # the quantizers are in the path
    # MXINT8 blocks of 16: 8-bit two's-complement elements with step 2^-6 under a power-of-two
    # scale that puts the block max in [1, 2), so each weight and activation is off by at most
    # 2^-7 / 1 < 0.8% of its block max (typically far less). Two blocks of 4-6 such matmuls,
    # each with quantized x and W, compound to a few per cent at most in the worst case; 5% of
    # the logits' norm allows that and still fails for any wiring error (test_blocks_matter:
    # removing the layers' contribution costs > 30%).
    assert rel_err(out, ref) < 0.05


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_save_load_round_trip(arch, tmp_path):
    make, _, _ = ARCHS[arch]
    ids = ids_for_test()
    cfg = load_config("W4A8", method="l2qer", rank=4)
    m1, info = quantize_model(make(), cfg, calibration_batches=calib_ids(), progress=False)
    path = tmp_path / f"{arch}.safetensors"
    save_quantized(m1, path, config=cfg, info=info)
    fresh = make()  # for GPT-2 still with Conv1D layers: load_quantized replaces them by name
    m2 = load_quantized(fresh, path)
    assert all(isinstance(m2.get_submodule(n), QuantLinear) for n in expected_names(arch))
    torch.testing.assert_close(logits(m2, ids), logits(m1, ids), atol=0, rtol=0)
    # a model converted first loads the same file as well
    converted = make()
    conv1d_to_linear(converted)
    m3 = load_quantized(converted, path)
    torch.testing.assert_close(logits(m3, ids), logits(m1, ids), atol=0, rtol=0)


def test_quantize_subset_of_gpt2_layers_keeps_others_linear():
    m = make_gpt2()
    ids = ids_for_test()
    ref = logits(copy.deepcopy(m), ids)
    one = "transformer.h.1.mlp.c_fc"
    model, info = quantize_model(m, load_config("W4A8", method="fp"), layers=[one], progress=False)
    assert info["n_layers"] == 1 and isinstance(model.get_submodule(one), QuantLinear)
    assert isinstance(model.get_submodule("transformer.h.0.attn.c_attn"), nn.Linear)
    torch.testing.assert_close(logits(model, ids), ref, atol=1e-5, rtol=1e-5)
