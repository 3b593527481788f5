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


# Hugging Face model_type -> the family whose linear layout it has (q/k/v/o + gate/up/down, or OPT's fc1/fc2)
HF_FAMILIES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "opt": "opt"}


def from_hf_config(config, name: str | None = None) -> ModelShape:
    """The shape of a Hugging Face model from its config (a transformers config or its dict):
    the layers the model really has, for pricing the model being quantized. ValueError naming
    the model_type when hwmodel has no layout for it (e.g. GPT-2's fused q/k/v)."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    mt = get("model_type")
    if mt not in HF_FAMILIES:
        raise ValueError(f"model_type must be one of {', '.join(HF_FAMILIES)} for hwmodel's layer layout, got {mt!r}")
    family = HF_FAMILIES[mt]
    inter = get("ffn_dim") if family == "opt" else get("intermediate_size")
    heads = get("num_attention_heads")
    return ModelShape(name or get("_name_or_path") or mt, family, int(get("hidden_size")), int(inter),
                      int(get("num_hidden_layers")), int(heads), int(get("num_key_value_heads") or heads))


def get_model(name) -> ModelShape:
    """A named shape (MODELS), or a ModelShape as given."""
    if isinstance(name, ModelShape):
        return name
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[key]
