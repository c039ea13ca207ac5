"""The model-family boundary: everything a stage needs to know about one kind of VLM.

Decoding, SFT, grounding, reference log-probs and DPO/NCA are written once against
``ModelFamily``; each family (the project's own MiniCPM-V class, the HF-native ones) says how its
checkpoints load, how a conversation with images becomes tensors, how it writes boxes, and which
modules LoRA may touch. Stages never ask which family they hold.

Conventions every family keeps, because the stages rely on them:

- ``labels`` are **pre-shifted**: ``labels[t]`` is the token ``logits[t]`` predicts, −100 where
  nothing is supervised. Losses and log-probs are computed by the library from the logits;
  labels are never handed to an HF model's forward (it would shift a second time).
- Labels come from the prompt length (tokens of the rendered prompt), never from
  ``return_assistant_tokens_mask`` (an all-zero mask without a ``{% generation %}`` block).
- A sample longer than ``max_length`` is cut at the end, never inside image tokens; a cut that
  would fall inside them raises ``DataError`` naming the sample.
- Batches are model keyword arguments: ``collate`` right-pads (training, scoring), and
  ``generation_inputs`` left-pads (so a batch decodes like one-by-one calls). Whatever the
  model needs to place images (``mm_token_type_ids``, ``image_grid_thw``, ``image_bound``…)
  travels in them.
- Boxes are pixel ``(x0, y0, x1, y1)`` in the original image at the boundary; the family's
  convention turns them into answer text and back, declared, never guessed.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

Box = tuple[float, float, float, float]  # pixel (x0, y0, x1, y1) in the original image
Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}
Sample = dict[str, Any]  # a training_sample output
SampleBuilder = Callable[..., Sample]  # training_sample with its model bound (sample_builder)


@dataclass
class LoadedModel:
    """A model with the processing it was trained with, and the family that knows both."""

    model: torch.nn.Module
    processor: Any  # the family's own: an HF processor, or the own family's tokenizer + images
    family: ModelFamily

    @property
    def tokenizer(self):
        return self.family.tokenizer(self)


class ModelFamily(ABC):
    """One kind of VLM. Implementations are stateless; per-checkpoint state is in ``LoadedModel``."""

    name: ClassVar[str]  # the config's ``model.family`` value
    model_types: ClassVar[tuple[str, ...]]  # the ``config.json`` ``model_type`` values it loads
    lora_target_regex: ClassVar[str]  # full match over module names: LM attention only
    box_convention: ClassVar[str]  # a one-line statement of the convention, for the report

    # -- checkpoints --------------------------------------------------------------------------
    @abstractmethod
    def load(
        self,
        model_dir: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str | None = "sdpa",
        device: torch.device | str | None = None,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        """Model (eval mode, on ``device``) + processing, from one checkpoint folder."""

    def set_pixel_limits(
        self, model_dir: str | os.PathLike, *, min_pixels: int | None, max_pixels: int | None
    ) -> dict:
        """Bound the pixels the processor of the checkpoint in ``model_dir`` resizes an image
        to (the config's ``model.min_pixels`` / ``max_pixels``), by rewriting its processor
        settings there; returns the settings written. A family with no such bound refuses."""
        raise ValueError(f"family {self.name!r} has no pixel limits to set")

    @abstractmethod
    def save(self, loaded: LoadedModel, model: torch.nn.Module, model_dir: str | os.PathLike):
        """Write ``model`` with ``loaded``'s processing as a folder ``load`` reads; atomic."""

    @abstractmethod
    def tokenizer(self, loaded: LoadedModel):
        """The text tokenizer (pad/eos ids, decoding)."""

    def model_parts(self, model: torch.nn.Module) -> dict[str, tuple[str, torch.nn.Module]]:
        """The modules that ``tune_vision``, ``tune_resampler`` and ``tune_llm`` freeze or train, by
        role ``"vision"``, ``"projector"``, ``"llm"``: ``{role: (module name, module)}`` (the
        name labels the trainable-parameter counts in the training metrics).

        Added for the trainer's freezing, which must not guess module paths (the LM sits at
        ``model.language_model`` or ``model.text_model``, the vision tower at ``model.visual``,
        ``model.vision_tower`` or ``model.vision_model``)."""
        raise NotImplementedError(f"family {self.name!r} does not say which modules to freeze")

    # -- tensors ------------------------------------------------------------------------------
    @abstractmethod
    def training_sample(
        self,
        loaded: LoadedModel,
        conversations: Sequence[Message],
        images: Sequence[Image.Image],
        *,
        max_length: int,
        sample_id: int | str,
        system_prompt: str | None = None,
    ) -> Sample:
        """One conversation -> ``input_ids`` [L], pre-shifted ``labels`` [L], the family's image
        tensors, and ``truncated`` (bool). ``<image>`` tags in user turns mark where images go;
        without a tag, one image goes before the first user turn."""

    def sample_builder(self, loaded: LoadedModel, *, max_images: int | None) -> SampleBuilder:
        """``training_sample`` with ``loaded`` bound, for the many samples of one data set: the
        same samples bit for bit, but a family may share work between them (the own family
        processes an ``Image`` object once however many samples show it; pass one object per
        picture, ``ImageLoader``). ``max_images``: how many images it may remember (None: all)."""
        del max_images  # nothing shared here: the HF processors take text and images together
        return functools.partial(self.training_sample, loaded)

    @abstractmethod
    def collate(self, loaded: LoadedModel, samples: Sequence[Sample]) -> dict:
        """Right-padded batch: model kwargs (``input_ids``, ``attention_mask`` from real lengths,
        image tensors…) plus ``labels`` [B, L]. Rows keep their order."""

    def supervised_logits(
        self, model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` for the training loss: logits [..., V] paired one to one with
        labels [...] (−100 where unsupervised), from a forward on ``inputs`` (a ``collate`` batch
        without its ``labels``). ``model`` is the one being trained (LoRA-wrapped perhaps).

        Added for the SFT loss, which the library computes: by default every position's logits;
        a family may run its LM head only at supervised positions while training (the own
        family does: [B, L, V] logits are the largest activation of a step).
        """
        return model(**inputs).logits, labels

    @abstractmethod
    def generation_inputs(
        self,
        loaded: LoadedModel,
        questions: Sequence[str],
        images: Sequence[Image.Image],
        *,
        system_prompt: str | None = None,
    ) -> dict:
        """Left-padded prompts (one image per question, ending with the generation prompt) as
        model kwargs for ``generate``."""

    @abstractmethod
    def terminator_ids(self, loaded: LoadedModel) -> list[int]:
        """Token ids that end an answer (passed as ``eos_token_id`` to ``generate``)."""

    def new_tokens(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], generated: torch.Tensor
    ) -> torch.Tensor:
        """``generate``'s output for the batch ``inputs`` (a ``generation_inputs`` result) -> the new
        tokens [B, T]. Default: HF's convention, the left-padded prompt [B, L] then the new tokens.

        Added because a model that generates from ``inputs_embeds`` (the own family) returns only
        the new tokens, and the decoding stage must not guess which it got."""
        return generated[:, inputs["input_ids"].shape[1] :]

    @abstractmethod
    def decode_answer(self, loaded: LoadedModel, new_tokens: torch.Tensor) -> str:
        """New tokens [T] -> answer text, cut at the first terminator. Keeps special tokens the
        box convention needs (e.g. InternVL's ``<box>``)."""

    @abstractmethod
    def image_token_counts(self, loaded: LoadedModel, images: Sequence[Image.Image]) -> list[int]:
        """Tokens each image takes in a prompt, counted with the real processor (preflight)."""

    @abstractmethod
    def cache_identity(self, loaded: LoadedModel) -> dict:
        """JSON-able facts besides weights that change scores: processor class and backend, pixel
        limits, chat template. Part of every reference log-prob cache key."""

    # -- grounding ----------------------------------------------------------------------------
    @abstractmethod
    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        """The assistant's grounding answer for ``box`` (pixels of ``image``)."""

    @abstractmethod
    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        """The first box of an answer, in pixels of ``image``; None when there is none."""
