"""Qwen2-style decoder LLM (``llm``): RMSNorm, RoPE, grouped-query attention with q/k/v bias,
SwiGLU, untied ``lm_head``. Parameter names follow the exercise checkpoint (``llm.model.layers.{i}…``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .attention import attend, causal_additive_mask
from .config import MLLMConfig
from .pretrained import MLLMPreTrainedModel
from .rotary import RotaryEmbedding, apply_rotary

IGNORE_INDEX = -100


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden.dtype
        hidden = hidden.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden.to(input_dtype)


class LLMAttention(nn.Module):
    """Grouped-query self-attention; KV heads are shared *after* RoPE, as in Qwen2, and the cache
    keeps the Hkv heads (``attend`` maps each query head to its KV head)."""

    def __init__(self, config: MLLMConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        additive_mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        batch, length, _ = hidden.shape
        query = (
            self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        )
        key = (
            self.k_proj(hidden)
            .view(batch, length, self.num_kv_heads, self.head_dim)
            .transpose(1, 2)
        )
        value = (
            self.v_proj(hidden)
            .view(batch, length, self.num_kv_heads, self.head_dim)
            .transpose(1, 2)
        )
        cos, sin = rotary
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)  # [B, H(kv), L, D]
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # [B, Hkv, past+L, D]
        output = attend(
            self.config._attn_implementation,
            query,
            key,
            value,
            additive_mask,
            dropout=self.config.attention_dropout,
            training=self.training,
            is_causal=additive_mask is None,
        )  # [B, H, L, D]
        output = output.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(output)


class LLMMLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, config: MLLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(hidden)) * self.up_proj(hidden))


class LLMDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: MLLMConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LLMAttention(config, layer_idx)
        self.mlp = LLMMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden, rotary, additive_mask=None, cache=None):
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), rotary, additive_mask, cache)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class LLMModel(MLLMPreTrainedModel):
    """The decoder stack without the LM head."""

    def __init__(self, config: MLLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            LLMDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, length, _ = inputs_embeds.shape  # [B, L, D]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache()
        past_length = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(
                past_length, past_length + length, device=inputs_embeds.device
            )
            position_ids = position_ids[None, :].expand(batch, length)

        # Pure causal attention needs no explicit mask (SDPA's is_causal path); padding or a cache does.
        needs_mask = past_length > 0 or (
            attention_mask is not None and not bool(attention_mask.all())
        )
        additive_mask = (
            causal_additive_mask(
                attention_mask,
                length,
                past_length,
                inputs_embeds.dtype,
                inputs_embeds.device,
                batch,
            )
            if needs_mask
            else None
        )
        rotary = self.rotary_emb(position_ids, inputs_embeds.dtype)
        hidden = inputs_embeds
        for layer in self.layers:
            hidden = layer(hidden, rotary, additive_mask, cache if use_cache else None)
        hidden = self.norm(hidden)
        return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache if use_cache else None)


def supervised_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy on **pre-shifted** labels: ``logits[:, t]`` already pairs with ``labels[:, t]``.

    Shifting again here is the exercise's classic bug (the model learns to end every answer at once).
    The mean is over supervised tokens; under gradient accumulation the Trainer passes the token count
    of the whole accumulated batch so every token weighs the same.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # [B*L, V]
    flat_labels = labels.reshape(-1).to(flat_logits.device)  # [B*L]
    if num_items_in_batch is None:
        return nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)
    total = nn.functional.cross_entropy(
        flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class LLMForCausalLM(MLLMPreTrainedModel, GenerationMixin):
    """Decoder + untied LM head; drives HF ``generate`` (sampling, greedy, beam) with a KV cache."""

    def __init__(self, config: MLLMConfig):
        super().__init__(config)
        self.model = LLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)  # [B, L, V]
        loss = None if labels is None else supervised_token_loss(logits, labels, num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)
