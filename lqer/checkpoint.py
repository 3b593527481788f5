"""A model checkpoint on disk, read one tensor at a time (for lqer.streaming).

``open_checkpoint(model)`` takes what ``lqer.model.load_model`` takes (the default SmolLM2
name, a .gguf file, or a Hugging Face model directory) and returns a ``Checkpoint``:
``.config`` (the transformers config), ``.tokenizer()``, ``.has(name)``, ``.shape(name)``
and ``.read(name, dtype)``, which reads only that tensor.

* HF directory: ``model.safetensors`` or sharded ``model-0000i-of-0000n.safetensors`` listed
  by ``model.safetensors.index.json``. Every shard header is parsed and checked up front
  (missing shard files, tensors the index names but the shard lacks, tensors whose data runs
  past the end of a truncated file): a ``ValueError`` names the file before any work starts.
  Tensors are read with plain ``readinto`` into their own memory, never memory-mapped, so
  what is freed is freed (see lqer.model._read_safetensors_into). Stored dtypes F32, F16,
  BF16 (F64 too); ``read(name, dtype)`` casts after reading.
* GGUF: ``gguf.GGUFReader`` maps the file; ``read`` dequantizes one tensor with the same
  functions transformers' GGUF loader uses (``gguf.dequantize`` + the architecture's tensor
  processor, e.g. the reverse q/k permutation of Llama) and the same name map, so the values
  equal those of the whole-model load. The mapped pages a read touched count in the RSS until
  the kernel evicts them (file-backed, reclaimable).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from mxsim.errors import UserError

from .model import _ST_DTYPES, resolve_model_path

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def _parse_header(file: Path) -> tuple[dict, int]:
    """(tensor name -> {dtype, shape, data_offsets}, byte offset of the data) of one safetensors file."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise UserError(f"safetensors file {str(file)!r} is truncated (no header)")
        (hlen,) = struct.unpack("<Q", raw)
        if hlen > size - 8 or hlen > 100_000_000:
            raise UserError(f"safetensors file {str(file)!r} is truncated or not a safetensors file "
                             f"(header length {hlen}, file size {size})")
        try:
            header = json.loads(f.read(hlen))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"safetensors file {str(file)!r} has a corrupt header: {e}") from None
    header.pop("__metadata__", None)
    base = 8 + hlen
    for key, meta in header.items():
        if meta.get("dtype") not in _ST_DTYPES:
            raise UserError(f"{str(file)!r}: tensor {key!r} has unsupported dtype {meta.get('dtype')!r} "
                             f"(supported: {', '.join(_ST_DTYPES)})")
        if base + meta["data_offsets"][1] > size:
            raise UserError(f"safetensors file {str(file)!r} is truncated: tensor {key!r} runs past the end "
                             f"({base + meta['data_offsets'][1]} > {size} bytes)")
    return header, base


class Checkpoint:
    """Base: subclasses fill ``self.config`` and implement ``_names``, ``_shape``, ``_read``."""

    path: Path

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)

    def has(self, name: str) -> bool:
        return name in self.names()

    def shape(self, name: str) -> tuple:
        if not self.has(name):
            raise UserError(f"checkpoint {str(self.path)!r} has no tensor {name!r}")
        return self._shape(name)

    def read(self, name: str, dtype=None) -> torch.Tensor:
        """The tensor ``name`` (CPU), cast to ``dtype`` if given."""
        if not self.has(name):
            raise UserError(f"checkpoint {str(self.path)!r} has no tensor {name!r}")
        t = self._read(name)
        return t if dtype is None or t.dtype == dtype else t.to(dtype)

    def stored_dtype(self):
        """The dtype most weights are stored in (the model's dtype)."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What identifies this checkpoint for a resumable run (files, sizes, mtimes)."""
        raise NotImplementedError


