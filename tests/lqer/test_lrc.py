"""LRC: UV-step vs brute force, vs QERA's closed form, monotonicity, rank readings, bad input,
and a real SmolLM2 layer. Expected values come from hand arithmetic or from independent
computations on the data matrices (least squares + SVD), never from lqer.lrc itself."""

import math

import pytest
import torch

import mxsim
from lqer.covariance import CovarianceObserver, CovarianceStats
from lqer.gptq import gptq
from lqer.lrc import layer_loss, lrc, uv_step
from mxsim.rank import Rank

AFMT = mxsim.MXINT4.with_block_size(16)
WFMT = mxsim.MXINT4.with_block_size(16)
F64 = torch.float64


def _data(seed=0, d_in=48, d_out=20, n=1500):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d_in, d_in, generator=g, dtype=F64) / d_in**0.5
    scale = torch.ones(d_in, dtype=F64)
    scale[::7] = 6.0  # a few outlier channels, as in LLM activations
    X = (torch.randn(n, d_in, generator=g, dtype=F64) @ (torch.eye(d_in, dtype=F64) + mix)) * scale
    W = torch.randn(d_out, d_in, generator=g, dtype=F64) * 0.1
    Y = torch.as_tensor(mxsim.fake_quantize(X.numpy(), AFMT, axis=-1))
    return W, X, Y


def _stats(X, Y):
    return CovarianceStats(X.T @ X, Y.T @ Y, X.T @ Y, X.shape[0], AFMT)


def _data_loss(W, Wq, C, X, Y):
    return float(torch.linalg.norm(W @ X.T - Wq @ Y.T - C @ X.T) ** 2)


def test_observer_sums():
    W, X, Y = _data()
    obs = CovarianceObserver(AFMT)
    obs.update(X[:700].reshape(7, 100, -1))  # any leading shape
    obs.update(X[700:])
    st = obs.result()
    assert st.n == X.shape[0]
    torch.testing.assert_close(st.sx, X.T @ X)
    torch.testing.assert_close(st.sy, Y.T @ Y)
    torch.testing.assert_close(st.sxy, X.T @ Y)


def test_layer_loss_matches_data():
    W, X, Y = _data(1)
    Wq = torch.as_tensor(mxsim.fake_quantize(W.numpy(), WFMT, axis=-1))
    g = torch.Generator().manual_seed(5)
    U, V = torch.randn(20, 3, generator=g, dtype=F64), torch.randn(48, 3, generator=g, dtype=F64) * 0.01
    want = _data_loss(W, Wq, U @ V.T, X, Y)
    assert layer_loss(W, Wq, U, V, _stats(X, Y)) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("k", [1, 4, 10])
def test_uv_step_equals_brute_force(k):
    W, X, Y = _data(2)
    Wq = torch.as_tensor(mxsim.fake_quantize(W.numpy(), WFMT, axis=-1))
    R = W @ X.T - Wq @ Y.T                                # residual to explain with C X^T
    C_ls = torch.linalg.lstsq(X, R.T).solution.T          # unconstrained least squares
    Uf, s, Vh = torch.linalg.svd(C_ls @ X.T, full_matrices=False)
    Fk = Uf[:, :k] * s[:k] @ Vh[:k]                       # best rank-k fit of the fitted values
    C_bf = torch.linalg.lstsq(X, Fk.T).solution.T         # the rank-k C with C X^T = Fk
    U, V = uv_step(W, Wq, _stats(X, Y), k, damp=0.0)
    torch.testing.assert_close(U @ V.T, C_bf, rtol=1e-7, atol=1e-9)
    assert _data_loss(W, Wq, U @ V.T, X, Y) == pytest.approx(_data_loss(W, Wq, C_bf, X, Y), rel=1e-9)


