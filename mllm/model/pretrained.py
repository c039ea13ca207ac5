"""Shared ``PreTrainedModel`` base: config class, capabilities and weight initialisation."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .config import MLLMConfig
from .resampler import Resampler, sincos_2d
from .rotary import RotaryEmbedding
from .vision import VisionAttention, VisionEmbeddings, VisionMLP


class MLLMPreTrainedModel(PreTrainedModel):
    config_class = MLLMConfig
    config: MLLMConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LLMDecoderLayer", "VisionEncoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # Non-persistent buffers are not in the checkpoint: rebuild them after a meta-device load.
        if isinstance(module, RotaryEmbedding):
            init.copy_(module.inv_freq, module.compute_inv_freq())
        elif isinstance(module, Resampler):
            init.trunc_normal_(module.query, std=0.02)
            init.normal_(module.proj, std=module.embed_dim**-0.5)
            init.copy_(module.pos_embed, sincos_2d(module.embed_dim, *module.max_size))
        elif isinstance(module, VisionEmbeddings):
            init.normal_(
                module.position_embedding.weight, std=module.position_embedding.embedding_dim**-0.5
            )
        elif isinstance(module, VisionAttention):
            for projection in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
                init.xavier_uniform_(projection.weight)
                init.zeros_(projection.bias)
        elif isinstance(module, VisionMLP):
            init.xavier_uniform_(module.fc1.weight)
            init.xavier_uniform_(module.fc2.weight)
            init.normal_(module.fc1.bias, std=1e-6)
            init.normal_(module.fc2.bias, std=1e-6)
