"""Conversations (+ images) -> model-ready tensors, for training and for generation.

Training labels are pre-shifted here, once: ``labels[t]`` is the token that ``logits[t]``
must predict. Losses and log-probs must not shift again (the exercise's double-shift bug).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase

from mllm.data.errors import DataError
from mllm.data.images import ImageLoader, ImageProcessor, ProcessedImage, RecentlyUsed
from mllm.data.special_tokens import (
    IMAGE_END,
    IMAGE_START,
    IMAGE_TAG,
    MINICPMV_IMAGE_TAG,
    SLICE_END,
    SLICE_START,
)
from mllm.data.template import DEFAULT_SYSTEM_PROMPT, Message, render_chatml

IGNORE_INDEX = -100  # label of a position whose next token is not supervised


def preprocess_conversation(
    conversations: Sequence[Message],
    images: Sequence[Image.Image],
    tokenizer: PreTrainedTokenizerBase,
    image_processor: ImageProcessor,
    *,
    query_num: int,
    max_length: int,
    sample_id: int | str,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> dict:
    """Turn one SFT conversation and its images into a training sample.

    Each ``<image>`` tag in the conversation becomes the placeholder of the next image; with no
    tag, a single image goes in front of the first user turn (placeholder + ``"\\n"``).
    Sequences longer than ``max_length`` are cut at the end, never inside an image placeholder,
    and flagged ``truncated`` (their answer loses its end: the datasets count them).
    Raises ``DataError`` naming ``sample_id`` for a conversation without an assistant turn,
    tags that do not match the images, or a sample that cannot fit ``max_length``.

    Returns ``input_ids``, ``labels``, ``position_ids`` (each [L] long), ``image_bound``
    ([n, 2] long, ``[start, end)`` of each piece's ``<unk>`` run), ``pixel_values`` (n ×
    [3, patch, Lp]), ``tgt_sizes`` ([n, 2] long), n being the number of image pieces, and
    ``truncated`` (bool).
    """
    preprocess = ConversationPreprocessor(
        tokenizer, image_processor, query_num=query_num, max_images=0
    )
    return preprocess(
        conversations,
        images,
        max_length=max_length,
        sample_id=sample_id,
        system_prompt=system_prompt,
    )


class ConversationPreprocessor:
    """``preprocess_conversation`` for the samples of one data set, bit for bit: the image tags'
    ids are looked up once, and an ``Image`` object that several samples show (``ImageLoader``
    hands out one per picture) is processed once, its pixel tensors shared between the samples.
    The ``max_images`` most recently processed images are remembered (None: all, 0: none)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
        *,
        query_num: int,
        max_images: int | None,
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.query_num = query_num
        self._tag_ids = image_tag_ids(tokenizer)
        # keyed by id(): each entry holds its image, so no other object can take that id
        self._processed = RecentlyUsed(max_images)

    def __call__(
        self,
        conversations: Sequence[Message],
        images: Sequence[Image.Image],
        *,
        max_length: int,
        sample_id: int | str,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> dict:
        """One sample, as ``preprocess_conversation`` documents it."""
        source = f"sample {sample_id}"
        if not any(turn["role"] == "assistant" for turn in conversations):
            raise DataError(source, "the conversation has no assistant turn to learn from")
        processed = [self._process(image) for image in images]
        placeholders = [
            self.image_processor.placeholder(p.grid, query_num=self.query_num, image_index=k)
            for k, p in enumerate(processed)
        ]
        messages = _insert_placeholders(conversations, placeholders, source)
        text, spans = render_chatml(messages, system_prompt)

        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        input_ids = np.array(encoding["input_ids"], dtype=np.int64)  # [L]
        labels = _shifted_labels(input_ids, encoding["offset_mapping"], spans)  # [L]
        image_bound = _image_bounds(input_ids, self._tag_ids, self.query_num, processed, source)

        truncated = len(input_ids) > max_length
        if truncated:
            image_end = int(image_bound[:, 1].max()) if len(image_bound) else -1  # last closing tag
            if image_end >= max_length:
                raise DataError(
                    source,
                    f"too long: {len(input_ids)} tokens, and a cut at max_length={max_length} "
                    f"would cut through the image placeholder, which ends at token {image_end}",
                )
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        if (labels == IGNORE_INDEX).all():
            raise DataError(
                source, f"too long: no supervised token left within max_length={max_length}"
            )

        pixel_values = [strip for p in processed for strip in p.pixel_values]  # n × [3, patch, Lp]
        tgt_sizes = [p.tgt_sizes for p in processed] or [torch.zeros(0, 2, dtype=torch.long)]
        return {
            "input_ids": torch.from_numpy(input_ids),  # [L]
            "labels": torch.from_numpy(labels),  # [L]
            "position_ids": torch.arange(len(input_ids)),  # [L]
            "image_bound": torch.from_numpy(image_bound),  # [n, 2]
            "pixel_values": pixel_values,
            "tgt_sizes": torch.cat(tgt_sizes),  # [n, 2]
            "truncated": truncated,
        }

    def _process(self, image: Image.Image) -> ProcessedImage:
        entry = self._processed.get_or_make(id(image), lambda: (image, self.image_processor(image)))
        return entry[1]


def read_sft_record(
    record: Mapping, loader: ImageLoader
) -> tuple[list[Message], list[Image.Image]]:
    """The checked conversation and the images (decoded by ``loader``) of an exercise record
    ``{id, image, conversations}``; ``image`` is a path under the loader's image folder or a
    base64 string (or a list of them, or absent). Errors name ``sample <id>``."""
    source = f"sample {record.get('id', '?')}"
    conversations = _checked_conversations(record, source)
    return conversations, [loader(ref, source=source) for ref in sft_image_refs(record)]


def sft_image_refs(record: Mapping) -> list:
    """The images of an SFT record: ``image``, one path or base64 string or a list of them."""
    refs = record.get("image") or []
    return [refs] if isinstance(refs, str) else list(refs)


def _is_box_turn(turn) -> bool:
    """A grounding answer left for the family to write: ``{role: assistant, expression, box}``
    with the pixel box ``[x0, y0, x1, y1]`` of the record's image (``mllm.data.grounding``)."""
    return (
        isinstance(turn, Mapping)
        and turn.get("role") == "assistant"
        and isinstance(turn.get("expression"), str)
        and isinstance(turn.get("box"), list)
        and len(turn["box"]) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in turn["box"])
    )


