"""The model-level datapath (issue 15) on a CUDA device computes what it computes on the CPU, bit for bit.

Every replaced layer's GEMMs run on mxsim.matmul's Triton kernels there; the layer must keep
its operands on the caller's device (weights quantized on the host are moved once, not per
call) and give the CPU's bits: the integer datapath is exact and its accumulators are defined
bit for bit (docs/mxsim_semantics.md), and the float32 adds after it are elementwise. So each
layer, fed the same input, must match its CPU twin exactly under exact, fp32, fp32:4 and fixed
point (saturate and wrap), and count the same overflowed outputs. The float parts of the model
around the layers (attention, norms) may differ in the last bits between devices, so the whole
model's logits are compared per layer on captured inputs, not end to end.

Skipped without CUDA; with TRITON_INTERPRET=1 the same kernels run through Triton's interpreter
on CPU tensors (``TRITON_INTERPRET=1 pytest tests/lqer/test_datapath_cuda.py``)."""

import contextlib
import copy
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if torch.cuda.is_available():
    DEVICE = "cuda"
elif INTERPRET:
    DEVICE = "cpu"  # the Triton interpreter takes CPU torch tensors
    import mxsim.gpu.mm_kernel  # noqa: F401  (the kernels become interpreted functions now, while the
    import mxsim.gpu.quant  # noqa: F401  variable is set; the CPU twin runs with it unset)
else:
    pytestmark = pytest.mark.skip(reason="needs CUDA (or TRITON_INTERPRET=1 for the interpreter)")
    DEVICE = None

ACCUMULATORS = ["exact", "fp32", "fp32:4", "fixed:24:22", "fixed:20:19:wrap"]  # fixed: |acc| < 2 and 1/2
BLOCK = 32


@contextlib.contextmanager
def _host():
    """The CPU twin runs mxsim's numba path (under TRITON_INTERPRET=1 CPU tensors would go to Triton)."""
    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _config(setting):
    from lqer.config import QuantConfig

    i8 = f"MXINT8/{BLOCK}"
    if setting == "l2qer":  # both low-rank GEMMs on the datapath, as experiments.datapath_table's W4A8-L2QER
        return QuantConfig(method="l2qer", w_format=f"MXINT4/{BLOCK}", x_format=i8, a_format=i8, b_format=i8,
                           rank=4, factor_axis="reduction", quantize_lowrank_output=True, svd="full")
    return QuantConfig(method="plain", w_format=i8, x_format=i8)


def _layer_inputs(model, ids):
    """The input of every QuantLinear in one forward of ``model`` (CPU)."""
    from lqer.datapath import quant_layers

    seen = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: seen.setdefault(n, args[0].detach().clone()))
             for n, m in quant_layers(model).items()]
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.fixture(scope="module")
def quantized():
    """Each setting quantized once on the CPU (the host MX codes that the device copy must move)."""
    from lqer.quantize import quantize_model

    ids = torch.randint(0, 64, (4, 40), generator=torch.Generator().manual_seed(1))
    out = {}
    with _host():
        for setting in ("plain", "l2qer"):
            model = _tiny_llama()
            quantize_model(model, _config(setting), calibration_batches=ids, progress=False)
            out[setting] = model
    return out, ids


