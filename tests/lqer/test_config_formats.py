"""lqer configs name the issue-16 formats: an MX scale rule after '@' and NVFP4, in TOML."""

import pytest

import mxsim
from lqer.config import QuantConfig, format_to_str, load_config


def test_toml_scale_rule_and_nvfp4(tmp_path):
    p = tmp_path / "rules.toml"
    p.write_text('method = "plain"\nw_format = "MXFP8_E4M3/32@rceil"\nx_format = "NVFP4_2L"\n'
                 'a_format = "MXINT8/16@even"\n')
    c = load_config(p)
    assert c.w_format == mxsim.MXFP8_E4M3.with_scale_rule("rceil")
    assert c.x_format == mxsim.NVFP4.with_two_level()
    assert c.a_format == mxsim.MXINT8.with_block_size(16).with_scale_rule("even")
    assert format_to_str(c.w_format) == "MXFP8_E4M3/32@rceil"
    assert load_config(p, **{"w_format": format_to_str(c.w_format)}).w_format == c.w_format  # round trip


@pytest.mark.parametrize("field,spec,needle", [
    ("w_format", "NVFP4@rceil", "scale_rule 'rceil' does not apply to NVFP4"),
    ("x_format", "NVFP4/32", "block_size: NVFP4 blocks are 16 elements, got 32"),
    ("a_format", "BlockFP4@ceil", "allowed: blockfp"),
    ("b_format", "MXINT4@round", "allowed: floor, ceil, even, rceil"),
])
def test_bad_format_names_its_field(field, spec, needle):
    """Issue 16's bad inputs reach a config as strings: the error names the config field
    (which of the four formats) and then the format's own argument and allowed values."""
    with pytest.raises(ValueError, match=f"^{field}: ") as e:
        QuantConfig(method="rtn", **{field: spec})
    assert needle in str(e.value)


def test_nvfp4_two_level_model_save_load_round_trip(tiny_llama_factory, tmp_path):
    """A tiny Llama with NVFP4 (two level) weights, NVFP4 activations and NVFP4 factors, plain
    and L2QER: the saved file keeps every per-tensor scale (NVFP4Tensor), so the reloaded
    model's logits are bit-identical."""
    import torch

    from lqer.quantize import load_quantized, quantize_model, save_quantized

    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    for method in ("l2qer",):
        cfg = load_config("W4A8", method=method, rank=4, w_format="NVFP4_2L", x_format="NVFP4",
                          a_format="NVFP4_2L", b_format="NVFP4_2L")
        m1, info = quantize_model(tiny_llama_factory(), cfg, calibration_batches=[ids], progress=False)
        assert info["avg_bits_per_weight"] > 4.5  # 4 + 8/16 per weight, plus 32 bits per tensor
        path = tmp_path / f"{method}.safetensors"
        save_quantized(m1, path, config=cfg, info=info)
        m2 = load_quantized(tiny_llama_factory(), path)
        with torch.no_grad():
            torch.testing.assert_close(m2(ids).logits, m1(ids).logits, atol=0, rtol=0)
