"""Rotations: orthogonality, hand-checked Hadamard, output unchanged in full precision."""

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