class SafetensorsCheckpoint(Checkpoint):
    def __init__(self, path: Path):
        from transformers import AutoConfig

        self.path = Path(path)
        index = self.path / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"{str(index)!r} is not a valid safetensors index ({e})") from None
            files = sorted(set(weight_map.values()))
        elif (self.path / SINGLE_FILE).is_file():
            weight_map, files = None, [SINGLE_FILE]
        else:
            bins = sorted(p.name for p in self.path.glob("*.bin"))
            hint = f" (found {bins[:3]}: convert PyTorch .bin weights to safetensors first)" if bins else ""
            raise UserError(f"model directory {str(self.path)!r} has neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")
        missing = [f for f in files if not (self.path / f).is_file()]
        if missing:
            raise UserError(f"model directory {str(self.path)!r} is missing shard files {missing} "
                             f"(listed in {INDEX_FILE}); copy them or re-download the model")
        self._where: dict[str, tuple[Path, dict, int]] = {}
        for f in files:
            header, base = _parse_header(self.path / f)
            for k, meta in header.items():
                self._where[k] = (self.path / f, meta, base)
        if weight_map is not None:
            lost = [k for k, f in weight_map.items() if k not in self._where or self._where[k][0].name != f]
            if lost:
                raise UserError(f"{str(index)!r} lists tensors their shard files lack: {lost[:5]}"
                                 f"{' ...' if len(lost) > 5 else ''} (a shard is incomplete or from another model)")
        try:
            self.config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot read the model config in {str(self.path)!r}: {e}") from None
        self.files = [self.path / f for f in files]

    def names(self):
        return self._where.keys()

    def _shape(self, name):
        return tuple(self._where[name][1]["shape"])

    def _read(self, name):
        file, meta, base = self._where[name]
        start, end = meta["data_offsets"]
        t = torch.empty(tuple(meta["shape"]), dtype=_ST_DTYPES[meta["dtype"]])
        with open(file, "rb") as f:
            f.seek(base + start)
            n = f.readinto(memoryview(t.view(-1).view(torch.uint8).numpy())) if t.numel() else 0
        if n != end - start:
            raise UserError(f"{str(file)!r} is truncated (tensor {name!r})")
        return t

    def stored_dtype(self):
        counts: dict = {}
        for _, meta, _ in self._where.values():
            n = 1
            for s in meta["shape"]:
                n *= s
            counts[meta["dtype"]] = counts.get(meta["dtype"], 0) + n
        return _ST_DTYPES[max(counts, key=counts.get)]

    def fingerprint(self):
        out = {"path": str(self.path.resolve()), "files": {}}
        for f in self.files:
            st = f.stat()
            out["files"][f.name] = [st.st_size, st.st_mtime_ns]
        return out


class GGUFCheckpoint(Checkpoint):
    def __init__(self, path: Path):
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.modeling_gguf_pytorch_utils import (TENSOR_PROCESSORS, TensorProcessor,
                                                             get_gguf_hf_weights_map)
        import gguf

        self.path = Path(path)
        try:  # parsing the metadata (the tokenizer's vocabulary) is most of the time here
            self.config = AutoConfig.from_pretrained(str(self.path.parent), gguf_file=self.path.name,
                                                     local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot read the GGUF metadata of {str(self.path)!r}: {e}") from None
        # the processor reads head counts from the config (Llama's reverse q/k permutation)
        self._processor = TENSOR_PROCESSORS.get(self.config.model_type, TensorProcessor)(config=self.config.to_dict())
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(self.config)
        gguf_to_hf = get_gguf_hf_weights_map(skeleton, self._processor)
        self._reader = gguf.GGUFReader(str(self.path))
        self._tensors = {}
        for t in self._reader.tensors:
            # the processor may rename (some MoE models); Llama's keeps the name
            hf = gguf_to_hf.get(t.name)
            if hf is not None:
                self._tensors[hf] = t

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.path.parent), gguf_file=self.path.name, local_files_only=True)

    def names(self):
        return self._tensors.keys()

    def _shape(self, name):
        return tuple(int(s) for s in reversed(self._tensors[name].shape.tolist()))

    def _read(self, name):
        import gguf
        import numpy as np

        t = self._tensors[name]
        w = gguf.dequantize(t.data, t.tensor_type)
        w = self._processor.process(weights=w, name=t.name).weights
        return torch.from_numpy(np.array(w, dtype=np.float32, copy=True)).reshape(self._shape(name))

    def stored_dtype(self):
        return torch.float32  # dequantized GGUF blocks, as the whole-model load gives

    def fingerprint(self):
        st = self.path.stat()
        return {"path": str(self.path.resolve()), "files": {self.path.name: [st.st_size, st.st_mtime_ns]}}


def open_checkpoint(model) -> Checkpoint:
    """A lazily read checkpoint for ``model`` (default name, .gguf file or HF directory)."""
    path = resolve_model_path(model)
    return GGUFCheckpoint(path) if path.is_file() else SafetensorsCheckpoint(path)