@pytest.mark.parametrize("setting", ["plain", "l2qer"])
@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_every_layer_on_the_device_equals_the_cpu_bit_for_bit(quantized, setting, acc):
    from lqer.datapath import count_overflow, quant_layers, set_accumulator

    models, ids = quantized
    cpu = models[setting]
    dev = copy.deepcopy(cpu).to(DEVICE)
    set_accumulator(cpu, acc)
    set_accumulator(dev, acc)
    with _host():
        inputs = _layer_inputs(cpu, ids[:2])
    cpu_layers, dev_layers = quant_layers(cpu), quant_layers(dev)
    assert inputs.keys() == cpu_layers.keys() and len(inputs) == 7
    with torch.no_grad(), count_overflow(cpu), count_overflow(dev):
        for name, x in inputs.items():
            x = x * 16  # larger than the random model's activations, so that the fixed points overflow
            with _host():
                want = cpu_layers[name](x)
            got = dev_layers[name](x.to(DEVICE))
            assert got.device.type == torch.device(DEVICE).type
            assert got.dtype == want.dtype == torch.float32
            assert torch.isfinite(want).all()
            assert torch.equal(got.cpu(), want), (name, float((got.cpu() - want).abs().max()))
    for name, layer in dev_layers.items():
        # every datapath GEMM's weight-side codes went to the device (once: kept by the layer)
        on_device = {g for g, d in layer._weight_sides if d is not None}
        assert on_device == set(layer.accumulators), name
        assert layer.overflow_counts == cpu_layers[name].overflow_counts, name
    if acc.startswith("fixed"):  # the narrow fraction bits of these specs overflow somewhere: counted alike
        assert sum(bad for layer in cpu_layers.values() for bad, _ in layer.overflow_counts.values()) > 0
    set_accumulator(cpu, "float")


def test_calibration_and_forward_stay_on_the_device(quantized):
    """Partial-sum calibration on a device model gives the CPU's ranges when fed the CPU's
    activations (checked on the main GEMM of one layer), and a whole forward runs there."""
    from lqer.datapath import calibrate_partial_sums, calibrated_fixed_point, set_accumulator

    models, ids = quantized
    dev = copy.deepcopy(models["l2qer"]).to(DEVICE)
    ranges = calibrate_partial_sums(dev, ids[:1].to(DEVICE))
    with _host():
        want = calibrate_partial_sums(models["l2qer"], ids[:1])
    assert ranges.keys() == want.keys()
    first = next(iter(want))
    # the first layer's input (embeddings -> RMSNorm) is computed alike on both devices up to float rounding
    assert ranges[first].keys() == {"main", "lowrank_in", "lowrank_out"}
    for g in ranges[first]:
        assert ranges[first][g] == pytest.approx(want[first][g], rel=1e-3)
    set_accumulator(dev, "fixed:24:12", calibrated_fixed_point(ranges, 24))
    with torch.no_grad():
        logits = dev(input_ids=ids[:1].to(DEVICE)).logits
    assert logits.device.type == torch.device(DEVICE).type and torch.isfinite(logits).all()


def test_device_codes_keep_their_storage_size(quantized):
    """An MXTensor moved to the device reports the host's storage bits (hand count: a 64 x 64
    MXINT8/32 weight is 4096 elements x 8 bits + 128 blocks x 8 scale bits = 33792)."""
    from lqer.datapath import quant_layers
    from lqer.linear import mx_on

    models, _ = quantized
    w = quant_layers(models["plain"])["model.layers.0.self_attn.q_proj"].w_mx
    assert w.device is None and w.nbits == 4096 * 8 + 128 * 8 == 33792
    on = mx_on(w, torch.device(DEVICE))
    assert on.device is not None and on.nbits == 33792


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the device branch of partial_sum_range needs CUDA")
def test_partial_sum_range_on_the_device_equals_the_host():
    # the block GEMMs run on the GPU that holds the codes (float64 there: exact integers below
    # 2^53 as on the host, so the block terms agree to the bit); the running sums are float64
    # cumsums whose association may differ on the device (the docstring's 2^-53 relative error)
    import mxsim

    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 200, generator=g) * torch.logspace(-3, 3, 200)  # a short last block (200 = 6*32 + 8)
    w = torch.randn(200, 70, generator=g)
    fa, fb = mxsim.MXINT8, mxsim.MXINT4
    host = mxsim.partial_sum_range(mxsim.quantize(x, fa, axis=-1), mxsim.quantize(w, fb, axis=0))
    dev = mxsim.partial_sum_range(mxsim.quantize(x.cuda(), fa, axis=-1), mxsim.quantize(w.cuda(), fb, axis=0))
    assert dev["max_abs_block_sum"] == host["max_abs_block_sum"] and dev["outputs"] == host["outputs"]
    assert dev["max_abs_partial_sum"] == pytest.approx(host["max_abs_partial_sum"], rel=2.0**-50)
