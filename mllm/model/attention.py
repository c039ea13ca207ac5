"""Attention core shared by the decoder, the vision tower and tests.

Two interchangeable paths selected by ``attn_implementation``:

* ``eager`` writes the formula out, softmax(QKᵀ/√d + M)·V with M an *additive* mask
  (0 where allowed, dtype-min where not) — the path the exercise asks students to write and whose
  forks got wrong (they ``masked_fill`` an additive mask, inverting it);
* ``sdpa`` calls ``torch.nn.functional.scaled_dot_product_attention`` with the same additive mask.

Both take grouped-query keys and values ([B, Hkv, kv, d] with Hkv dividing the query heads H):
eager repeats them, sdpa reads each KV head for its H/Hkv query heads in place (``enable_gqa``),
which gives the same bits without copying the whole KV cache at every decoding step.

Tests hold the two equal (and equal to a float64 reference) so the fast path can be trusted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED_IMPLEMENTATIONS = ("eager", "sdpa")


def repeat_kv(hidden: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat grouped KV heads so each query head has its own: [B, Hkv, L, D] -> [B, Hkv*n_rep, L, D]."""
    if n_rep == 1:
        return hidden
    batch, kv_heads, length, head_dim = hidden.shape
    hidden = hidden[:, :, None, :, :].expand(batch, kv_heads, n_rep, length, head_dim)
    return hidden.reshape(batch, kv_heads * n_rep, length, head_dim)


def causal_additive_mask(
    attention_mask: torch.Tensor | None,
    query_length: int,
    past_length: int,
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int,
) -> torch.Tensor:
    """Build the additive 4-D mask [B, 1, q, kv] for causal self-attention over a KV cache.

    ``attention_mask`` is the 2-D padding mask [B, kv] (1 = real token) covering past + current
    tokens, or None (no padding). Query i sits at absolute position ``past_length + i`` and may see
    every real key at a position <= its own.
    """
    key_length = past_length + query_length
    query_positions = torch.arange(query_length, device=device) + past_length  # [q]
    key_positions = torch.arange(key_length, device=device)  # [kv]
    allowed = key_positions[None, :] <= query_positions[:, None]  # [q, kv]
    allowed = allowed[None, None, :, :].expand(batch_size, 1, query_length, key_length)
    if attention_mask is not None:
        key_is_real = attention_mask[:, None, None, :key_length].bool()  # [B, 1, 1, kv]
        allowed = allowed & key_is_real
    return additive_from_boolean(allowed, dtype)


def padding_additive_mask(key_is_real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bidirectional mask [B, 1, 1, kv] from a boolean key mask [B, kv] (True = attend)."""
    return additive_from_boolean(key_is_real[:, None, None, :], dtype)


def additive_from_boolean(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """True -> 0, False -> the most negative finite value (finite, so fully masked rows stay NaN-free)."""
    zeros = torch.zeros((), dtype=dtype, device=allowed.device)
    blocked = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zeros, blocked)


def eager_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    additive_mask: torch.Tensor | None,
    *,
    dropout: float = 0.0,
    training: bool = False,
    is_causal: bool = False,
) -> torch.Tensor:
    """softmax(QKᵀ/√d + M)·V for query [B, H, q, d], key/value [B, Hkv, kv, d]; returns [B, H, q, d].

    The softmax runs in float32, or in float64 for float64 inputs: cast to float32, float64's
    dtype-min mask turns to −inf and a fully masked row (a left pad's query) to NaN.
    """
    n_rep = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    scale = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale  # [B, H, q, kv]
    if is_causal:
        query_length, key_length = scores.shape[-2:]
        causal = torch.ones(query_length, key_length, dtype=torch.bool, device=query.device).tril(
            key_length - query_length
        )
        scores = scores + additive_from_boolean(causal, scores.dtype)
    if additive_mask is not None:
        scores = scores + additive_mask
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)
    probs = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=training)
    return torch.matmul(probs, value)


def sdpa_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    additive_mask: torch.Tensor | None,
    *,
    dropout: float = 0.0,
    training: bool = False,
    is_causal: bool = False,
) -> torch.Tensor:
    """The same computation through PyTorch's fused kernel (flash / memory-efficient where possible)."""
    return F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=additive_mask,
        dropout_p=dropout if training else 0.0,
        is_causal=is_causal and additive_mask is None,
        enable_gqa=key.shape[1] != query.shape[1],
    )


def attend(
    implementation: str | None,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    additive_mask: torch.Tensor | None,
    **kwargs,
) -> torch.Tensor:
    """Dispatch to the configured attention path; unknown names fail loudly instead of falling back."""
    if implementation in (None, "sdpa"):
        return sdpa_attention(query, key, value, additive_mask, **kwargs)
    if implementation == "eager":
        return eager_attention(query, key, value, additive_mask, **kwargs)
    raise ValueError(
        f"attn_implementation {implementation!r} is not supported; choose one of {SUPPORTED_IMPLEMENTATIONS}"
    )
