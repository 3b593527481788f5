"""Calibration, QuantLinear, quantize_model, save/load, configs, data, bad inputs (tiny models)."""
import math

import numpy as np
import pytest
import torch

import mxsim
from lqer.approximate import approximate
from lqer.calibrate import AbsMeanMax, OutlierColumns, SecondMoment, input_groups, linear_layers, run_calibration
from lqer.config import QuantConfig, load_config
from lqer.linear import QuantLinear
from lqer.llm_int8 import LLMInt8Linear, absmax_quantize
from lqer.quantize import load_quantized, quantize_model, save_quantized

W4 = mxsim.MXINT4.with_block_size(16)
I8 = mxsim.MXINT8.with_block_size(16)


def test_absmeanmax_hand_computed_two_batches():
    o = AbsMeanMax()
    o.update(torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]]))  # mean|x| = [2, 1, 0]
    o.update(torch.tensor([[0.0, 4.0, 1e-5], [0.0, 0.0, 1e-5]]))  # mean|x| = [0, 2, 1e-5]
    # max over batches [2, 2, 1e-5] -> clamp 1e-4 -> [2, 2, 1e-4]; / sqrt(1e-4 * 2)
    expect = torch.tensor([2.0, 2.0, 1e-4]) / math.sqrt(2e-4)
    torch.testing.assert_close(o.scale(), expect, rtol=1e-6, atol=0)


def test_second_moment_and_outliers():
    sm, oc = SecondMoment(), OutlierColumns()
    x1 = torch.tensor([[1.0, 7.0], [0.0, 1.0]])
    x2 = torch.tensor([[2.0, -1.0]])
    for x in (x1, x2):
        sm.update(x)
        oc.update(x)
    torch.testing.assert_close(sm.mean(), torch.tensor([[5.0, 5.0], [5.0, 51.0]], dtype=torch.float64) / 3)
    assert oc.count == 1 and oc.columns() == [1]


def test_input_groups_and_calibration_sharing(tiny_llama):
    names = list(linear_layers(tiny_llama))
    assert len(names) == 14  # 7 per block: q k v o gate up down
    groups = input_groups(names)
    assert ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj"] in groups
    assert ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"] in groups
    assert len(groups) == 8
    ids = torch.randint(0, 64, (3, 10))
    seen = {}

    def factory(name, mod):
        o = AbsMeanMax()
        seen[name] = o
        return o

    stats = run_calibration(tiny_llama, ids, factory, progress=False)
    assert stats["model.layers.0.self_attn.q_proj"] is stats["model.layers.0.self_attn.v_proj"]
    assert stats["model.layers.0.mlp.down_proj"].s.shape == (64,)
    assert all(o.n_batches == 3 for o in seen.values())  # each input seen once per batch
    # no hooks left behind
    assert all(len(m._forward_pre_hooks) == 0 for m in tiny_llama.modules())


def _layer(out=48, inp=64, rank=8, axis="last"):
    W = torch.randn(out, inp, generator=torch.Generator().manual_seed(3))
    r = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=rank, factor_axis=axis)
    return W, r


def test_quantlinear_matches_formula():
    W, r = _layer()
    bias = torch.randn(48)
    q = QuantLinear(r.w_q, bias=bias, x_format=I8, A=r.A, B=r.B, lowrank_output_format=I8)
    x = torch.randn(2, 5, 64)
    xq = mxsim.fake_quantize(x, I8, axis=-1)
    h = mxsim.fake_quantize(xq @ r.A_deq, I8, axis=-1)
    expect = xq @ r.w_deq.T + h @ r.B_deq + bias
    torch.testing.assert_close(q(x), expect, atol=1e-5, rtol=1e-5)
    # LRC options: low-rank path on unquantized x, no re-quantization, fp factors, rotation
    A, B = torch.randn(64, 4), torch.randn(4, 48)
    Rq, _ = torch.linalg.qr(torch.randn(64, 64))
    q2 = QuantLinear(r.w_q, x_format=I8, A=A, B=B, lowrank_input="unquantized", input_transform=Rq)
    xr = x @ Rq
    expect2 = mxsim.fake_quantize(xr, I8, axis=-1) @ r.w_deq.T + xr @ A @ B
    torch.testing.assert_close(q2(x), expect2, atol=1e-4, rtol=1e-4)


