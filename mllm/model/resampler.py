"""Perceiver-style resampler: a fixed number of learned queries cross-attend to the vision features
of one image piece, giving ``query_num`` tokens of the LLM's width whatever the piece's size.

Keys get a 2-D sin-cos position embedding of their patch's (row, col), so the LLM can tell where
things are — this is what lets a grounding model localise.

With ``locality`` set, a Gaussian prior on the attention logits ties each query to one cell of a
√Q×√Q grid over the piece. Learned global queries blend regions: a probe on the demo model read
boxes from its 16 resampler tokens at Acc@0.5 0.28, but at 0.67 from 16 tokens that each pool one
2×2 block of patches (0.72 from all 64 patches).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """[M] positions -> [M, embed_dim] (half sin, half cos)."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(embed_dim: int, height: int, width: int) -> torch.Tensor:
    """[height, width, embed_dim] table: first half encodes the column, second half the row."""
    if embed_dim % 4:
        raise ValueError(
            f"resampler width {embed_dim} must be divisible by 4 for 2-D sin-cos positions"
        )
    cols, rows = np.meshgrid(
        np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    )
    table = np.concatenate(
        [sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], axis=1
    )
    return torch.from_numpy(table.reshape(height, width, embed_dim)).float()


class Resampler(nn.Module):
    def __init__(
        self,
        num_queries: int,
        embed_dim: int,
        num_heads: int,
        kv_dim: int,
        max_size=(70, 70),
        locality: float | None = None,
    ):
        super().__init__()
        self.num_queries = num_queries
        self.num_heads = num_heads
        self.locality = locality
        self.embed_dim = embed_dim
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj = (
            nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim != embed_dim else nn.Identity()
        )
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_post = nn.LayerNorm(embed_dim, eps=1e-6)
        self.proj = nn.Parameter(torch.zeros(embed_dim, embed_dim))
        self.max_size = tuple(max_size)
        self.register_buffer("pos_embed", sincos_2d(embed_dim, *self.max_size), persistent=False)

    def _positions(
        self, tgt_sizes: torch.Tensor, max_patches: int, dtype: torch.dtype
    ) -> torch.Tensor:
        """Per-piece key positions, right-padded: [max_patches, N, D] (sequence-first for MultiheadAttention)."""
        height_max, width_max = (int(v) for v in tgt_sizes.max(dim=0).values)
        if height_max > self.max_size[0] or width_max > self.max_size[1]:
            self.max_size = (max(height_max, self.max_size[0]), max(width_max, self.max_size[1]))
            self.pos_embed = sincos_2d(self.embed_dim, *self.max_size).to(self.query.device)
        per_piece = [
            self.pos_embed[:height, :width].reshape(height * width, -1)
            for height, width in tgt_sizes.tolist()
        ]
        padded = nn.utils.rnn.pad_sequence(per_piece, batch_first=False)  # [Lp, N, D]
        if padded.shape[0] < max_patches:
            padded = nn.functional.pad(padded, (0, 0, 0, 0, 0, max_patches - padded.shape[0]))
        return padded.to(dtype)

    def locality_bias(self, tgt_sizes: torch.Tensor, max_patches: int) -> torch.Tensor:
        """Additive attention prior [N, Q, Lmax]: −d²/(2σ²), d the distance in grid cells from the
        query's cell centre to the patch centre, both in the piece's own normalised coordinates
        (so pieces of any shape share one grid). Padding columns are 0; the caller masks them."""
        grid = math.isqrt(self.num_queries)
        cell = torch.arange(self.num_queries, dtype=torch.float64)
        centres = torch.stack([(cell % grid + 0.5) / grid, (cell // grid + 0.5) / grid], dim=1)
        bias = torch.zeros(len(tgt_sizes), self.num_queries, max_patches, dtype=torch.float64)
        for index, (height, width) in enumerate(tgt_sizes.tolist()):
            rows, cols = torch.meshgrid(
                (torch.arange(height, dtype=torch.float64) + 0.5) / height,
                (torch.arange(width, dtype=torch.float64) + 0.5) / width,
                indexing="ij",
            )
            patches = torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)  # [h*w, 2] (x, y)
            squared = ((centres[:, None, :] - patches[None]) * grid).pow(2).sum(-1)  # [Q, h*w]
            bias[index, :, : height * width] = -squared / (2 * self.locality**2)
        return bias

    def forward(
        self, features: torch.Tensor, tgt_sizes: torch.Tensor, patch_mask: torch.Tensor
    ) -> torch.Tensor:
        """features [N, Lmax, kv_dim], patch_mask [N, Lmax] (True = real) -> [N, num_queries, embed_dim]."""
        batch, max_patches, _ = features.shape
        positions = self._positions(tgt_sizes.cpu(), max_patches, features.dtype).to(
            features.device
        )
        keys = self.ln_kv(self.kv_proj(features)).transpose(0, 1)  # [Lmax, N, D]
        queries = self.ln_q(self.query)[:, None, :].expand(-1, batch, -1)  # [Q, N, D]
        if self.locality is None:
            masks = {"key_padding_mask": ~patch_mask}
        else:
            bias = self.locality_bias(tgt_sizes.cpu(), max_patches).to(features.device)
            bias = bias.masked_fill(~patch_mask[:, None, :], -torch.inf)  # [N, Q, Lmax]
            masks = {"attn_mask": bias.to(features.dtype).repeat_interleave(self.num_heads, 0)}
        output, _ = self.attn(
            queries, keys + positions, keys, need_weights=False, **masks
        )  # [Q, N, D]
        return self.ln_post(output.transpose(0, 1)) @ self.proj
