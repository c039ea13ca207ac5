"""Data for the MLLM: tokenizer, ChatML template, images, preprocessing and collators.

Formats are the exercise's (EXERCISE_SPEC §1-2), so its files and tokenizer drop in.
"""

from mllm.data.collators import preference_collate, sft_collate
from mllm.data.errors import DataError
from mllm.data.images import ImageProcessor, ProcessedImage, load_image
from mllm.data.preprocess import (
    IGNORE_INDEX,
    build_generation_inputs,
    preprocess_conversation,
    preprocess_sft_record,
)
from mllm.data.template import CHAT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, render_chatml
from mllm.data.tokenizer import build_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_SYSTEM_PROMPT",
    "IGNORE_INDEX",
    "DataError",
    "ImageProcessor",
    "ProcessedImage",
    "build_generation_inputs",
    "build_tokenizer",
    "load_image",
    "preference_collate",
    "preprocess_conversation",
    "preprocess_sft_record",
    "render_chatml",
    "sft_collate",
]
