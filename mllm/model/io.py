"""Model directories of the own family (``mllm.family.own``): one HF-format folder holds the
weights (safetensors), the config (which also carries the image-preprocessing settings) and the
tokenizer. Stages load through ``mllm.family.registry.load_model``, which lands here."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mllm import distributed
from mllm.atomic import atomic_directory
from mllm.data.images import ImageProcessor

from .config import MLLMConfig
from .mllm import MLLMModel


def image_processor_for(config: MLLMConfig) -> ImageProcessor:
    """The preprocessing the model was trained with, read from its config."""
    return ImageProcessor(
        patch_size=config.patch_size,
        scale_resolution=config.image_size,
        max_slice_nums=config.max_slice_nums,
        slice_mode=config.slice_mode,
    )


def load_mllm(
    model_dir: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    device: torch.device | str | None = None,
) -> tuple[MLLMModel, PreTrainedTokenizerBase]:
    """Load weights and tokenizer from one model directory (eval mode).

    The model lands on ``device``, by default this rank's GPU when there is one (else the CPU):
    decoding and scoring jobs run where their ``gpu`` resource is. Training passes ``"cpu"`` and
    lets the Trainer (or DeepSpeed) place and shard it.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    model = MLLMModel.from_pretrained(
        model_dir,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    ).eval()
    model.to(device if device is not None else distributed.device())
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    return model, tokenizer


def save_model(
    model: MLLMModel, tokenizer: PreTrainedTokenizerBase, model_dir: str | os.PathLike
) -> None:
    """Write weights + config + tokenizer; the directory appears only once complete."""
    with atomic_directory(model_dir) as scratch:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
