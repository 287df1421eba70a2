"""Provides the GQA-aware decode attention registered with transformers (``attn_implementation=
"dialsum_gqa"``) and the switch the ``infer`` command uses to put a causal model on it.

Why it exists (docs/benchmarks.md, "Speed (issue 16)"): a 3B Llama has 24 query heads over 8 KV
heads. With a padding mask and under ``torch.compile`` (the static-cache path), transformers' SDPA
path repeats every KV head to its 3 query heads (``repeat_kv``) before calling the kernel, copying
the whole KV cache three times per layer per generated token; decode time then scales with batch ×
cache length × 3. Here, for one query token, the query heads of each KV group are folded into the
query-length axis (``[B, Hkv*G, 1, D] → [B, Hkv, G, D]``) and SDPA runs once on the KV heads as they
are: each KV head is read once, nothing is copied. Prompts (``q_len > 1``) keep the stock SDPA path:
SDPA's own ``enable_gqa`` with a mask falls back to the slow math kernel on CUDA, and the prefill
runs once per batch.

This module imports torch at the top: only inference code imports it, inside its functions.
"""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

GQA_ATTENTION = "dialsum_gqa"
# The config's names (generation.attention) for the two implementations.
ATTENTION_IMPLEMENTATIONS = {"gqa": GQA_ATTENTION, "sdpa": "sdpa"}


def gqa_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention with transformers' ``AttentionInterface`` signature; one SDPA call over the unrepeated
    KV heads when decoding one token, transformers' own SDPA path otherwise.

    Args:
        module: the attention layer (``num_key_value_groups`` = query heads per KV head).
        query: ``[B, H, q_len, D]``.
        key, value: ``[B, Hkv, kv_len, D]`` (the whole cache, static or dynamic; beams are rows of B).
        attention_mask: boolean or additive, ``[B, 1 or H, q_len, kv_len]``, or None.
        dropout, scaling, is_causal: as for SDPA (a single query token attends to the whole cache,
            so ``is_causal`` does not apply to it).

    Returns:
        (``[B, q_len, H, D]``, None), like ``sdpa_attention_forward``.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    # Anything this fold does not cover goes to the stock path unchanged: prompts, models without
    # grouped heads, position biases (T5-style), and the options the stock path refuses itself.
    if q_len != 1 or groups == 1 or kwargs.get("position_bias") is not None or kwargs.get("cache") is not None \
            or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    kv_heads = key.shape[1]
    folded = query.reshape(batch, kv_heads, groups, dim)
    mask = attention_mask
    # A mask shared by the heads ([B, 1, 1, L]) broadcasts over the folded axis as it is; a per-head
    # one ([B, H, 1, L]) folds the same way as the query.
    if mask is not None and mask.shape[1] != 1:
        mask = mask.reshape(mask.shape[0], kv_heads, groups, mask.shape[-1])
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, dropout_p=dropout,
                                                           scale=scaling)
    # [B, Hkv, G, D] holds the heads in the query's order (head = kv_head * G + g), so this is a view.
    return out.reshape(batch, 1, heads, value.shape[-1]), None


def register_gqa_attention() -> str:
    """Register :func:`gqa_decode_attention` (and SDPA's mask builder, which it shares) under
    :data:`GQA_ATTENTION`; idempotent. Returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, gqa_decode_attention)
    AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)
    return GQA_ATTENTION


def use_attention(model, choice: str) -> str:
    """Put a loaded model on the attention named by ``generation.attention`` (``gqa`` or ``sdpa``).

    Only a model on transformers' SDPA (the default) or on :data:`GQA_ATTENTION` is switched: eager
    or FlashAttention was chosen on purpose, and FlashAttention already reads each KV head once.

    Returns:
        The attention implementation the model uses afterwards.
    """
    current = model.config._attn_implementation
    wanted = ATTENTION_IMPLEMENTATIONS[choice]
    if current not in ATTENTION_IMPLEMENTATIONS.values() or current == wanted:
        return current
    if wanted == GQA_ATTENTION:
        register_gqa_attention()
    model.set_attn_implementation(wanted)
    return model.config._attn_implementation
