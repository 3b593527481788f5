"""Streaming (layer-by-layer) quantization and perplexity against the whole-model path, on tiny
random Llama checkpoints written as sharded safetensors; resume and bad input."""

import errno
import json
import os

import pytest
import torch

from lqer import load_config, quantize_model
from lqer.calibrate import input_groups, linear_layers, run_calibration
from lqer.evaluate import perplexity
from lqer.methods import get_method
from lqer.streaming import load_streamed, perplexity_streaming, quantize_streaming
from lqer.synthetic import write_synthetic_llama

VOCAB = 96


def _ckpt(tmp_path, dtype=torch.float32, layers=2, **kw):
    return write_synthetic_llama(tmp_path / "ckpt", hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                 num_key_value_heads=2, num_hidden_layers=layers, vocab_size=VOCAB, dtype=dtype,
                                 std=0.2, **kw)


def _ids(n, seq, seed):
    return torch.randint(0, VOCAB, (n, seq), generator=torch.Generator().manual_seed(seed))


def _whole(path, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, diff[:5]


CONFIGS = {"l2qer": dict(method="l2qer", rank=4), "lrc": dict(method="lrc", rank=4),
           "plain-fp32acc": dict(method="plain", accumulator="fp32"),
           # float32 statistics: streamed, o_proj and down_proj read them exclusively (in place)
           "lrc-f32": dict(method="lrc", rank=4, options={"stats_dtype": "float32"})}


@pytest.mark.parametrize("dtype,method", [(torch.float32, "l2qer"), (torch.bfloat16, "l2qer"),
                                          (torch.float32, "lrc"), (torch.float32, "plain-fp32acc"),
                                          (torch.float32, "lrc-f32"), (torch.bfloat16, "lrc-f32")])
def test_streaming_equals_whole_model(tmp_path, dtype, method):
    """fp_prefix statistics are the whole model's: the same quantized tensors bit for bit, and the
    same perplexity (full precision and quantized) to the last bit of the float."""
    ck = _ckpt(tmp_path, dtype, tie_word_embeddings=(dtype == torch.bfloat16))
    cfg = load_config("W4A8", **CONFIGS[method])
    calib = _ids(4, 40, 1)  # 160 tokens >= 2 x d_in (48) for LRC's covariances
    win = _ids(2, 24, 2)
    man = quantize_streaming(ck, cfg, calib, tmp_path / "q", progress=False)
    assert man["complete"] and [r["index"] for r in man["layers"]] == [0, 1]
    assert oct(os.stat(tmp_path / "q" / "layer-00000.safetensors").st_mode & 0o777) != "0o600"
    ref = _whole(ck, dtype)
    assert perplexity_streaming(ck, win, progress=False) == perplexity(ref, win, progress=False)
    ref, info = quantize_model(ref, cfg, calib, progress=False)
    got = load_streamed(_whole(ck, dtype), tmp_path / "q")
    _assert_same_state(ref, got)
    assert perplexity_streaming(ck, win, tmp_path / "q", progress=False) == perplexity(ref, win, progress=False)
    assert man["avg_bits_per_weight"] == pytest.approx(info["avg_bits_per_weight"], rel=0, abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["l2qer", "lrc"])
def test_streaming_on_cuda_equals_whole_model_on_cuda(tmp_path, method):
    """device="cuda": layers, activations and statistics on the GPU give what quantize_model gives
    for the same model on the GPU (the same calls on the same device), and the same perplexity."""
    ck = _ckpt(tmp_path)
    cfg = load_config("W4A8", **CONFIGS[method])
    calib, win = _ids(4, 40, 1), _ids(2, 24, 2)
    man = quantize_streaming(ck, cfg, calib, tmp_path / "q", device="cuda", progress=False)
    assert man["complete"]
    ref, _ = quantize_model(_whole(ck, torch.float32).cuda(), cfg, calib, progress=False)
    got = load_streamed(_whole(ck, torch.float32).cuda(), tmp_path / "q")
    sa, sb = ref.state_dict(), got.state_dict()
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k].cpu(), sb[k].cpu())]
    assert not diff, diff[:5]
    assert perplexity_streaming(ck, win, tmp_path / "q", device="cuda", progress=False) == \
        perplexity(ref, win, progress=False)