def test_uv_step_with_y_equal_x_is_qera_exact():
    W, X, _ = _data(3)
    Wq = torch.as_tensor(mxsim.fake_quantize(W.numpy(), WFMT, axis=-1))
    k = 6
    # QERA (row-vector convention y = x W'): Rxx = E[x^T x], S = Rxx^{1/2} (symmetric root),
    # SVD of S (W - Wq)^T = U S V^T, C = S^{-1} U_k S_k V_k^T; our correction is C^T.
    Rxx = X.T @ X / X.shape[0]
    ev, Q = torch.linalg.eigh(Rxx)
    S = Q @ torch.diag(ev.sqrt()) @ Q.T
    Uq, sq, Vqh = torch.linalg.svd(S @ (W - Wq).T)
    C = torch.linalg.solve(S, Uq[:, :k] * sq[:k]) @ Vqh[:k]
    st = CovarianceStats(X.T @ X, X.T @ X, X.T @ X, X.shape[0], None)
    U, V = uv_step(W, Wq, st, k, damp=0.0)
    torch.testing.assert_close(U @ V.T, C.T, rtol=1e-7, atol=1e-10)
    # and lqer.approximate's QERA-exact (full-precision factors) on the same W_q
    from lqer.approximate import approximate

    res = approximate(W, w_format=WFMT, a_format=None, b_format=None, rank=k, xtx=Rxx, metrics=False)
    torch.testing.assert_close(res.w_deq.double(), Wq)
    torch.testing.assert_close(res.correction.double(), U @ V.T, rtol=1e-4, atol=1e-6)


def test_uv_step_never_increases_loss():
    W, X, Y = _data(4)
    st = _stats(X, Y)
    g = torch.Generator().manual_seed(0)
    for trial in range(5):
        Wq = torch.as_tensor(mxsim.fake_quantize((W + 0.02 * torch.randn(W.shape, generator=g, dtype=F64)).numpy(),
                                                 WFMT, axis=-1))
        U, V = uv_step(W, Wq, st, 5, damp=0.0)
        best = layer_loss(W, Wq, U, V, st)
        for _ in range(4):  # any other rank-5 correction, incl. zero and perturbations of the optimum
            U0 = U + 0.05 * torch.randn(U.shape, generator=g, dtype=F64)
            V0 = V + 0.05 * torch.randn(V.shape, generator=g, dtype=F64)
            assert best <= layer_loss(W, Wq, U0, V0, st) + 1e-9 * abs(best)
        assert best <= layer_loss(W, Wq, None, None, st)
    # inside lrc (default damping), every logged UV-step is below the W-step before it
    res = lrc(W, st, w_format=WFMT, a_format=AFMT, rank=5, iterations=3)
    ls = dict(res.losses)
    for it in (1, 2, 3):
        assert ls[f"uv_step{it}"] <= ls[f"w_step{it}"]


def test_lrc_beats_plain_and_gptq_and_lqer():
    W, X, Y = _data(5)
    st = _stats(X, Y)
    k = 6
    rtn = torch.as_tensor(mxsim.fake_quantize(W.numpy(), WFMT, axis=-1))
    plain = _data_loss(W, rtn, torch.zeros_like(W), X, Y)
    Ue, se, Vhe = torch.linalg.svd(W - rtn)
    lqer = _data_loss(W, rtn, Ue[:, :k] * se[:k] @ Vhe[:k], X, Y)
    # GPTQ, both ways: the classic Hessian X^T X (minimises ||(W - W_q) X^T||), and on this
    # loss's own quadratic (Hessian Y^T Y, target W X^T Y (Y^T Y)^-1: ||W X^T - W_q Y^T||)
    gptq_x = _data_loss(W, gptq(W, X.T @ X, WFMT, damp=0.01), torch.zeros_like(W), X, Y)
    Syl = Y.T @ Y + 0.01 * torch.diagonal(Y.T @ Y).mean() * torch.eye(48, dtype=F64)
    T = torch.linalg.solve(Syl, (W @ X.T @ Y).T).T
    gptq_xy = _data_loss(W, gptq(W, Y.T @ Y, WFMT, target=T, damp=0.01), torch.zeros_like(W), X, Y)
    res = lrc(W, st, w_format=WFMT, a_format=AFMT, rank=k, iterations=1)
    got = _data_loss(W, res.weight, res.U @ res.V.T, X, Y)
    assert got == pytest.approx(res.final_loss, rel=1e-8)
    assert got < lqer < plain
    assert gptq_xy < plain  # the W-step alone already beats round-to-nearest on this loss
    assert got < gptq_xy and got < gptq_x
    # result lies on the weight grid; factors finite; rank as asked
    assert torch.equal(torch.as_tensor(mxsim.fake_quantize(res.weight.numpy(), WFMT, axis=-1)), res.weight)
    assert res.U.shape == (20, k) and res.V.shape == (48, k) and res.rank == k
    # zero init also works and ends below plain
    res0 = lrc(W, st, w_format=WFMT, a_format=AFMT, rank=k, init="zero")
    assert res0.final_loss < plain


