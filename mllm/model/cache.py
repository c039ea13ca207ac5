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

    shared_length, group_size = 0, 1  # positions [:shared_length] equal within groups of rows

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer = self.value_buffer = None  # [B, Hkv, capacity, D]

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

    def crop(self, tokens_to_remove: int) -> None:
        """HF's crop; what is regenerated past the cut differs between beams."""
        super().crop(tokens_to_remove)
        self.shared_length = min(self.shared_length, self.get_seq_length())

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """HF's row selection; the rows kept no longer form groups."""
        super().batch_select_indices(indices)
        self.shared_length = 0

    def reorder_cache(self, beam_idx: torch.LongTensor, within_groups: bool | None = None) -> None:
        """Beam search: gather the rows by parent beam, in place, from the first position that
        may differ within a group of beams (``batch_repeat_interleave``): the repeated prompt is
        left where it is, so a step copies only what was generated since.

        ``within_groups``: whether every row's parent is in its own group of ``group_size``
        rows, if the caller knows (``InPlaceCache`` decides it once per step for all layers:
        on a GPU each decision is a device-to-host sync); checked here otherwise.
        """
        if (
            self.get_seq_length() == 0
            or not self._keys_are_buffer_views()
            or len(beam_idx) != self.keys.shape[0]
        ):
            self.shared_length = 0  # HF's full gather: nothing is known to be shared after it
            super().reorder_cache(beam_idx)
            return
        length = self.keys.shape[-2]
        beam_idx = beam_idx.to(self.key_buffer.device)
        if self.shared_length:
            if within_groups is None:
                within_groups = stays_within_groups(beam_idx, self.group_size)
            if not within_groups:
                self.shared_length = 0  # rows came from other groups: nothing is known shared
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


def stays_within_groups(beam_idx: torch.LongTensor, group_size: int) -> bool:
    """Whether each row's parent ``beam_idx[row]`` lies in the row's own group of ``group_size``
    consecutive rows (one device-to-host sync)."""
    rows = torch.arange(len(beam_idx), device=beam_idx.device)
    return bool((beam_idx // group_size == rows // group_size).all())


class InPlaceCache(Cache):
    """A cache of :class:`InPlaceLayer` whose beam reorder decides once per step, not once per
    layer, whether the beams stayed within their prompts' groups: every layer was repeated
    alike, so one answer holds for all of them."""

    def __init__(self) -> None:
        super().__init__(layer_class_to_replicate=InPlaceLayer)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        decided: dict[int, bool] = {}  # group size -> within groups
        for layer in self.layers:
            if not isinstance(layer, InPlaceLayer) or not layer.shared_length:
                layer.reorder_cache(beam_idx)
                continue
            if layer.group_size not in decided:
                decided[layer.group_size] = stays_within_groups(
                    beam_idx.to(layer.keys.device), layer.group_size
                )
            layer.reorder_cache(beam_idx, within_groups=decided[layer.group_size])


def in_place_cache() -> Cache:
    """An empty :class:`InPlaceCache` for ``generate(cache=...)``."""
    return InPlaceCache()
