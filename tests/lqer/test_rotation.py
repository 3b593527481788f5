"""Rotations: orthogonality, hand-checked Hadamard, output unchanged in full precision."""

import copy

import pytest
import torch

import mxsim
from lqer.rotation import hadamard, rotate_weight, rotation_matrix


def test_hadamard_by_hand():
    h = 0.5
    want = torch.tensor([[h, h, h, h], [h, -h, h, -h], [h, h, -h, -h], [h, -h, -h, h]], dtype=torch.float64)
    assert torch.equal(hadamard(4), want)
    with pytest.raises(ValueError, match="power-of-two"):
        hadamard(12)


@pytest.mark.parametrize("d,kind", [(64, "auto"), (64, "hadamard"), (48, "auto"), (48, "random"), (64, "random")])
def test_orthogonal_and_seeded(d, kind):
    R = rotation_matrix(d, kind, seed=3)
    torch.testing.assert_close(R.T @ R, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(R, rotation_matrix(d, kind, seed=3))
    if kind == "random":
        assert not torch.equal(R, rotation_matrix(d, kind, seed=4))
    assert rotation_matrix(d, "none") is None


def test_output_unchanged_in_full_precision_and_quantlinear():
    from lqer.linear import QuantLinear

    g = torch.Generator().manual_seed(0)
    W = torch.randn(10, 48, generator=g, dtype=torch.float64)
    x = torch.randn(7, 48, generator=g, dtype=torch.float64)
    x[:, 5] *= 50  # an outlier channel
    R = rotation_matrix(48, "auto", seed=1)
    torch.testing.assert_close((x @ R) @ rotate_weight(W, R).T, x @ W.T, rtol=1e-12, atol=1e-12)
    # QuantLinear with no quantization and the rotation as input_transform: same output
    q = QuantLinear(rotate_weight(W, R).float(), x_format=None, input_transform=R)
    torch.testing.assert_close(q(x.float()), (x @ W.T).float(), rtol=1e-4, atol=1e-4)
    # and the rotation spreads the outlier: max/rms of the rotated input is much smaller
    ratio = lambda t: float(t.abs().max() / t.pow(2).mean().sqrt())  # noqa: E731
    assert ratio(x @ R) < 0.5 * ratio(x)
    _ = mxsim


def test_bad_kind():
    with pytest.raises(ValueError, match="unknown rotation"):
        rotation_matrix(8, "givens")


def test_lqer_family_with_input_rotation():
    """Rotation for plain/LQER/L2QER/QERA: the layer computes f(x R) with W R; statistics must be
    of x R. With 8-bit formats every method stays close to the fp model; QERA's correction beats
    plain quantization; statistics taken without the rotation are refused."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lqer.calibrate import AbsMeanMax, MultiObserver, SecondMoment, run_calibration
    from lqer.config import QuantConfig
    from lqer.methods import input_rotation
    from lqer.quantize import quantize_model

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids).logits
    base = QuantConfig(method="plain", w_format="MXINT4/16", x_format="MXINT8/16", a_format="MXINT8/16",
                       b_format="MXINT8/16", rank=8, options={"rotation": "auto"})

    def factory(name, module):
        R = input_rotation(base, module.in_features)
        return MultiObserver(abs=AbsMeanMax(transform=R), xtx=SecondMoment(transform=R))

    stats = run_calibration(model, ids, factory, progress=False)
    err = {}
    for m in ("plain", "lqer", "l2qer", "qera"):
        q = copy.deepcopy(model)
        quantize_model(q, base.replace(method=m), stats=stats, progress=False)
        lin = q.model.layers[0].self_attn.q_proj
        assert lin.input_transform is not None and lin.input_transform.shape == (64, 64)  # 64 = 2^6: Hadamard
        with torch.no_grad():
            err[m] = float((q(ids).logits - ref).pow(2).mean() / ref.pow(2).mean())
    assert all(e < 0.05 for e in err.values()), err
    assert err["qera"] < err["plain"]
    # quantize_model's own calibration follows the config's rotation
    own = copy.deepcopy(model)
    quantize_model(own, base.replace(method="l2qer"), calibration_batches=ids, progress=False)
    with torch.no_grad():
        assert float((own(ids).logits - ref).pow(2).mean() / ref.pow(2).mean()) == pytest.approx(err["l2qer"])
    plain_stats = run_calibration(model, ids, lambda n, mod: MultiObserver(abs=AbsMeanMax()), progress=False)
    with pytest.raises(ValueError, match="rotation"):
        quantize_model(copy.deepcopy(model), base.replace(method="l2qer"), stats=plain_stats, progress=False)