def test_quantlinear_bits_hand_count():
    W, r = _layer(out=48, inp=64, rank=8, axis="reduction")
    q = QuantLinear(r.w_q, x_format=I8, A=r.A, B=r.B)
    w_bits = 48 * 64 * 4 + 48 * 4 * 8  # 4-bit elements + one 8-bit exponent per 16
    a_bits = 64 * 8 * 8 + 4 * 8 * 8  # A 64x8 blocked along in: 4 blocks per column
    b_bits = 8 * 48 * 8 + 1 * 48 * 8  # B 8x48 blocked along k: one short block per column
    assert q.nbits == w_bits + a_bits + b_bits
    plain = QuantLinear(r.w_q, x_format=I8)
    assert plain.bits_per_weight == 4.5


def _ref_mm(a_mx, b_mx, accumulator="exact"):
    """mxsim's pure-torch referee matmul (the bit-exact oracle) of two MXTensors."""
    from mxsim import reference

    t = lambda v: torch.as_tensor(np.asarray(v))  # noqa: E731
    return reference.matmul(t(a_mx.codes), t(a_mx.scales), a_mx.fmt, t(b_mx.codes), t(b_mx.scales), b_mx.fmt,
                            accumulator=accumulator).to(torch.float64)


def test_quantlinear_exact_mode_is_the_referee_matmul_bit_for_bit():
    """exact=True runs x·W_q^T and the low-rank path through mxsim.matmul; composed from
    mxsim.reference.matmul (integer products, exact block sums) it must agree bit for bit."""
    from lqer.linear import transpose_mx

    W, r = _layer(axis="reduction")
    exact = QuantLinear(r.w_q, x_format=I8, A=r.A, B=r.B, lowrank_output_format=I8, exact=True)
    x = torch.randn(7, 64, generator=torch.Generator().manual_seed(4))
    x_mx = mxsim.quantize(x, I8, axis=1)
    y = _ref_mm(x_mx, transpose_mx(r.w_q))
    h = _ref_mm(x_mx, r.A).to(torch.float32)
    y = y + _ref_mm(mxsim.quantize(h, I8, axis=1), r.B)
    assert torch.equal(exact(x), y.to(torch.float32))
    # without factors, the fused-FP32 accumulator: the referee's fp32 steps, bit for bit
    exact32 = QuantLinear(r.w_q, x_format=I8, exact=True, accumulator="fp32")
    assert torch.equal(exact32(x), _ref_mm(x_mx, transpose_mx(r.w_q), "fp32").to(torch.float32))
    # the fast path computes the same products in float32: equal up to float32 summation order
    fast = QuantLinear(r.w_q, x_format=I8, A=r.A, B=r.B, lowrank_output_format=I8)
    torch.testing.assert_close(fast(x), exact(x), atol=1e-4, rtol=1e-5)


def test_quantlinear_bad_shapes():
    W, r = _layer()
    with pytest.raises(ValueError, match="factor shapes"):
        QuantLinear(r.w_q, A=torch.randn(63, 8), B=torch.randn(8, 48))
    with pytest.raises(ValueError, match="both A and B"):
        QuantLinear(r.w_q, A=torch.randn(64, 8))
    with pytest.raises(ValueError, match="input_transform"):
        QuantLinear(r.w_q, input_transform=torch.eye(10))
    with pytest.raises(ValueError, match="lowrank_input"):
        QuantLinear(r.w_q, lowrank_input="maybe")


def test_llm_int8_outlier_columns_stay_fp16():
    W = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    m = LLMInt8Linear(W, bits=8)
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(1)).clamp(-3, 3)
    x[2, 5] = 50.0  # column 5 is an outlier column
    y = m(x)
    x_reg = x.clone()
    x_reg[:, 5] = 0
    expect = absmax_quantize(x_reg, 8, -1) @ absmax_quantize(W, 8, 1).T + \
        (x[:, 5:6].half().float() @ W[:, 5:6].half().float().T)
    torch.testing.assert_close(y, expect, atol=1e-2, rtol=1e-3)
    assert m.max_outliers_seen == 1
    # int8 absmax by hand: 127 levels
    v = torch.tensor([[1.0, -0.5, 0.25, 0.0]])
    torch.testing.assert_close(absmax_quantize(v, 8, -1), torch.round(v * 127) / 127)


