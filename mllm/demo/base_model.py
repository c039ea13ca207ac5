"""Demo world only: pre-train the tiny base MLLM (on the tokenizer of ``mllm.demo.tokenizer``).

For real models these steps are a download; here they make a model of the same architecture
that has *learnt* the world's captions, including its planted co-occurrence prior — which is what
makes it hallucinate like a real MLLM does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from mllm.data.special_tokens import END_OF_TEXT, IM_END
from mllm.demo.tokenizer import NUMBER_TOKENS
from mllm.family.own import OwnFamily
from mllm.launch import main
from mllm.model.config import MLLMConfig
from mllm.model.mllm import MLLMModel
from mllm.train.datasets import SupervisedDataset
from mllm.train.settings import TrainSettings
from mllm.train.trainer import train


def base_model_config(tokenizer, architecture: Mapping, image_processing: Mapping) -> MLLMConfig:
    """The MLLM config for the demo: architecture from the workflow config, vocabulary and stop
    tokens from the tokenizer, image preprocessing stored with the weights."""
    architecture = dict(architecture)
    vision = architecture.pop("vision")
    return MLLMConfig(
        **architecture,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[
            tokenizer.convert_tokens_to_ids(IM_END),
            tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        ],
        vision_config=vision,
        image_size=image_processing["scale_resolution"],
        patch_size=image_processing["patch_size"],
        slice_mode=image_processing["slice_mode"],
        max_slice_nums=image_processing["max_slice_nums"],
    )


ORDINAL_FREQUENCIES = tuple(0.5 * 2 ** (k / 2) for k in range(10))  # 0.5 .. 11.3 cycles / 1000


def init_ordinal_number_rows(model: MLLMModel, tokenizer, seed: int) -> None:
    """Give the number tokens 0..999 input and output embeddings that vary smoothly with the value.

    Box coordinates are these tokens, and the demo's captions never use them, so a fresh tiny model
    would see 1000 unrelated classes and could not tell 412 is near 415. A pre-trained LLM arrives
    knowing number order; this stands in for it: each row is a fixed random projection of
    sin/cos features of value/1000, scaled to the layer's own initial spread.
    """
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(NUMBER_TOKENS)))
    angles = (
        2
        * math.pi
        * torch.arange(1000, dtype=torch.float64)[:, None]
        / 1000
        * torch.tensor(ORDINAL_FREQUENCIES, dtype=torch.float64)[None]
    )  # [1000, F]
    features = torch.cat([angles.sin(), angles.cos()], dim=1)  # [1000, 2F]
    generator = torch.Generator().manual_seed(seed)
    for weight in (model.llm.get_input_embeddings().weight, model.llm.lm_head.weight):
        basis, _ = torch.linalg.qr(
            torch.randn(
                weight.shape[1], features.shape[1], generator=generator, dtype=torch.float64
            )
        )  # [D, 2F], orthonormal columns
        rows = features @ basis.T  # [1000, D]
        with torch.no_grad():
            weight[ids] = (rows / rows.std() * weight.std().item()).to(weight.dtype)


def build_base_model(
    *,
    tokenizer_dir: str | os.PathLike,
    vision_weights: str | os.PathLike,
    architecture: Mapping,
    image_processing: Mapping,
    train_file: str | os.PathLike,
    image_folder: str | os.PathLike,
    settings: TrainSettings | None = None,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """Fresh MLLM + warmed-up vision tower (frozen) → caption pre-training → HF model dir.
    ``settings`` None: the ``TrainSettings`` defaults."""
    settings = TrainSettings() if settings is None else settings
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = base_model_config(tokenizer, architecture, image_processing)
    torch.manual_seed(settings.seed)
    model = MLLMModel(config)
    init_ordinal_number_rows(model, tokenizer, settings.seed)
    model.vpm.load_state_dict(load_file(str(vision_weights)))
    loaded = OwnFamily().wrap(model, tokenizer)
    dataset = SupervisedDataset.from_file(
        train_file,
        loaded,
        max_length=settings.max_length,
        image_folder=image_folder,
        max_truncated_share=settings.max_truncated_share,
    )
    return train(
        loaded,
        dataset,
        None,
        settings,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        state_path=state_path,
        metrics_path=metrics_path,
        job=__spec__.name,  # this module's name, also under ``python -m``
        job_inputs={"architecture": architecture, "image_processing": image_processing},
    )


if __name__ == "__main__":
    main([build_base_model])