def _checked_conversations(record: Mapping, source: str) -> list[Message]:
    """``record["conversations"]``, a list of ``{role, content}`` turns (or grounding box turns),
    or a ``DataError`` naming the field (a bare ``KeyError: 'conversations'`` names neither
    record nor problem)."""
    if "conversations" not in record:
        raise DataError(source, "no 'conversations' field")
    conversations = record["conversations"]
    if not isinstance(conversations, list):
        raise DataError(
            source, f"'conversations' must be a list of turns, got {type(conversations).__name__}"
        )
    for index, turn in enumerate(conversations):
        if _is_box_turn(turn):
            continue
        if not (
            isinstance(turn, Mapping)
            and isinstance(turn.get("role"), str)
            and isinstance(turn.get("content"), str)
        ):
            raise DataError(
                source, f"conversations[{index}] must be an object with string 'role' and 'content'"
            )
    return conversations


def build_generation_inputs(
    questions: Sequence[str],
    images: Sequence[Image.Image],
    tokenizer: PreTrainedTokenizerBase,
    image_processor: ImageProcessor,
    *,
    query_num: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> dict:
    """Left-padded prompts for ``generate``, one image per question.

    The user turn is ``"(<image>./</image>)\\n" + question``, as MiniCPM-V's ``chat()`` writes
    it (unless the question already holds that tag), and the whole tag, parentheses included,
    becomes the image placeholder (EXERCISE_SPEC §7.3). The prompt ends with
    ``"<|im_start|>assistant\\n"``. Left padding puts every prompt's last token at position
    L−1, so ``image_bound`` is shifted by each row's padding.

    Returns ``input_ids`` and ``attention_mask`` ([B, L] long), and per row ``image_bound``
    ([n_i, 2] long), ``pixel_values`` (n_i × [3, patch, Lp]) and ``tgt_sizes`` ([n_i, 2] long).
    """
    processed = [image_processor(image) for image in images]
    tag_ids = image_tag_ids(tokenizer)
    prompts, bounds = [], []  # B × [L_i], B × [n_i, 2]
    for index, (question, image) in enumerate(zip(questions, processed, strict=True)):
        tagged = question if MINICPMV_IMAGE_TAG in question else f"{MINICPMV_IMAGE_TAG}\n{question}"
        placeholder = image_processor.placeholder(image.grid, query_num=query_num)
        user_turn = {"role": "user", "content": tagged.replace(MINICPMV_IMAGE_TAG, placeholder)}
        text, _ = render_chatml([user_turn], system_prompt, add_generation_prompt=True)
        ids = np.array(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        prompts.append(torch.from_numpy(ids))
        bounds.append(
            torch.from_numpy(_image_bounds(ids, tag_ids, query_num, [image], f"question {index}"))
        )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = pad_sequence(prompts, batch_first=True, padding_value=pad_id, padding_side="left")
    padding = input_ids.shape[1] - torch.tensor([len(ids) for ids in prompts])  # [B]
    attention_mask = (torch.arange(input_ids.shape[1]) >= padding[:, None]).long()  # [B, L]
    return {
        "input_ids": input_ids,  # [B, L]
        "attention_mask": attention_mask,
        "image_bound": [b + pad for b, pad in zip(bounds, padding.tolist(), strict=True)],
        "pixel_values": [image.pixel_values for image in processed],  # B × n_i × [3, patch, Lp]
        "tgt_sizes": [image.tgt_sizes for image in processed],  # B × [n_i, 2]
    }


def _shifted_labels(
    input_ids: np.ndarray, offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Labels [L] pre-shifted by one: ``labels[t] = ids[t + 1]`` if token t+1 starts inside a
    supervised character span, else ``IGNORE_INDEX``; so ``logits[t]`` pairs with ``labels[t]``."""
    starts = np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))
    spans = np.array(spans, dtype=np.int64).reshape(-1, 2)  # [S, 2]
    inside = (starts[:, None] >= spans[:, 0]) & (starts[:, None] < spans[:, 1])  # [L, S]
    supervised = inside.any(axis=1)  # [L]
    labels = np.full_like(input_ids, IGNORE_INDEX)  # [L]
    labels[:-1] = np.where(supervised[1:], input_ids[1:], IGNORE_INDEX)
    return labels


def image_tag_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the tags that open (``<image>``, ``<slice>``) and close an image piece."""
    opening = tokenizer.convert_tokens_to_ids([IMAGE_START, SLICE_START])
    closing = tokenizer.convert_tokens_to_ids([IMAGE_END, SLICE_END])
    return np.array(opening, dtype=np.int64), np.array(closing, dtype=np.int64)


def _image_bounds(
    input_ids: np.ndarray,
    tag_ids: tuple[np.ndarray, np.ndarray],
    query_num: int,
    processed: Sequence[ProcessedImage],
    source: str,
) -> np.ndarray:
    """``[start, end)`` of the ``<unk>`` run of every image piece in ``input_ids`` [L] -> [n, 2].

    Each ``<image>``/``<slice>`` at p and its closing tag at q (``tag_ids``: ``image_tag_ids``)
    give ``[p + 1, q)``. Checks that there is one run of ``query_num`` tokens per piece of
    ``processed``, so the model can overwrite exactly those positions with the piece's resampler
    queries.
    """
    opening, closing = tag_ids
    starts = np.flatnonzero((input_ids[:, None] == opening).any(axis=1)) + 1  # [n]
    ends = np.flatnonzero((input_ids[:, None] == closing).any(axis=1))  # [n]
    n_pieces = sum(len(p.pixel_values) for p in processed)
    if len(starts) != n_pieces or len(ends) != n_pieces or ((ends - starts) != query_num).any():
        raise DataError(
            source,
            f"image placeholders do not match the images: {len(starts)} opening and {len(ends)} "
            f"closing image tags for {n_pieces} image pieces of {query_num} tokens each",
        )
    return np.stack([starts, ends], axis=1).astype(np.int64, copy=False)  # [n, 2]


def _insert_placeholders(
    conversations: Sequence[Message], placeholders: list[str], source: str
) -> list[Message]:
    """Replace the ``<image>`` tags of the user turns, in order, by ``placeholders``."""
    messages = [dict(turn) for turn in conversations]
    user_turns = [turn for turn in messages if turn["role"] == "user"]
    n_tags = sum(turn["content"].count(IMAGE_TAG) for turn in user_turns)
    if n_tags == 0 and len(placeholders) == 1:
        if not user_turns:
            raise DataError(source, "the conversation has no user turn to hold the image")
        user_turns[0]["content"] = f"{placeholders[0]}\n{user_turns[0]['content']}"
        return messages
    if n_tags != len(placeholders):
        raise DataError(
            source,
            f"the user turns have {n_tags} {IMAGE_TAG} tags but the record has {len(placeholders)} images",
        )
    remaining = iter(placeholders)
    for turn in user_turns:
        turn["content"] = re.sub(re.escape(IMAGE_TAG), lambda _: next(remaining), turn["content"])
    return messages
