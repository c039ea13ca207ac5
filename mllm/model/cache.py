"""A KV cache that writes each decoding step in place instead of re-concatenating the past.

HF's ``DynamicLayer`` appends with ``torch.cat``, copying the whole cache of every layer at every
step: work that grows with batch × length and is a good part of a batched step on a CPU. This
layer keeps a buffer with room to spare and hands attention a view of its filled part; the
values, and so every score, are the same bits as with ``DynamicLayer``. Beam search's per-step
reorder leaves each prompt's repeated positions alone and gathers only the generated ones, in
place (``DynamicLayer`` gathers every row and position, then concatenates).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

SPARE_POSITIONS = 64  # least room past the current length when a buffer is (re)allocated


class InPlaceLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys``/``values`` are views [B, Hkv, length, D] of larger buffers.

    HF's own methods (``crop``, ``batch_select_indices``, …) may replace ``keys`` by a fresh
    tensor; the next ``update`` then copies it into a new buffer, so they stay correct.
    """

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer = self.value_buffer = None  # [B, Hkv, capacity, D]
        self.shared_length, self.group_size = 0, 1  # positions equal within groups of rows

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.keys.shape[-2] if self.keys.numel() else 0
        total = length + key_states.shape[-2]
        if not self._keys_are_buffer_views() or total > self.key_buffer.shape[-2]:
            self.key_buffer = self._grown(self.keys, key_states, length, total)
            self.value_buffer = self._grown(self.values, value_states, length, total)
        self.key_buffer[:, :, length:total] = key_states
        self.value_buffer[:, :, length:total] = value_states
        self.keys = self.key_buffer[:, :, :total]
        self.values = self.value_buffer[:, :, :total]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Each row ``repeats`` times side by side (``prefill_each_prompt_once``): the filled
        positions are then the same within each group of ``repeats`` rows, which beam search
        never reorders across."""
        super().batch_repeat_interleave(repeats)
        self.shared_length, self.group_size = self.get_seq_length(), repeats

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: gather the rows by parent beam, in place, from the first position that
        may differ within a group of beams (``batch_repeat_interleave``): the repeated prompt is
        left where it is, so a step copies only what was generated since."""
        if (
            self.get_seq_length() == 0
            or not self._keys_are_buffer_views()
            or len(beam_idx) != self.keys.shape[0]
        ):
            super().reorder_cache(beam_idx)
            return
        length = self.keys.shape[-2]
        beam_idx = beam_idx.to(self.key_buffer.device)
        rows = torch.arange(len(beam_idx), device=beam_idx.device)
        if not bool((beam_idx // self.group_size == rows // self.group_size).all()):
            self.shared_length = 0  # rows came from other groups: nothing is known to be shared
        start = min(self.shared_length, length)
        for buffer in (self.key_buffer, self.value_buffer):
            buffer[:, :, start:length] = buffer[:, :, start:length].index_select(0, beam_idx)

    def _keys_are_buffer_views(self) -> bool:
        """Whether ``keys`` is still a prefix of ``key_buffer`` (HF's ``crop`` keeps it one)."""
        return (
            self.key_buffer is not None
            and self.keys.numel() > 0
            and self.keys.data_ptr() == self.key_buffer.data_ptr()
            and self.keys.shape[0] == self.key_buffer.shape[0]
            and self.keys.stride() == self.key_buffer.stride()
        )

    @staticmethod
    def _grown(past: torch.Tensor, new: torch.Tensor, length: int, total: int) -> torch.Tensor:
        """A buffer [B, Hkv, capacity, D] holding ``past``'s first ``length`` positions, with
        room for ``total`` and as many again (at least ``SPARE_POSITIONS``)."""
        batch, heads, _, head_dim = new.shape
        capacity = total + max(total, SPARE_POSITIONS)
        buffer = new.new_empty(batch, heads, capacity, head_dim)
        if length:
            buffer[:, :, :length] = past[:, :, :length]
        return buffer


def in_place_cache() -> Cache:
    """An empty cache of :class:`InPlaceLayer` for ``generate(cache=...)``."""
    return Cache(layer_class_to_replicate=InPlaceLayer)
