"""Eager attention (the written-out formula) == SDPA == a float64 reference, with causal, padding and GQA."""

from __future__ import annotations

import pytest
import torch

from mllm.model.attention import (
    attend,
    causal_additive_mask,
    eager_attention,
    padding_additive_mask,
    repeat_kv,
    sdpa_attention,
)
from tests.conftest import tiny_model


def reference_attention(query, key, value, allowed):
    """float64 softmax(QKᵀ/√d) with disallowed scores removed (boolean mask, not additive)."""
    query, key, value = query.double(), key.double(), value.double()
    scores = query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ value


def random_qkv(batch=2, heads=4, kv_heads=2, length=7, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, heads, length, dim, generator=generator)
    key = torch.randn(batch, kv_heads, length, dim, generator=generator)
    value = torch.randn(batch, kv_heads, length, dim, generator=generator)
    n_rep = heads // kv_heads
    return query, repeat_kv(key, n_rep), repeat_kv(value, n_rep)


def test_repeat_kv_matches_repeat_interleave():
    key = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(key, 4), key.repeat_interleave(4, dim=1))


@pytest.mark.parametrize("padding", [False, True])
def test_causal_eager_equals_sdpa_equals_float64(padding):
    query, key, value = random_qkv()
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    if padding:
        attention_mask[0, :3] = 0  # left padding
        attention_mask[1, 5:] = 0  # right padding
    additive = causal_additive_mask(attention_mask, 7, 0, torch.float32, query.device, 2)
    eager = eager_attention(query, key, value, additive)
    sdpa = sdpa_attention(query, key, value, additive)
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-5)

    allowed = (
        torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
        & attention_mask[:, None, None, :].bool()
    )
    reference = reference_attention(query, key, value, allowed)
    rows_with_keys = (
        allowed.any(-1, keepdim=True).expand_as(eager[..., :1]).squeeze(-1)
    )  # [B, H, q]
    torch.testing.assert_close(
        eager[rows_with_keys].double(), reference[rows_with_keys], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_left_padding_stays_finite_and_eager_equals_sdpa_in(dtype):
    """Pad queries of a left-padded row see no key at all; their rows must stay finite."""
    query, key, value = (tensor.to(dtype) for tensor in random_qkv())
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[0, :3] = 0
    additive = causal_additive_mask(attention_mask, 7, 0, dtype, query.device, 2)
    eager = eager_attention(query, key, value, additive)
    sdpa = sdpa_attention(query, key, value, additive)
    assert eager.dtype == dtype and torch.isfinite(eager).all() and torch.isfinite(sdpa).all()
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-5)


def test_float32_eager_softmax_is_unchanged():
    query, key, value = random_qkv(seed=3)
    additive = causal_additive_mask(None, 7, 0, torch.float32, query.device, 2)
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5 + additive
    expected = torch.softmax(scores, dim=-1, dtype=torch.float32) @ value
    assert torch.equal(eager_attention(query, key, value, additive), expected)


def test_additive_mask_values_are_zero_or_dtype_min():
    mask = causal_additive_mask(
        torch.tensor([[0, 1, 1]]), 3, 0, torch.float32, torch.device("cpu"), 1
    )
    minimum = torch.finfo(torch.float32).min
    expected = torch.tensor([[minimum, minimum, minimum], [minimum, 0, minimum], [minimum, 0, 0]])
    assert torch.equal(mask[0, 0], expected)


def test_is_causal_path_equals_explicit_mask():
    query, key, value = random_qkv(seed=1)
    explicit = causal_additive_mask(None, 7, 0, torch.float32, query.device, 2)
    for implementation in ("eager", "sdpa"):
        implicit = attend(implementation, query, key, value, None, is_causal=True)
        torch.testing.assert_close(
            implicit, attend(implementation, query, key, value, explicit), atol=1e-6, rtol=1e-5
        )


def test_mask_over_kv_cache_lets_new_query_see_all_real_past_keys():
    mask = causal_additive_mask(
        torch.tensor([[0, 1, 1, 1]]), 1, 3, torch.float32, torch.device("cpu"), 1
    )
    assert mask.shape == (1, 1, 1, 4)
    assert mask[0, 0, 0, 0] < 0 and torch.all(mask[0, 0, 0, 1:] == 0)


def test_bidirectional_padding_mask_eager_equals_sdpa():
    query, key, value = random_qkv(kv_heads=4, seed=2)
    key_is_real = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    additive = padding_additive_mask(key_is_real, torch.float32)
    torch.testing.assert_close(
        eager_attention(query, key, value, additive),
        sdpa_attention(query, key, value, additive),
        atol=1e-5,
        rtol=1e-5,
    )
    reference = reference_attention(query, key, value, key_is_real[:, None, None, :])
    torch.testing.assert_close(
        eager_attention(query, key, value, additive).double(), reference, atol=1e-5, rtol=1e-5
    )


def test_unknown_implementation_is_rejected():
    query, key, value = random_qkv()
    with pytest.raises(ValueError, match="flash_attention_9"):
        attend("flash_attention_9", query, key, value, None)


def test_whole_model_in_float64_with_left_padding_is_finite_and_eager_equals_sdpa(batch):
    models = {}
    for implementation in ("eager", "sdpa"):
        models[implementation] = tiny_model().double()
        models[implementation].config._attn_implementation = implementation
    attention_mask = torch.ones_like(batch["input_ids"])
    attention_mask[1, :4] = 0
    with torch.no_grad():
        eager, sdpa = (
            models[name](**batch, attention_mask=attention_mask).logits for name in models
        )
    assert eager.dtype == torch.float64 and torch.isfinite(eager).all()
    torch.testing.assert_close(eager, sdpa, atol=1e-10, rtol=1e-10)


def test_whole_model_eager_equals_sdpa(batch):
    eager_model = tiny_model()
    eager_model.config._attn_implementation = "eager"
    sdpa_model = tiny_model()
    sdpa_model.config._attn_implementation = "sdpa"
    attention_mask = torch.ones_like(batch["input_ids"])
    attention_mask[1, -4:] = 0
    with torch.no_grad():
        eager = eager_model(**batch, attention_mask=attention_mask).logits
        sdpa = sdpa_model(**batch, attention_mask=attention_mask).logits
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "query_length, past_length", [(7, 0), (1, 9)], ids=["prefill", "decode-step"]
)
def test_grouped_kv_heads_give_the_bits_of_repeated_ones(implementation, query_length, past_length):
    """The decoder hands ``attend`` its Hkv cached heads; reading them in place must change no bit
    of the output (else batched decoding would drift from what it decoded before)."""
    generator = torch.Generator().manual_seed(4)
    key_length = past_length + query_length
    query = torch.randn(3, 4, query_length, 16, generator=generator)
    key, value = (torch.randn(3, 2, key_length, 16, generator=generator) for _ in range(2))
    attention_mask = torch.ones(3, key_length, dtype=torch.long)
    attention_mask[1, :3] = 0  # a left-padded row
    additive = causal_additive_mask(
        attention_mask, query_length, past_length, torch.float32, "cpu", 3
    )
    grouped = attend(implementation, query, key, value, additive)
    repeated = attend(implementation, query, repeat_kv(key, 2), repeat_kv(value, 2), additive)
    assert torch.equal(grouped, repeated)
    if past_length == 0:
        causal = attend(implementation, query, key, value, None, is_causal=True)
        assert torch.equal(
            causal,
            attend(
                implementation,
                query,
                *(repeat_kv(t, 2) for t in (key, value)),
                None,
                is_causal=True,
            ),
        )
