"""The project's own family: the MiniCPM-V-2.6-class ``MLLMModel`` (``model_type`` "mllm").

Its pieces stay where they were built (``mllm.model`` for the network and its folders,
``mllm.data`` for ChatML, image slicing, preprocessing and batching); this module is what the
stages see of them. What belongs to no other family lives here: the terminators and answer
decoding, and Qwen-VL's box text, which the exercise trains on.

Box convention (Qwen-VL): ``<ref>expr</ref><box>(x1,y1),(x2,y2)</box>``, each coordinate
``int(1000·x/W)`` or ``int(1000·y/H)`` clamped to 0..999. Answers are read back as Qwen-VL's
``eval_mm/evaluate_grounding.py`` reads them: the first ``(x1,y1),(x2,y2)``, scaled to pixels by
``coordinate / 999 · W`` (x) or ``· H`` (y) — Qwen-VL divides by 999 although training encodes with
``int(1000·x/W)``, a 0.1 % stretch kept here so numbers stay comparable. Two deliberate
differences from Qwen-VL, both lenient towards the answer and both documented in the report:
swapped corners are sorted per axis (Qwen-VL would score an inverted box), and out-of-grid values
are clamped to 0..999.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from mllm.data.collators import pad_rows
from mllm.data.images import ImageProcessor
from mllm.data.preprocess import (
    IGNORE_INDEX,
    ConversationPreprocessor,
    build_generation_inputs,
)
from mllm.data.special_tokens import (
    BOX_END,
    BOX_START,
    END_OF_TEXT,
    IM_END,
    REF_END,
    REF_START,
)
from mllm.data.template import DEFAULT_SYSTEM_PROMPT
from mllm.model.io import image_processor_for, load_mllm, save_model
from mllm.model.mllm import MLLMModel

from .base import Box, LoadedModel, Message, ModelFamily, Sample, SampleBuilder

GRID_SIZE = 1000  # Qwen-VL box grid: coordinates are integers 0..GRID_SIZE-1
GRID_MAX = GRID_SIZE - 1  # Qwen-VL's divisor for grid -> pixels
_BOX_PATTERN = re.compile(r"\((.*?)\),\((.*?)\)")  # Qwen-VL's, first match only


@dataclass(frozen=True)
class OwnProcessor:
    """The own family's processing: the tokenizer, the image slicing the checkpoint's config
    names, and the number of tokens each image piece takes."""

    tokenizer: PreTrainedTokenizerBase
    image_processor: ImageProcessor
    query_num: int


class OwnFamily(ModelFamily):
    name = "mllm"
    model_types = ("mllm",)
    lora_target_regex = r"llm\..*layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"
    box_convention = "Qwen-VL: <ref>expr</ref><box>(x1,y1),(x2,y2)</box>, int(1000·x/W) on 0..999; read back ·W/999"

    # -- checkpoints --------------------------------------------------------------------------
    def load(
        self,
        model_dir: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str | None = "sdpa",
        device: torch.device | str | None = None,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        model, tokenizer = load_mllm(
            model_dir,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device=device,
            trust_remote_code=trust_remote_code,
        )
        return self.wrap(model, tokenizer)

    def wrap(self, model: MLLMModel, tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
        """A model built in memory (the demo's base model) with its tokenizer, as ``load`` gives
        it: the image processing comes from the model's config."""
        processor = OwnProcessor(
            tokenizer, image_processor_for(model.config), model.config.query_num
        )
        return LoadedModel(model, processor, self)

    def save(self, loaded: LoadedModel, model: torch.nn.Module, model_dir: str | os.PathLike):
        save_model(model, loaded.tokenizer, model_dir)

    def tokenizer(self, loaded: LoadedModel) -> PreTrainedTokenizerBase:
        return loaded.processor.tokenizer

    def model_parts(self, model: torch.nn.Module) -> dict[str, tuple[str, torch.nn.Module]]:
        return {
            "vision": ("vpm", model.vpm),
            "projector": ("resampler", model.resampler),
            "llm": ("llm", model.llm),
        }

    # -- tensors ------------------------------------------------------------------------------
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
        # one sample: nothing to remember (preprocess_conversation's max_images=0)
        build = self.sample_builder(loaded, max_images=0)
        return build(
            conversations,
            images,
            max_length=max_length,
            sample_id=sample_id,
            system_prompt=system_prompt,
        )

    def sample_builder(self, loaded: LoadedModel, *, max_images: int | None) -> SampleBuilder:
        """``preprocess_conversation`` of one data set's samples (``ConversationPreprocessor``)."""
        processor = loaded.processor
        preprocess = ConversationPreprocessor(
            processor.tokenizer,
            processor.image_processor,
            query_num=processor.query_num,
            max_images=max_images,
        )

        def build(
            conversations: Sequence[Message],
            images: Sequence[Image.Image],
            *,
            max_length: int,
            sample_id: int | str,
            system_prompt: str | None = None,
        ) -> Sample:
            return preprocess(
                conversations,
                images,
                max_length=max_length,
                sample_id=sample_id,
                system_prompt=DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt,
            )

        return build

    def collate(self, loaded: LoadedModel, samples: Sequence[Sample]) -> dict:
        return pad_rows(samples, loaded.tokenizer.pad_token_id or 0)

    def supervised_logits(
        self, model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """While training, the LM head runs only at supervised positions (logits [N, V], labels
        [N]); in evaluation every position's ([B, L, V], [B, L])."""
        if not model.training:
            return model(**inputs).logits, labels
        supervised = labels != IGNORE_INDEX  # [B, L]
        return model(**inputs, logits_at=supervised).logits, labels[supervised]

    def generation_inputs(
        self,
        loaded: LoadedModel,
        questions: Sequence[str],
        images: Sequence[Image.Image],
        *,
        system_prompt: str | None = None,
    ) -> dict:
        processor = loaded.processor
        return build_generation_inputs(
            questions,
            images,
            processor.tokenizer,
            processor.image_processor,
            query_num=processor.query_num,
            system_prompt=DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt,
        )

    def terminator_ids(self, loaded: LoadedModel) -> list[int]:
        """``<|im_end|>``, ``<|endoftext|>`` and the tokenizer's eos, those it knows."""
        tokenizer = loaded.tokenizer
        ids = {tokenizer.convert_tokens_to_ids(token) for token in (IM_END, END_OF_TEXT)}
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)

    def new_tokens(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], generated: torch.Tensor
    ) -> torch.Tensor:
        """``MLLMModel.generate`` returns only the new tokens [B, T]."""
        return generated

    def decode_answer(self, loaded: LoadedModel, new_tokens: torch.Tensor) -> str:
        """Cut at the first terminator (what follows is padding), drop a leading BOS if the
        tokenizer has one, strip whitespace; special tokens kept (``<ref>``/``<box>``)."""
        tokenizer = loaded.tokenizer
        terminators = set(self.terminator_ids(loaded))
        ids = new_tokens.tolist()
        cut = next((i for i, token in enumerate(ids) if token in terminators), len(ids))
        ids = ids[:cut]
        if ids and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id:
            ids = ids[1:]
        return tokenizer.decode(ids, skip_special_tokens=False).strip()

    def image_token_counts(self, loaded: LoadedModel, images: Sequence[Image.Image]) -> list[int]:
        processor = loaded.processor
        counts = []
        for image in images:
            grid = processor.image_processor.grid(image)  # the layout alone: no pixel resized
            text = processor.image_processor.placeholder(grid, query_num=processor.query_num)
            counts.append(len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]))
        return counts

    def cache_identity(self, loaded: LoadedModel) -> dict:
        """The slicing settings and tokens per piece (ChatML is the code's, versioned by the
        reference cache's ``TEMPLATE_VERSION``)."""
        processor = loaded.processor
        return {**vars(processor.image_processor), "query_num": processor.query_num}

    # -- grounding ----------------------------------------------------------------------------
    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        return grid_box_answer(expression, box_to_grid(box, *image.size))

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        grid_box = parse_grid_box(answer)
        return None if grid_box is None else grid_to_pixels(grid_box, *image.size)