@pytest.mark.parametrize("lrf,bits", [("fp16", 16.0), (mxsim.MXINT8, 8.25), (None, 32.0)])
def test_lowrank_format(lrf, bits):
    W, X, Y = _data(6)
    res = lrc(W, _stats(X, Y), w_format=WFMT, rank=4, lowrank_format=lrf)
    if lrf is mxsim.MXINT8:
        assert torch.equal(torch.as_tensor(mxsim.fake_quantize(res.V.numpy(), lrf, axis=0)), res.V)
        assert torch.equal(torch.as_tensor(mxsim.fake_quantize(res.U.numpy(), lrf, axis=1)), res.U)
        assert res.losses[-1][0] == "factors_rounded"
    if lrf == "fp16":
        assert torch.equal(res.U.half().double(), res.U)
    # bits per weight by hand: 4.25 (MXINT4/16: 4 + 8/16... is 4.5) + bits * k (d_in+d_out) / (d_in d_out)
    assert res.bits_per_weight() == pytest.approx(4.5 + bits * 4 * (48 + 20) / (48 * 20))


def test_rank_readings_by_hand():
    # 4096 x 4096 at 10%: of_min_dim 0.1*4096 = 409.6 -> 409; of_params 0.1*4096^2/8192 = 204.8 -> 204
    assert Rank(0.1, "of_min_dim").resolve(4096, 4096) == 409
    assert Rank(0.1, "of_params").resolve(4096, 4096) == 204
    # 30%: 1228.8 -> 1228; 614.4 -> 614
    assert Rank(0.3, "of_min_dim").resolve(4096, 4096) == 1228
    assert Rank(0.3, "of_params").resolve(4096, 4096) == 614
    # SmolLM2 MLP 576 -> 1536 at 10%: 57.6 -> 57; 0.1*576*1536/2112 = 41.89 -> 41
    assert Rank(0.1, "of_min_dim").resolve(576, 1536) == 57
    assert Rank(0.1, "of_params").resolve(576, 1536) == 41
    assert Rank(1.0, "of_min_dim").resolve(10, 20) == 10
    assert Rank(0.001, "of_min_dim").resolve(10, 20) == 1  # never below 1
    assert Rank.of(7).resolve(10, 20) == 7


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Rank(bad, "of_min_dim").resolve(64, 64)


