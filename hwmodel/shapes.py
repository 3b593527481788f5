"""Model shapes (from the models' published configs) and their linear layers."""

from __future__ import annotations

from dataclasses import dataclass

from .designs.base import Layer


@dataclass(frozen=True)
class ModelShape:
    name: str
    family: str  # "opt" (fc1/fc2 MLP) or "llama" (gate/up/down MLP)
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.kv_heads

    def linears(self) -> list[tuple[str, str, int, int]]:
        """(kind, projection, in, out) of ONE decoder block; kind is 'attn' or 'mlp'."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        if self.family == "opt":
            return [("attn", "q_proj", h, h), ("attn", "k_proj", h, kv), ("attn", "v_proj", h, kv),
                    ("attn", "out_proj", h, h), ("mlp", "fc1", h, i), ("mlp", "fc2", i, h)]
        return [("attn", "q_proj", h, h), ("attn", "k_proj", h, kv), ("attn", "v_proj", h, kv),
                ("attn", "o_proj", h, h), ("mlp", "gate_proj", h, i), ("mlp", "up_proj", h, i),
                ("mlp", "down_proj", i, h)]

    def module_name(self, layer: int, kind: str, proj: str) -> str:
        """Hugging Face module name, the key an outlier-count file uses."""
        if self.family == "opt":
            return f"model.decoder.layers.{layer}." + (f"self_attn.{proj}" if kind == "attn" else proj)
        return f"model.layers.{layer}." + ("self_attn." if kind == "attn" else "mlp.") + proj

    def layer_shapes(self, which: str = "all", tokens: int = 1) -> list[tuple[str, str, Layer]]:
        """(module name, projection, Layer) for every linear of every block; which = 'all' | 'mlp' | 'attn'."""
        if which not in ("all", "mlp", "attn"):
            raise ValueError(f"layer must be 'all', 'mlp' or 'attn', got {which!r}")
        out = []
        for li in range(self.layers):
            for kind, proj, k, n in self.linears():
                if which != "all" and kind != which:
                    continue
                name = self.module_name(li, kind, proj)
                out.append((name, proj, Layer(tokens, k, n, name)))
        return out


def _m(name, family, hidden, inter, layers, heads, kv=None):
    return ModelShape(name, family, hidden, inter, layers, heads, kv or heads)


MODELS: dict[str, ModelShape] = {
    m.name: m
    for m in [
        _m("opt-125m", "opt", 768, 3072, 12, 12),
        _m("opt-350m", "opt", 1024, 4096, 24, 16),
        _m("opt-1.3b", "opt", 2048, 8192, 24, 32),
        _m("opt-2.7b", "opt", 2560, 10240, 32, 32),
        _m("opt-6.7b", "opt", 4096, 16384, 32, 32),
        _m("opt-13b", "opt", 5120, 20480, 40, 40),
        _m("llama-7b", "llama", 4096, 11008, 32, 32),
        _m("llama-13b", "llama", 5120, 13824, 40, 40),
        _m("llama-2-7b", "llama", 4096, 11008, 32, 32),
        _m("llama-2-13b", "llama", 5120, 13824, 40, 40),
        _m("mistral-7b", "llama", 4096, 14336, 32, 32, 8),
        _m("smollm2-135m", "llama", 576, 1536, 30, 9, 3),
    ]
}


def get_model(name: str) -> ModelShape:
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[key]