def test_quantized_prefix_is_sequential_calibration(tmp_path):
    """quantized_prefix = calibrating each input group on the model whose earlier layers and
    earlier groups are already quantized, built here from the whole-model tools group by group."""
    ck = _ckpt(tmp_path)
    cfg = load_config("W4A8", method="l2qer", rank=4)
    calib = _ids(3, 20, 3)
    quantize_streaming(ck, cfg, calib, tmp_path / "q", calibration_input="quantized_prefix", progress=False)
    ref = _whole(ck, torch.float32)
    factory = lambda name, module: get_method("l2qer").observer(name, module, cfg)  # noqa: E731
    for grp in input_groups(list(linear_layers(ref))):
        stats = run_calibration(ref, calib, factory, layers=grp, progress=False)
        quantize_model(ref, cfg, stats=stats, layers=grp, progress=False)
    got = load_streamed(_whole(ck, torch.float32), tmp_path / "q")
    _assert_same_state(ref, got)
    # and it differs from fp_prefix calibration (layer 1 sees quantized activations)
    quantize_streaming(ck, cfg, calib, tmp_path / "fp", progress=False)
    fp = load_streamed(_whole(ck, torch.float32), tmp_path / "fp")
    assert not torch.equal(fp.model.layers[1].mlp.down_proj.A, got.model.layers[1].mlp.down_proj.A)
    assert torch.equal(fp.model.layers[0].self_attn.q_proj.A, got.model.layers[0].self_attn.q_proj.A)


def test_disk_full_mid_write_then_resume(tmp_path, monkeypatch):
    import safetensors.torch as st

    ck = _ckpt(tmp_path, layers=3)
    cfg = load_config("W4A8", method="l2qer", rank=4)
    calib = _ids(2, 16, 4)
    out = tmp_path / "q"
    real = st.save_file
    calls = {"n": 0}

    def full_disk(tensors, filename, metadata=None):
        if "layer-00001" in str(filename):
            calls["n"] += 1
            with open(filename, "wb") as f:
                f.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", full_disk)
    with pytest.raises(OSError, match="layer 1 .*re-run resumes at layer 1"):
        quantize_streaming(ck, cfg, calib, out, progress=False)
    assert calls["n"] == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == ["carry.safetensors", "layer-00000.safetensors", "manifest.json"], names
    first = (out / "layer-00000.safetensors").read_bytes()
    assert [r["index"] for r in json.loads((out / "manifest.json").read_text())["layers"]] == [0]
    monkeypatch.setattr(st, "save_file", real)
    logs = []
    man = quantize_streaming(ck, cfg, calib, out, progress=False, log=logs.append)
    assert man["complete"] and any("resuming at layer 1" in s for s in logs)
    assert (out / "layer-00000.safetensors").read_bytes() == first
    assert not (out / "carry.safetensors").exists()
    quantize_streaming(ck, cfg, calib, tmp_path / "ref", progress=False)
    a = load_streamed(_whole(ck, torch.float32), out)
    b = load_streamed(_whole(ck, torch.float32), tmp_path / "ref")
    _assert_same_state(a, b)
    # other settings in the same directory are refused before any work
    with pytest.raises(ValueError, match="other settings"):
        quantize_streaming(ck, cfg.replace(rank=2), calib, out, progress=False)


def test_bad_checkpoints(tmp_path):
    cfg = load_config("W4A8", method="l2qer", rank=4)
    calib = _ids(1, 8, 5)
    ck = _ckpt(tmp_path)
    shard = ck / "model-00002-of-00004.safetensors"
    data = shard.read_bytes()
    shard.unlink()
    with pytest.raises(ValueError, match="missing shard files.*model-00002-of-00004"):
        quantize_streaming(ck, cfg, calib, tmp_path / "q", progress=False)
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        quantize_streaming(ck, cfg, calib, tmp_path / "q", progress=False)
    shard.write_bytes(data)
    conf = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**conf, "intermediate_size": 64}))
    with pytest.raises(ValueError, match="wrong shape.*mlp"):
        quantize_streaming(ck, cfg, calib, tmp_path / "q", progress=False)
    (ck / "config.json").write_text(json.dumps({**conf, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="does not support model_type 'gpt2'"):
        quantize_streaming(ck, cfg, calib, tmp_path / "q", progress=False)
    (ck / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="calibration_input must be one of fp_prefix, quantized_prefix"):
        quantize_streaming(ck, cfg, calib, tmp_path / "q", calibration_input="gptq", progress=False)
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").glob("layer-*"))


def test_cli_stream_bad_input_is_one_line(tmp_path, capsys):
    from lqer.cli import main

    ck = _ckpt(tmp_path)
    (ck / "model-00003-of-00004.safetensors").unlink()
    assert main(["stream", "--model", str(ck), "--out", str(tmp_path / "q"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lqer stream: error:") and "model-00003-of-00004" in err[0], err
    assert main(["stream", "--model", str(ck), "--out", str(ck / "config.json")]) == 2
    assert "not a directory" in capsys.readouterr().err
