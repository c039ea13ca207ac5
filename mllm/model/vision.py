"""SigLIP-style NaViT vision tower (``vpm``).

Images of any aspect ratio arrive as *patch strips*: a piece of ``h×w`` patches is reshaped to
``[3, patch, h*w*patch]`` with patch k (row-major over the ``h×w`` grid) in columns
``[k*patch, (k+1)*patch)``. Strips of different lengths are right-padded into one batch and a patch
mask hides the padding. Each patch's 2-D position is bucketed onto the fixed
``(image_size/patch)²`` position grid, so a 10×7-patch piece and a 32×32-patch piece share one
learned table (NaViT "fractional" positions, as in MiniCPM-V).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import attend, padding_additive_mask
from .config import MLLMVisionConfig


def fractional_buckets(side: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Position-grid row (or column) of each of ``side`` patches [side], as MiniCPM-V computes it.

    Its NaViT steps through [0, 1) by ``1 / side`` with ``side`` a tensor, i.e. by a float32 step;
    the rounding lands a few patches one bucket below floor(i·grid/side) for some sides (25, 49,
    50, 55, 58 … of the 70-patch grid). The exercise checkpoint was trained with these buckets.
    """
    return torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / side), boundaries, right=True)


def bucketed_position_ids(
    tgt_sizes: torch.Tensor, num_patches_per_side: int, max_patches: int
) -> torch.Tensor:
    """Position-table index of every patch: tgt_sizes [N, 2] (h, w in patches) -> ids [N, max_patches].

    Padding slots get 0; they are masked out of attention and never read.
    """
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    position_ids = torch.zeros(len(tgt_sizes), max_patches, dtype=torch.long)
    for index, (height, width) in enumerate(tgt_sizes):
        rows = fractional_buckets(height, boundaries)  # [h]
        cols = fractional_buckets(width, boundaries)  # [w]
        position_ids[index, : height * width] = (
            rows[:, None] * num_patches_per_side + cols[None, :]
        ).flatten()
    return position_ids


class VisionEmbeddings(nn.Module):
    def __init__(self, config: MLLMVisionConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.num_patches_per_side = config.image_size // config.patch_size
        self.patch_embedding = nn.Conv2d(
            config.num_channels,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=config.patch_size,
        )
        self.position_embedding = nn.Embedding(self.num_patches_per_side**2, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, tgt_sizes: torch.Tensor) -> torch.Tensor:
        # pixel_values [N, 3, p, Lmax*p] -> patches [N, Lmax, D]
        patches = self.patch_embedding(
            pixel_values.to(self.patch_embedding.weight.dtype)
        )  # [N, D, 1, Lmax]
        patches = patches.flatten(2).transpose(1, 2)
        position_ids = bucketed_position_ids(
            tgt_sizes.cpu(), self.num_patches_per_side, patches.shape[1]
        )
        return patches + self.position_embedding(position_ids.to(patches.device))


class VisionAttention(nn.Module):
    def __init__(self, config: MLLMVisionConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = hidden.shape

        def heads(projected: torch.Tensor) -> torch.Tensor:  # [N, L, D] -> [N, H, L, d]
            return projected.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        output = attend(
            self.config._attn_implementation,
            heads(self.q_proj(hidden)),
            heads(self.k_proj(hidden)),
            heads(self.v_proj(hidden)),
            additive_mask,
            dropout=self.config.attention_dropout,
            training=self.training,
        )
        return self.out_proj(output.transpose(1, 2).reshape(batch, length, width))


class VisionMLP(nn.Module):
    def __init__(self, config: MLLMVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden)))


class VisionEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: MLLMVisionConfig):
        super().__init__()
        self.self_attn = VisionAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden, additive_mask=None):
        hidden = hidden + self.self_attn(self.layer_norm1(hidden), additive_mask)
        return hidden + self.mlp(self.layer_norm2(hidden))


class VisionEncoder(nn.Module):
    def __init__(self, config: MLLMVisionConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(VisionEncoderLayer(config) for _ in range(num_layers))

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, additive_mask)
        return hidden


class VisionTransformer(nn.Module):
    """``vpm``: embeddings → encoder (optionally without its last layer) → post-LayerNorm."""

    def __init__(self, config: MLLMVisionConfig, drop_last_layer: bool = False):
        super().__init__()
        self.config = config
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoder(config, config.num_hidden_layers - int(drop_last_layer))
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, pixel_values: torch.Tensor, patch_mask: torch.Tensor, tgt_sizes: torch.Tensor
    ) -> torch.Tensor:
        """pixel_values [N, 3, p, Lmax*p], patch_mask [N, Lmax] (True = real patch) -> [N, Lmax, D]."""
        hidden = self.embeddings(pixel_values, tgt_sizes)
        additive_mask = (
            None if bool(patch_mask.all()) else padding_additive_mask(patch_mask, hidden.dtype)
        )
        return self.post_layernorm(self.encoder(hidden, additive_mask))
