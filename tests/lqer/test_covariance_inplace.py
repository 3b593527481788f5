"""The in-place d x d helpers LRC and GPTQ use at 7B widths (lqer.covariance): the same numbers
as the plain torch expressions they replace (bit for bit on the same memory; to rounding on a
fresh copy, where MKL's results depend on alignment), and a hand-computed factor."""

import torch

from lqer.covariance import ROW_BLOCK, _max_asymmetry, cholesky_, symmetrize_


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2 * d, d, generator=g, dtype=torch.float64)
    A = X.T @ X
    torch.diagonal(A).add_(1.0)
    return A


def _close(got, want):
    # agreement to rounding, relative to the matrix's largest entry (d = 1101: ~1e-14 seen)
    torch.testing.assert_close(got, want, rtol=0.0, atol=1e-11 * float(want.abs().max()))


def test_cholesky_of_a_hand_computed_matrix():
    # [[4, 2], [2, 5]] = L L^T with L = [[2, 0], [1, 2]] (2*2 = 4, 1*2 = 2, 1 + 4 = 5)
    L, info = cholesky_(torch.tensor([[4.0, 2.0], [2.0, 5.0]], dtype=torch.float64))
    assert int(info) == 0
    assert L.tolist() == [[2.0, 0.0], [1.0, 2.0]]
    U, _ = cholesky_(torch.tensor([[4.0, 2.0], [2.0, 5.0]], dtype=torch.float64), upper=True)
    assert U.tolist() == [[2.0, 1.0], [0.0, 2.0]]


def test_cholesky_in_place_is_torchs_factor_in_the_same_memory():
    d = ROW_BLOCK + 77  # more than one block of every helper
    A = _spd(d, 0)
    M = A.clone()
    ptr = M.data_ptr()
    L, info = cholesky_(M)
    assert int(info) == 0 and L.data_ptr() == ptr
    # LAPACK on the same column-major memory: torch's factor of that view, to the bit
    assert torch.equal(L, torch.linalg.cholesky(A.mT))
    # torch's own call on a fresh copy agrees to rounding only: MKL's blocked kernels depend on
    # the buffer's alignment (seen on an AMD EPYC VM: 1e-14 apart on entries of ~48)
    _close(L, torch.linalg.cholesky(A))
    Hinv = torch.cholesky_inverse(L, out=L)  # what GPTQ does next, still in place
    want_inv = torch.cholesky_inverse(torch.linalg.cholesky(A))
    _close(Hinv, want_inv)
    U, _ = cholesky_(Hinv, upper=True)
    assert U.data_ptr() == ptr
    _close(U, torch.linalg.cholesky(want_inv, upper=True))
    bad = -torch.eye(3, dtype=torch.float64)
    assert int(cholesky_(bad)[1]) != 0  # not positive definite: reported, not raised


def test_symmetrize_and_asymmetry_by_blocks():
    d = 2 * ROW_BLOCK + 5
    A = _spd(d, 1)
    A[3, d - 1] += 0.25  # one asymmetric pair, across blocks
    want = (A + A.T) / 2
    assert _max_asymmetry(A) == 0.25
    B = symmetrize_(A.clone())
    assert torch.equal(B, want) and torch.equal(B, B.T)