def box_to_grid(bbox: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box -> Qwen-VL grid: ``int(1000·x/W)``, ``int(1000·y/H)``, clamped to 0..999."""
    x0, y0, x1, y1 = bbox
    scaled = (x0 / width, y0 / height, x1 / width, y1 / height)
    return tuple(min(GRID_MAX, max(0, int(GRID_SIZE * v))) for v in scaled)


def grid_box_answer(expression: str, grid_box: Sequence[int]) -> str:
    """``<ref>expr</ref><box>(x1,y1),(x2,y2)</box>``, the assistant turn of a grounding record."""
    x0, y0, x1, y1 = grid_box
    return f"{REF_START}{expression}{REF_END}{BOX_START}({x0},{y0}),({x1},{y1}){BOX_END}"


def parse_grid_box(text: str) -> Box | None:
    """The first ``(x1,y1),(x2,y2)`` of an answer as grid coordinates, corners sorted per axis
    and clamped to 0..999; None when there is no such pair of two finite numbers each."""
    match = _BOX_PATTERN.search(text)
    if not match:
        return None
    try:
        corners = [[float(part) for part in group.split(",")] for group in match.groups()]
    except ValueError:
        return None
    if any(len(corner) != 2 for corner in corners):
        return None
    (xa, ya), (xb, yb) = corners
    if not all(map(math.isfinite, (xa, ya, xb, yb))):
        return None
    sorted_box = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    return tuple(min(float(GRID_MAX), max(0.0, v)) for v in sorted_box)


def grid_to_pixels(box: Sequence[float], width: int, height: int) -> Box:
    """Grid box -> pixel box, dividing by 999 as Qwen-VL does."""
    x0, y0, x1, y1 = box
    return (
        x0 / GRID_MAX * width,
        y0 / GRID_MAX * height,
        x1 / GRID_MAX * width,
        y1 / GRID_MAX * height,
    )
