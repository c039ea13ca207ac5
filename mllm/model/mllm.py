"""The multimodal model: ``vpm`` (vision tower) → ``resampler`` → ``llm`` (decoder), fused by
overwriting the placeholder-token embeddings between each image's bounds with that image's
resampler output (``get_vllm_embedding``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .cache import in_place_cache
from .config import MLLMConfig
from .llm import IGNORE_INDEX, LLMForCausalLM, supervised_token_loss
from .pretrained import MLLMPreTrainedModel
from .resampler import Resampler
from .sampling import fused_sampling_warpers
from .vision import VisionTransformer

PixelValues = list[list[torch.Tensor]]  # per sample, per image piece: [3, patch, n_patches*patch]


def pad_patch_strips(
    pieces: list[torch.Tensor], patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad strips [3, p, L_i*p] into [N, 3, p, Lmax*p] plus a patch mask [N, Lmax] (True = real)."""
    lengths = [piece.shape[-1] // patch_size for piece in pieces]
    max_length = max(lengths)
    batch = pieces[0].new_zeros(
        len(pieces), pieces[0].shape[0], patch_size, max_length * patch_size
    )
    mask = torch.zeros(len(pieces), max_length, dtype=torch.bool, device=pieces[0].device)
    for index, (piece, length) in enumerate(zip(pieces, lengths, strict=True)):
        batch[index, :, :, : piece.shape[-1]] = piece
        mask[index, :length] = True
    return batch, mask


class MLLMModel(MLLMPreTrainedModel):
    """MiniCPM-V-2.6-style MLLM; parameter names match the exercise checkpoint (``llm.*``, ``vpm.*``,
    ``resampler.*``) so its weights load unchanged."""

    _keys_to_ignore_on_load_unexpected = [r"resampler\.pos_embed"]

    def __init__(self, config: MLLMConfig):
        super().__init__(config)
        self.llm = LLMForCausalLM(config)
        self.vpm = VisionTransformer(
            config.vision_config, drop_last_layer=config.drop_vision_last_layer
        )
        grid = config.vision_config.image_size // config.vision_config.patch_size
        self.resampler = Resampler(
            num_queries=config.query_num,
            embed_dim=config.hidden_size,
            num_heads=config.resampler_num_heads,
            kv_dim=config.vision_config.hidden_size,
            max_size=(grid, grid),
            locality=config.resampler_locality,
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.llm.set_input_embeddings(value)

    # -- vision ---------------------------------------------------------------------------------

    def get_vision_features(
        self, pixel_values: PixelValues, tgt_sizes: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Encode every image piece; returns per sample a [n_i, query_num, hidden] tensor."""
        counts = [len(pieces) for pieces in pixel_values]
        pieces = [piece for sample in pixel_values for piece in sample]
        hidden_size = self.config.hidden_size
        if not pieces:
            empty = self.resampler.query.new_zeros(0, self.config.query_num, hidden_size)
            return [empty for _ in counts]
        sizes = torch.cat(
            [torch.as_tensor(s, dtype=torch.long).reshape(-1, 2) for s in tgt_sizes]
        )  # [N, 2]
        if len(sizes) != len(pieces):
            raise ValueError(f"{len(pieces)} image pieces but {len(sizes)} tgt_sizes rows")
        patch_size = self.config.vision_config.patch_size
        dtype = self.resampler.query.dtype
        features = []
        chunk = self.config.vision_batch_size
        for start in range(0, len(pieces), chunk):
            strips, mask = pad_patch_strips(
                [p.to(dtype=dtype, device=self.device) for p in pieces[start : start + chunk]],
                patch_size,
            )
            chunk_sizes = sizes[start : start + chunk]
            encoded = self.vpm(strips, mask, chunk_sizes)  # [n, Lmax, Dv]
            features.append(self.resampler(encoded, chunk_sizes, mask))  # [n, Q, D]
        return list(torch.cat(features).split(counts))

    def get_vllm_embedding(
        self,
        input_ids: torch.LongTensor,
        pixel_values: PixelValues | None,
        tgt_sizes: list[torch.Tensor] | None,
        image_bound: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        """Token embeddings [B, L, D] with rows [start, end) of each image bound replaced by its features."""
        embeddings = self.get_input_embeddings()(input_ids)  # [B, L, D]
        if not pixel_values or not any(len(sample) for sample in pixel_values):
            return embeddings
        features = self.get_vision_features(pixel_values, tgt_sizes)
        fused = []
        for index, (sample_embeddings, sample_features) in enumerate(
            zip(embeddings, features, strict=True)
        ):
            bounds = torch.as_tensor(image_bound[index], dtype=torch.long).reshape(-1, 2)
            if len(bounds) != len(sample_features):
                raise ValueError(
                    f"sample {index}: {len(bounds)} image bounds but {len(sample_features)} image pieces"
                )
            if not len(bounds):
                fused.append(sample_embeddings)
                continue
            spans = (bounds[:, 1] - bounds[:, 0]).tolist()
            if any(span != self.config.query_num for span in spans):
                raise ValueError(
                    f"sample {index}: image bounds {bounds.tolist()} must each span query_num="
                    f"{self.config.query_num} tokens"
                )
            rows = torch.cat([torch.arange(s, e) for s, e in bounds.tolist()]).to(embeddings.device)
            values = sample_features.reshape(-1, sample_features.shape[-1]).to(
                sample_embeddings.dtype
            )
            fused.append(sample_embeddings.index_copy(0, rows, values))
        return torch.stack(fused)

    # -- training / scoring ------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: PixelValues | None = None,
        tgt_sizes: list[torch.Tensor] | None = None,
        image_bound: list[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = False,
        num_items_in_batch: int | torch.Tensor | None = None,
        logits_at: torch.BoolTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits [B, L, V]; with ``labels`` (pre-shifted, −100 = ignore) also the mean token loss.

        With ``logits_at`` ([B, L] bool) the LM head runs only at those positions (logits [N, V]):
        the SFT loss (``OwnFamily.supervised_logits``) needs no distribution over the vocabulary
        at prompt and image positions, and skipping them saves the largest activation of the step
        ([B, L, V]; 1.2 GB per 2k-token sample at the exercise's 151k vocabulary). So does
        training with labels, where ``logits`` is None.
        """
        if inputs_embeds is None:
            inputs_embeds = self.get_vllm_embedding(input_ids, pixel_values, tgt_sizes, image_bound)
        hidden = self.llm.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
        )
        if logits_at is not None:
            logits = self.llm.lm_head(hidden.last_hidden_state[logits_at])  # [N, V]
            return CausalLMOutputWithPast(logits=logits, cache=hidden.cache)
        if labels is not None and self.training:
            supervised = labels != IGNORE_INDEX  # [B, L]
            logits = self.llm.lm_head(hidden.last_hidden_state[supervised])  # [N, V]
            loss = supervised_token_loss(logits, labels[supervised], num_items_in_batch)
            return CausalLMOutputWithPast(loss=loss, logits=None, cache=hidden.cache)
        logits = self.llm.lm_head(hidden.last_hidden_state)  # [B, L, V]
        loss = None if labels is None else supervised_token_loss(logits, labels, num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=hidden.cache)

    # -- inference ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: PixelValues | None = None,
        tgt_sizes: list[torch.Tensor] | None = None,
        image_bound: list[torch.Tensor] | None = None,
        **generation_kwargs,
    ) -> torch.LongTensor:
        """Decode from left-padded prompts; returns only the new tokens [B, T] (pad after a sequence ends).

        Sampling, greedy and beam search all go through HF ``generate`` on the fused embeddings, with
        position ids from the attention mask so a padded batch decodes exactly like one-by-one calls.

        The repetition penalty is passed as our own ``RepetitionPenaltyLogitsProcessor``, which HF
        puts in place of its own: HF's exempts each row's first pad-count tokens of ``input_ids``,
        taking left padding for prompt, but with ``inputs_embeds`` those ids are the generated
        tokens, so a padded row would go unpenalised for as many steps as it has pads. Ours
        penalises every generated token, as the exercise's ``chat()`` does for one unpadded sample.

        The KV cache is written in place (``in_place_cache``): same values, no per-step copy. Beam
        search (and several returned sequences) prefill each prompt once, not once per beam
        (``prefill_each_prompt_once``). For
        sampling, top-k and top-p run as one warper that skips HF's sort of the whole vocabulary
        (``mllm.model.sampling``): same bits.
        """
        inputs_embeds = self.get_vllm_embedding(input_ids, pixel_values, tgt_sizes, image_bound)
        generation_kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        generation_kwargs.setdefault("cache", in_place_cache())
        defaults = self.llm.generation_config
        copies = max(
            generation_kwargs.get("num_beams") or defaults.num_beams or 1,
            generation_kwargs.get("num_return_sequences") or defaults.num_return_sequences or 1,
        )
        cache = generation_kwargs["cache"]
        if copies > 1 and inputs_embeds.shape[1] > 1 and cache.get_seq_length() == 0:
            prefill_each_prompt_once(self.llm, inputs_embeds, attention_mask, cache, copies)
        if self.config.eos_token_id is not None:
            generation_kwargs.setdefault("eos_token_id", self.config.eos_token_id)
        penalty = generation_kwargs.get(
            "repetition_penalty", self.llm.generation_config.repetition_penalty
        )
        penalties = (
            [RepetitionPenaltyLogitsProcessor(float(penalty))]
            if penalty is not None and penalty != 1.0
            else []
        )
        warpers = fused_sampling_warpers(generation_kwargs, self.llm.generation_config)
        if penalties or warpers:
            generation_kwargs["logits_processor"] = LogitsProcessorList(
                [*penalties, *(generation_kwargs.get("logits_processor") or []), *warpers]
            )
        return self.llm.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generation_kwargs
        )


def prefill_each_prompt_once(
    llm: LLMForCausalLM,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    cache: Cache,
    copies: int,
) -> None:
    """Fill ``cache`` with every prompt position but the last, computed once per prompt and
    repeated ``copies`` times (HF's row order: each prompt's copies side by side).

    HF's ``generate`` repeats each prompt once per beam before its prefill: ``copies`` times the
    work for identical rows, the largest single step of a beam search. Given a filled cache it
    runs only the uncached (last) position, on every copy. Positions follow the attention mask
    as HF's own do (left padding: count of real tokens before, 0 at pads).
    """
    prompt = attention_mask[:, :-1]  # [B, L-1]
    positions = (prompt.long().cumsum(-1) - 1).masked_fill(prompt == 0, 0)  # [B, L-1]
    llm.model(
        inputs_embeds=inputs_embeds[:, :-1],
        attention_mask=prompt,
        position_ids=positions,
        cache=cache,
        use_cache=True,
    )
    cache.batch_repeat_interleave(copies)