def test_configs():
    c = load_config("W4A8")
    assert c.w_format == mxsim.MXINT4.with_block_size(16)
    assert c.x_format == mxsim.MXINT8.with_block_size(16) and c.a_format == c.b_format == c.x_format
    assert c.rank == mxsim.Rank(32) and c.factor_axis == "last"
    assert load_config("W3A8").w_format.element_bits == 3
    bfp = load_config("W4A8-BFP")
    assert isinstance(bfp.w_format, mxsim.BlockFP) and bfp.w_format.width == 4 and bfp.w_format.block_size == 16
    w44 = load_config("W4A4")
    assert w44.w_format.block_size == 32 and w44.x_format.element_bits == 4
    assert QuantConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown config"):
        load_config("W5A9")
    with pytest.raises(ValueError, match="factor_axis"):
        QuantConfig(factor_axis="first")


def test_method_options_typed_defaults_once_unknown_refused(tmp_path):
    from lqer.options import GPTQOptions, LLMIntOptions, LRCOptions

    lrc5 = load_config("lrc5_w4a4")  # the [lrc] table of the preset
    assert lrc5.options == LRCOptions(iterations=5)  # every other field at its one default
    assert lrc5.rank == mxsim.Rank(0.1, "of_min_dim")
    assert QuantConfig.from_dict(lrc5.to_dict()) == lrc5
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['iteration'\] for method 'lrc' \(allowed: .*iterations"):
        QuantConfig(method="lrc", options={"iteration": 5})
    with pytest.raises(ValueError, match="unknown option"):
        QuantConfig(method="l2qer", options={"threshold": 4.0})  # another method's option
    with pytest.raises(ValueError, match="gptq_hessian"):
        QuantConfig(method="gptq", options={"gptq_hessian": "z"})
    # switching the method keeps the shared fields (rotation, damp) and resets the rest
    g = load_config("lrc_w4a4_rot").replace(method="gptq")
    assert g.options == GPTQOptions(rotation="auto")
    assert QuantConfig(method="llm_int8").options == LLMIntOptions(threshold=6.0)
    # TOML: the options table must be named after the method
    bad = tmp_path / "bad.toml"
    bad.write_text('method = "lrc"\nrank = 0.1\n[extra]\niterations = 2\n')
    with pytest.raises(ValueError, match=r"\[lrc\] table"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text('method = "lrc"\nrank = {value = 0.2, reading = "of_params"}\n[lrc]\niterations = 2\n')
    c = load_config(good)
    assert c.options.iterations == 2 and c.rank == mxsim.Rank(0.2, "of_params")


def test_llm_int8_observer_uses_the_configured_threshold(tiny_llama):
    """The calibration observer must count outliers at the method's threshold (it was fixed at 6)."""
    from lqer.quantize import collect_stats

    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    cfg = QuantConfig(method="llm_int8", options={"threshold": 1.5})
    stats = collect_stats(tiny_llama, cfg, ids, progress=False)
    obs = stats["model.layers.0.self_attn.q_proj"]
    assert obs.threshold == 1.5
    # by hand from the layer inputs: columns with any |x| > 1.5
    xs = []
    h = tiny_llama.model.layers[0].self_attn.q_proj.register_forward_pre_hook(lambda m, a: xs.append(a[0]))
    with torch.no_grad():
        tiny_llama(input_ids=ids)
    h.remove()
    X = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
    assert 0 < obs.count == int((X.abs() > 1.5).any(dim=0).sum()) < X.shape[1]
    _, info = quantize_model(tiny_llama, cfg, stats=stats, progress=False)
    assert info["layers"]["model.layers.0.self_attn.q_proj"]["outlier_columns"] == obs.count


def _mx_bits(rows, cols, bits, block=16):
    """rows x cols blocked along cols: element bits + one 8-bit shared exponent per block."""
    return rows * (cols * bits + -(-cols // block) * 8)


def _hand_bits(method, out, inp, k=4):
    """Storage bits of one quantized tiny-Llama layer at W4A8 (blocks of 16), by hand."""
    if method == "fp":
        return out * inp * 16
    if method == "llm_int8":  # int8 + one fp32 scale per output row (+ fp16 outlier columns: none here)
        return out * (inp * 8 + 32)
    w = _mx_bits(out, inp, 4)
    if method == "plain":
        return w
    # A (in x k) and B (k x out) MXINT8 blocked along their last dimension ("as published")
    return w + _mx_bits(inp, k, 8) + _mx_bits(k, out, 8)


@pytest.mark.parametrize("method", ["plain", "lqer", "l2qer", "qera", "qera_approx", "llm_int8", "fp"])
def test_quantize_model_all_methods(tiny_llama_factory, method):
    """Every method: hand-counted bits per layer, the weights on the MXINT4 grid, and the
    low-rank corrections reduce the error they minimise below plain MXINT's."""
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    ref_model = tiny_llama_factory()
    with torch.no_grad():
        ref = ref_model(input_ids=ids).logits
    weights = {n: m.weight.detach().clone() for n, m in linear_layers(ref_model).items()}
    cfg = load_config("W4A8", method=method, rank=4)
    model, info = quantize_model(tiny_llama_factory(), cfg, calibration_batches=ids, progress=False)
    assert info["n_layers"] == 14
    assert model.lm_head.__class__.__name__ == "Linear"  # LM head untouched
    for name, lay in info["layers"].items():
        out, inp = lay["shape"]
        assert lay["bits"] == _hand_bits(method, out, inp), name
    n_w = sum(o * i for o, i in (lay["shape"] for lay in info["layers"].values()))
    assert info["avg_bits_per_weight"] == pytest.approx(sum(lay["bits"] for lay in info["layers"].values()) / n_w)
    with torch.no_grad():
        out = model(input_ids=ids).logits
    if method == "fp":
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        return
    if method == "llm_int8":  # no |x| > 6 in this tiny model: every column int8, absmax per row
        lin = model.model.layers[0].mlp.down_proj
        torch.testing.assert_close(lin.weight_q, absmax_quantize(weights["model.layers.0.mlp.down_proj"], 8, 1))
        return
    # second moments of every layer's calibration input, taken here on the fp model
    xtx = run_calibration(ref_model, ids, lambda n, m: SecondMoment(), progress=False)
    err_plain = err = out_plain = out_err = 0.0
    for name, W in weights.items():
        q = model.get_submodule(name)
        W_q = torch.as_tensor(mxsim.fake_quantize(W.numpy(), W4, axis=1))
        assert torch.equal(q.weight, W_q), name  # the weight part is round-to-nearest MXINT4
        W_eff = q.weight if q.A is None else q.weight + (q.A @ q.B).T
        S = xtx[name].mean()
        for E, acc in (((W - W_q).double(), "plain"), ((W - W_eff).double(), "this")):
            w_err, o_err = float(E.pow(2).sum()), float(((E @ S) * E).sum())  # ||E||_F^2, E[||E x||^2]
            if acc == "plain":
                err_plain, out_plain = err_plain + w_err, out_plain + o_err
            else:
                err, out_err = err + w_err, out_err + o_err
    if method == "plain":
        assert err == err_plain
    elif method == "lqer":  # LQER minimises ||W - W_q - AB||_F (up to the factors' MXINT8 rounding)
        assert err < 0.9 * err_plain
    else:  # the activation-aware ones minimise (an estimate of) the output error E ||(W - W_eff) x||^2
        assert out_err < 0.9 * out_plain


def test_quantize_model_needs_calibration(tiny_llama):
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(tiny_llama, load_config("W4A8", method="l2qer"), progress=False)


def test_save_load_round_trip_and_atomic(tiny_llama_factory, tmp_path, monkeypatch):
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    m1, info = quantize_model(tiny_llama_factory(), load_config("W4A8", method="l2qer", rank=4), ids, progress=False)
    path = tmp_path / "q.safetensors"
    save_quantized(m1, path, info=info)
    m2 = load_quantized(tiny_llama_factory(), path)
    with torch.no_grad():
        torch.testing.assert_close(m2(input_ids=ids).logits, m1(input_ids=ids).logits, atol=0, rtol=0)
    before = path.read_bytes()
    # a failure half-way through writing leaves the previous result intact
    import safetensors.torch

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_quantized(m1, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["q.safetensors"]
    with pytest.raises(ValueError, match="does not exist"):
        load_quantized(tiny_llama_factory(), tmp_path / "nope.safetensors")


def test_model_path_errors(tmp_path):
    from lqer.model import load_model

    with pytest.raises(ValueError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "fake.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="fake.gguf"):
        load_model(str(bad))
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_model(str(txt))
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_model(str(empty))


class _ToyTok:
    def __call__(self, text, return_tensors=None, add_special_tokens=False):
        return {"input_ids": torch.tensor([[hash(w) % 100 for w in text.split()]])}


def test_token_windows():
    from lqer.data import token_windows

    w = token_windows(_ToyTok(), " ".join(["a"] * 25), 10)
    assert w.shape == (2, 10) and w.dtype == torch.long
    assert token_windows(_ToyTok(), " ".join(["a"] * 25), 10, n_windows=1).shape == (1, 10)
    with pytest.raises(ValueError, match="shorter than one window"):
        token_windows(_ToyTok(), "a b c", 10)


def _tied_tiny_llama(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def test_unmapped_safetensors_reader_matches_and_keeps_ties(tmp_path):
    from lqer.model import _read_safetensors_into, _save_plain_hf

    src = _tied_tiny_llama(0)
    _save_plain_hf(src, tmp_path)
    dst = _tied_tiny_llama(1)  # other random weights: everything must be overwritten
    _read_safetensors_into(dst, tmp_path / "model.safetensors")
    assert dst.lm_head.weight is dst.model.embed_tokens.weight
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(dst(input_ids=ids).logits, src(input_ids=ids).logits, atol=0, rtol=0)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        _read_safetensors_into(_tied_tiny_llama(1), tmp_path / "model.safetensors")


def test_quantize_model_releases_each_replaced_weight(tiny_llama):
    """The peak-memory fix: while layer n is being quantized, layers 0..n-1's original
    nn.Linear modules must already be gone (not kept alive until quantize_model returns)."""
    import gc
    import weakref

    from dataclasses import replace

    from lqer.methods import METHODS, get_method, register_method

    refs = {n: weakref.ref(m) for n, m in tiny_llama.named_modules() if isinstance(m, torch.nn.Linear)
            and m is not tiny_llama.lm_head}
    done, alive_at_call = [], []
    plain = get_method("plain").build

    def probe(name, linear, stats, config):
        gc.collect()
        alive_at_call.append(sum(refs[d]() is not None for d in done))
        done.append(name)
        return plain(name, linear, stats, config)

    register_method(replace(get_method("plain"), name="_probe", build=probe))
    try:
        quantize_model(tiny_llama, load_config("W4A8", method="_probe"), progress=False)
    finally:
        METHODS.pop("_probe")
    assert len(done) == 14 and alive_at_call == [0] * 14


class _DeviceLike(torch.Tensor):
    """A tensor numpy cannot read directly, as a CUDA tensor (np.asarray raises TypeError)."""

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert a device tensor to numpy")


def test_save_quantized_with_device_codes(tiny_llama_factory, tmp_path):
    """Layers quantized on CUDA hold device codes/scales (mxsim.gpu); saving copies them to the
    host and the file holds what it holds for host codes (it raised TypeError on the H200)."""
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    model, _ = quantize_model(tiny_llama_factory(), load_config("W4A8", method="plain"), ids, progress=False)
    host_file, dev_file = tmp_path / "host.safetensors", tmp_path / "dev.safetensors"
    save_quantized(model, host_file)
    for mod in model.modules():
        q = getattr(mod, "w_mx", None)
        if q is not None:
            mod.w_mx = q._replace(torch.from_numpy(q.codes).as_subclass(_DeviceLike),
                                  torch.from_numpy(q.scales).as_subclass(_DeviceLike))
    save_quantized(model, dev_file)
    # same header and tensors (not the same bytes: safetensors may order the header's metadata
    # map differently from one save to the next)
    from safetensors import safe_open

    host, dev = safe_open(str(host_file), "pt"), safe_open(str(dev_file), "pt")
    assert dev.metadata() == host.metadata() and sorted(dev.keys()) == sorted(host.keys())
    assert any(k.endswith(".W.codes") for k in host.keys())
    for k in host.keys():
        assert torch.equal(dev.get_tensor(k), host.get_tensor(k)), k