def test_bad_inputs():
    W, X, Y = _data(7)
    st = _stats(X, Y)
    with pytest.raises(ValueError, match="rank reading must be one of"):
        Rank(0.1, "of_weights").resolve(64, 64)
    with pytest.raises(ValueError, match="out of range"):
        lrc(W, st, w_format=WFMT, rank=21)
    with pytest.raises(ValueError, match="positive integer"):
        lrc(W, st, w_format=WFMT, rank=0)
    with pytest.raises(ValueError, match=r"need at least 96 tokens"):
        few = _stats(X[:60], Y[:60])
        lrc(W, few, w_format=WFMT, rank=2)
    with pytest.raises(ValueError, match="d_in=40"):
        lrc(W[:, :40], st, w_format=WFMT, rank=2)
    with pytest.raises(ValueError, match="activation format"):
        lrc(W, st, w_format=WFMT, a_format=mxsim.MXINT8, rank=2)
    bad = CovarianceStats(st.sx.clone(), st.sy, st.sxy, st.n, AFMT)
    bad.sx[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lrc(W, bad, w_format=WFMT, rank=2)
    # singular covariance (a dead input channel) with no damping: clear error, no NaN
    Xs = X.clone()
    Xs[:, 1] = 0.0
    Ys = torch.as_tensor(mxsim.fake_quantize(Xs.numpy(), AFMT, axis=-1))
    with pytest.raises(ValueError, match="not positive definite"):
        lrc(W, _stats(Xs, Ys), w_format=WFMT, rank=2, damp=0.0)


@pytest.mark.model
def test_real_smollm2_layer():
    from lqer.data import calibration_batches
    from lqer.model import load_model

    model, tok = load_model()
    lin = model.model.layers[4].self_attn.q_proj
    ids = calibration_batches(tok, 3, 512, seed=0)  # 1536 tokens >= 2 * 576
    xs = []

    class _Stop(Exception):
        pass

    def grab(m, i, o):  # stop the forward pass at this layer: the rest is not needed
        xs.append(i[0].detach().reshape(-1, i[0].shape[-1]))
        raise _Stop

    h = lin.register_forward_hook(grab)
    with torch.no_grad():
        for r in ids:
            try:
                model(r[None])
            except _Stop:
                pass
    h.remove()
    X = torch.cat(xs).double()
    fmt = mxsim.MXINT4  # blocks of 32, W4A4
    Y = torch.as_tensor(mxsim.fake_quantize(X.numpy(), fmt, axis=-1))
    st = CovarianceStats(X.T @ X, Y.T @ Y, X.T @ Y, X.shape[0], fmt)
    W = lin.weight.detach().double()
    k = Rank(0.1, "of_min_dim").resolve(576, 576)  # 57
    rtn = torch.as_tensor(mxsim.fake_quantize(W.numpy(), fmt, axis=-1))
    plain = _data_loss(W, rtn, torch.zeros_like(W), X, Y)
    Ue, se, Vhe = torch.linalg.svd(W - rtn)
    lqer = _data_loss(W, rtn, Ue[:, :k] * se[:k] @ Vhe[:k], X, Y)
    res = lrc(W, st, w_format=fmt, a_format=fmt, rank=k)
    got = _data_loss(W, res.weight, res.U @ res.V.T, X, Y)
    assert got < lqer < plain
    assert got < 0.8 * plain
    assert math.isfinite(got)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("rotation", ["none", "auto"])
def test_quantize_model_methods(rotation):
    import copy

    from lqer.config import QuantConfig
    from lqer.quantize import collect_shared_stats, collect_stats, quantize_model

    model = _tiny_llama()
    ids = torch.randint(0, 64, (8, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids[:2]).logits
    base = QuantConfig(method="rtn", w_format="MXINT4/16", x_format="MXINT4/16", rank=0.25,
                       options={"rotation": rotation})
    errs = {}
    shared = collect_shared_stats(model, [base.replace(method=m) for m in ("gptq", "lrc")], ids, progress=False)
    for m in ("rtn", "gptq", "lrc"):
        q = copy.deepcopy(model)
        cfg = base.replace(method=m)
        assert cfg.options.rotation == rotation  # carried over from rtn's options
        if m == "gptq":  # quantize_model's own calibration (the factory is handed the config)
            _, info = quantize_model(q, cfg, ids, progress=False)
        else:
            _, info = quantize_model(q, cfg, stats=shared.for_config(cfg), progress=False)
        with torch.no_grad():
            errs[m] = float((q(ids[:2]).logits - ref).pow(2).mean())
        if m == "lrc":
            # 64x64 at 25% of min dim: rank 16; fp16 factors: 4.5 + 16 * 16 * 128 / 4096 for q
            lay = info["layers"]["model.layers.0.self_attn.q_proj"]
            assert lay["rank"] == 16
            assert lay["bits_per_weight"] == pytest.approx(4.5 + 16 * 16 * 128 / 4096)
    assert errs["lrc"] < errs["rtn"]
    assert errs["gptq"] < errs["rtn"]
    # gptq and lrc read the same covariance statistics: one observer serves both
    assert shared.for_config(base.replace(method="gptq")) is shared.for_config(base.replace(method="lrc"))
    assert collect_stats(model, base, ids, progress=False) is None  # rtn is data-free


def test_quantize_model_calibrates_lrc_itself_and_says_how_otherwise():
    """quantize_model hands the config to the LRC/GPTQ observer factory, so no precomputed stats
    are needed; too few tokens say how many are needed; wrong statistics say what is expected."""
    import copy

    from lqer.calibrate import AbsMeanMax, MultiObserver, run_calibration
    from lqer.config import QuantConfig
    from lqer.quantize import quantize_model

    model = _tiny_llama()
    ids = torch.randint(0, 64, (8, 48), generator=torch.Generator().manual_seed(1))  # 384 >= 2 * 128 tokens
    cfg = QuantConfig(method="lrc", w_format="MXINT4/16", x_format="MXINT4/16", rank=4)
    _, info = quantize_model(copy.deepcopy(model), cfg, ids, progress=False)
    assert info["layers"]["model.layers.0.self_attn.q_proj"]["rank"] == 4
    with pytest.raises(ValueError, match="need at least"):
        quantize_model(copy.deepcopy(model), cfg, ids[:2, :16], progress=False)
    wrong = run_calibration(model, ids, lambda n, m: MultiObserver(abs=AbsMeanMax()), progress=False)
    with pytest.raises(ValueError, match="CovarianceObserver"):
        quantize_model(copy.deepcopy(model), cfg, stats=wrong, progress=False)
