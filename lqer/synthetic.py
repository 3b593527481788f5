"""Synthetic Llama checkpoints with real shapes and random weights (no model hub needed).

``write_synthetic_llama(dir, ...)`` writes ``config.json`` and the weights as sharded
safetensors (one shard for the embedding, one per decoder layer, one for the final norm and
LM head) plus ``model.safetensors.index.json``, as Hugging Face lays out a large model. It
holds one shard in memory at a time, so a 7B-shaped checkpoint is written in bounded memory.
Weights: N(0, std^2) from a seeded generator per tensor (std 0.02, the Llama init), norms 1.
``LLAMA_7B`` holds LLaMA-2-7B's shapes (hidden 4096, MLP 11008, 32 heads, 32 layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
                num_hidden_layers=32, vocab_size=32000)


def _layer_tensors(i, hidden, inter, heads, kv_heads, dtype, gen, std):
    hd = hidden // heads
    shapes = {"self_attn.q_proj.weight": (heads * hd, hidden), "self_attn.k_proj.weight": (kv_heads * hd, hidden),
              "self_attn.v_proj.weight": (kv_heads * hd, hidden), "self_attn.o_proj.weight": (hidden, heads * hd),
              "mlp.gate_proj.weight": (inter, hidden), "mlp.up_proj.weight": (inter, hidden),
              "mlp.down_proj.weight": (hidden, inter)}
    out = {}
    for k, s in shapes.items():
        out[f"model.layers.{i}.{k}"] = (torch.randn(s, generator=gen) * std).to(dtype)
    out[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
    out[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
    return out


def write_synthetic_llama(path, *, hidden_size=64, intermediate_size=172, num_attention_heads=4,
                          num_key_value_heads=None, num_hidden_layers=2, vocab_size=256, dtype=torch.bfloat16,
                          seed=0, std=0.02, tie_word_embeddings=False, max_position_embeddings=2048) -> Path:
    """Write a random Llama checkpoint to ``path`` (created); returns the path."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
    kv = num_key_value_heads or num_attention_heads
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = LlamaConfig(hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_attention_heads=num_attention_heads, num_key_value_heads=kv,
                      num_hidden_layers=num_hidden_layers, vocab_size=vocab_size,
                      tie_word_embeddings=tie_word_embeddings, max_position_embeddings=max_position_embeddings,
                      dtype=str(dtype).replace("torch.", ""))
    cfg.save_pretrained(str(path))
    n_shards = num_hidden_layers + 2
    shard = lambda k: f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"  # noqa: E731
    weight_map, total = {}, 0

    def write(k, tensors):
        nonlocal total
        save_file(tensors, str(path / shard(k)), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = shard(k)
            total += t.numel() * t.element_size()

    gen = torch.Generator().manual_seed(seed)
    write(0, {"model.embed_tokens.weight": (torch.randn(vocab_size, hidden_size, generator=gen) * std).to(dtype)})
    for i in range(num_hidden_layers):
        write(i + 1, _layer_tensors(i, hidden_size, intermediate_size, num_attention_heads, kv, dtype, gen, std))
    head = {"model.norm.weight": torch.ones(hidden_size, dtype=dtype)}
    if not tie_word_embeddings:
        head["lm_head.weight"] = (torch.randn(vocab_size, hidden_size, generator=gen) * std).to(dtype)
    write(n_shards - 1, head)
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return path
