"""HF-native VLM families: ``AutoModelForImageTextToText`` + ``AutoProcessor``, no remote code.

One generic implementation carries every family transformers ships; a subclass only names its
``model_type``, chat template, LoRA regex and box convention. Pitfalls it handles (numbers refer
to ``MODEL_FAMILIES.md``): labels from the prompt length, never an assistant mask (P10);
``mm_token_type_ids`` carried and padded with zeros (P3); images nested per sample (P2); answers
decoded with special tokens kept where box tags are special tokens (P5); the PIL image backend
pinned and recorded in the cache identity (P8); token ids passed to every ``generate`` (P11).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

from mllm.atomic import atomic_directory, write_json
from mllm.data.errors import DataError
from mllm.data.preprocess import IGNORE_INDEX
from mllm.data.special_tokens import IMAGE_TAG
from mllm.family.base import Box, LoadedModel, Message, ModelFamily, Sample

IMAGE_BACKEND = "pil"  # pinned: the torchvision backend resizes 1–2 grey levels differently (P8)
# Per-token model inputs: right-padded by ``collate`` (pad id / 0), cut by truncation.
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
# Image-processor settings that change how many tokens an image takes or its pixels.
PIXEL_LIMIT_KEYS = (
    "size",
    "patch_size",
    "merge_size",
    "temporal_patch_size",
    "crop_to_patches",
    "min_patches",
    "max_patches",
    "do_image_splitting",
    "max_image_size",
    "image_grid_pinpoints",
)
# Legacy image-processor keys that override ``size`` when the processor loads (Qwen-VL).
SUPERSEDED_PIXEL_KEYS = ("min_pixels", "max_pixels")
# A box's four numbers inside the answer text, e.g. "[12, 30, 200, 310]" (ints or floats).
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_FOUR_NUMBERS = r"\[\s*" + r"\s*,\s*".join([_NUMBER] * 4) + r"\s*\]"


def shipped_template(name: str) -> str:
    """A chat template the project ships (``mllm/family/templates/NAME``)."""
    return (resources.files("mllm.family") / "templates" / name).read_text(encoding="utf-8")


class HFFamily(ModelFamily):
    """The generic HF-native family; subclasses set the class variables and the box convention."""

    template_file: ClassVar[str]  # shipped template, used when a checkpoint carries none
    keep_special_tokens: ClassVar[bool] = False  # decode answers with special tokens (P5)
    vision_path: ClassVar[str] = "model.vision_tower"  # module paths for ``model_parts``
    projector_path: ClassVar[str] = "model.multi_modal_projector"
    llm_path: ClassVar[str] = "model.language_model"

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
        processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        # swapped in afterwards: passed to from_pretrained, it leaks into the tokenizer's kwargs
        processor.image_processor = AutoImageProcessor.from_pretrained(
            model_dir, backend=IMAGE_BACKEND, trust_remote_code=trust_remote_code
        )
        if not processor.chat_template:
            processor.chat_template = shipped_template(self.template_file)
        model = AutoModelForImageTextToText.from_pretrained(
            model_dir,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        if model.config.model_type not in self.model_types:
            raise ValueError(
                f"{model_dir}: model_type {model.config.model_type!r} is not family "
                f"{self.name!r} (expects {self.model_types})"
            )
        if device is not None:
            model.to(device)
        return LoadedModel(model.eval(), processor, self)

    def set_pixel_limits(
        self, model_dir: str | os.PathLike, *, min_pixels: int | None, max_pixels: int | None
    ) -> dict:
        """The image processor's entry of ``processor_config.json`` (or ``preprocessor_config.json``)
        rewritten with ``pixel_limit_settings``, as a new file: the folder's files may be hard
        links to the source checkpoint. Checked by loading the processor back."""
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise ValueError(f"min_pixels {min_pixels} exceeds max_pixels {max_pixels}")
        model_dir = Path(model_dir)
        image_processor = AutoImageProcessor.from_pretrained(model_dir, backend=IMAGE_BACKEND)
        settings = self.pixel_limit_settings(image_processor, min_pixels, max_pixels)
        config_path, stored, entry = _image_processor_entry(model_dir)
        entry.update(settings)
        for key in SUPERSEDED_PIXEL_KEYS:  # they would override ``size`` on load
            entry.pop(key, None)
        write_json(config_path, stored)
        reloaded = AutoImageProcessor.from_pretrained(model_dir, backend=IMAGE_BACKEND)
        unapplied = {
            key: value
            for key, value in settings.items()
            if _jsonable(getattr(reloaded, key, None)) != value
        }
        if unapplied:
            raise ValueError(f"{config_path}: the processor does not take {unapplied}")
        return settings

    def pixel_limit_settings(
        self, image_processor, min_pixels: int | None, max_pixels: int | None
    ) -> dict:
        """Image-processor settings (JSON values) that bound an image's pixels."""
        raise ValueError(f"family {self.name!r} has no pixel limits to set")

    def save(self, loaded: LoadedModel, model: torch.nn.Module, model_dir: str | os.PathLike):
        """Full weights: a PEFT model is saved merged (from a copy; ``model`` keeps its adapters)."""
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        with atomic_directory(model_dir) as scratch:
            model.save_pretrained(scratch)
            loaded.processor.save_pretrained(scratch)

    def tokenizer(self, loaded: LoadedModel):
        return loaded.processor.tokenizer

    def model_parts(self, model: torch.nn.Module) -> dict[str, tuple[str, torch.nn.Module]]:
        """Vision tower, projector and LM; the LM's part holds ``lm_head`` too (it sits outside
        ``language_model``). Qwen's projector (``merger``) sits inside its vision tower: the
        trainer sets the projector after the vision tower, so ``tune_resampler`` decides it."""
        if hasattr(model, "get_base_model"):  # a PEFT wrapper
            model = model.get_base_model()
        llm = torch.nn.ModuleDict(
            {"language_model": model.get_submodule(self.llm_path), "lm_head": model.lm_head}
        )
        return {
            "vision": (self.vision_path, model.get_submodule(self.vision_path)),
            "projector": (self.projector_path, model.get_submodule(self.projector_path)),
            "llm": (f"{self.llm_path}+lm_head", llm),
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
        source = f"sample {sample_id}"
        messages = _structured_messages(conversations, len(images), system_prompt, source)
        encoded = self._encode(loaded, messages, images, add_generation_prompt=False)
        input_ids = encoded["input_ids"][0]  # [L]
        labels = torch.full_like(input_ids, IGNORE_INDEX)  # [L], pre-shifted
        terminators = torch.tensor(self.terminator_ids(loaded))
        for turn, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start = self._prompt_length(loaded, messages[:turn], images, input_ids, source)
            ends = torch.nonzero(torch.isin(input_ids[start:], terminators)).flatten()
            end = start + int(ends[0]) + 1 if len(ends) else len(input_ids)  # through eos
            labels[start - 1 : end - 1] = input_ids[start:end]
        sample = {key: value[0] for key, value in encoded.items() if key in TOKEN_KEYS}
        sample |= {key: value for key, value in encoded.items() if key not in TOKEN_KEYS}
        sample["labels"] = labels
        sample["truncated"] = len(input_ids) > max_length
        if sample["truncated"]:
            self._check_cut(loaded, input_ids, max_length, source)
            for key in (*TOKEN_KEYS, "labels"):
                if key in sample:
                    sample[key] = sample[key][:max_length]
            sample["labels"][-1] = IGNORE_INDEX  # its target token was cut
        return sample

    def collate(self, loaded: LoadedModel, samples: Sequence[Sample]) -> dict:
        pad_id = self.tokenizer(loaded).pad_token_id
        lengths = [len(sample["input_ids"]) for sample in samples]
        width = max(lengths)
        batch = {
            "input_ids": _right_pad([s["input_ids"] for s in samples], width, pad_id),  # [B, L]
            "attention_mask": torch.stack(
                [torch.arange(width) < length for length in lengths]
            ).long(),  # [B, L]
            "labels": _right_pad([s["labels"] for s in samples], width, IGNORE_INDEX),  # [B, L]
        }
        if "mm_token_type_ids" in samples[0]:  # zeros for padding (P3)
            batch["mm_token_type_ids"] = _right_pad(
                [s["mm_token_type_ids"] for s in samples], width, 0
            )
        image_keys = dict.fromkeys(key for sample in samples for key in sample)
        for key in image_keys:
            if key not in batch and key not in TOKEN_KEYS and key != "truncated":
                batch[key] = _cat_padded([sample[key] for sample in samples if key in sample])
        return batch

    def generation_inputs(
        self,
        loaded: LoadedModel,
        questions: Sequence[str],
        images: Sequence[Image.Image],
        *,
        system_prompt: str | None = None,
    ) -> dict:
        if len(questions) != len(images):
            raise ValueError(f"{len(questions)} questions for {len(images)} images")
        texts = [
            self._render(
                loaded,
                _structured_messages(
                    [{"role": "user", "content": question}], 1, system_prompt, f"question {index}"
                ),
                add_generation_prompt=True,
            )
            for index, question in enumerate(questions)
        ]
        return dict(
            loaded.processor(
                text=texts,
                images=[[image] for image in images],  # nested per sample (P2)
                padding=True,
                padding_side="left",
                return_tensors="pt",
            )
        )

    def terminator_ids(self, loaded: LoadedModel) -> list[int]:
        configured = loaded.model.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured]
        ids = [self.tokenizer(loaded).eos_token_id, *configured]
        return list(dict.fromkeys(i for i in ids if i is not None))

    def decode_answer(self, loaded: LoadedModel, new_tokens: torch.Tensor) -> str:
        tokens = new_tokens.tolist()
        terminators = set(self.terminator_ids(loaded))
        cut = next((i for i, token in enumerate(tokens) if token in terminators), len(tokens))
        pad_id = self.tokenizer(loaded).pad_token_id
        kept = [token for token in tokens[:cut] if token != pad_id]
        return (
            self.tokenizer(loaded)
            .decode(kept, skip_special_tokens=not self.keep_special_tokens)
            .strip()
        )

    def image_token_counts(self, loaded: LoadedModel, images: Sequence[Image.Image]) -> list[int]:
        """Tokens of each image's region in a prompt, its start/end tokens included."""
        region = torch.tensor(sorted(self.image_region_ids(loaded)))
        counts = []
        for index, image in enumerate(images):
            messages = _structured_messages(
                [{"role": "user", "content": ""}], 1, None, f"image {index}"
            )
            input_ids = self._encode(loaded, messages, [image], add_generation_prompt=False)[
                "input_ids"
            ][0]
            counts.append(int(torch.isin(input_ids, region).sum()))
        return counts

    def image_region_ids(self, loaded: LoadedModel) -> set[int]:
        """Ids of the tokens an image expands into (placeholders and their delimiters)."""
        config = loaded.model.config
        names = ("image_token_id", "vision_start_token_id", "vision_end_token_id")
        ids = {getattr(config, name) for name in names if getattr(config, name, None) is not None}
        ids |= set(getattr(loaded.processor, "image_token_ids", ()))  # InternVL: <img>, </img>
        return ids

    def cache_identity(self, loaded: LoadedModel) -> dict:
        processor = loaded.processor
        image_processor = processor.image_processor
        template = processor.chat_template
        shipped = shipped_template(self.template_file)
        return {
            "family": self.name,
            "processor_class": type(processor).__name__,
            "image_processor_class": type(image_processor).__name__,
            "image_backend": getattr(image_processor, "backend", None),
            "pixel_limits": {
                key: _jsonable(getattr(image_processor, key))
                for key in PIXEL_LIMIT_KEYS
                if getattr(image_processor, key, None) is not None
            },
            "tokenizer_class": type(processor.tokenizer).__name__,
            "chat_template_source": (
                f"shipped:{self.template_file}" if template == shipped else "checkpoint"
            ),
            "chat_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        }

    # -- helpers ------------------------------------------------------------------------------
    def _render(self, loaded: LoadedModel, messages: list[dict], *, add_generation_prompt: bool):
        return loaded.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _encode(self, loaded, messages, images, *, add_generation_prompt: bool) -> dict:
        """Processor outputs of one conversation (batch of 1) with its images in order."""
        text = self._render(loaded, messages, add_generation_prompt=add_generation_prompt)
        return loaded.processor(
            text=[text], images=[list(images)] if images else None, return_tensors="pt"
        )

    def _prompt_length(self, loaded, prefix: list[dict], images, input_ids, source: str) -> int:
        """Tokens of ``prefix`` + the generation prompt; they must start ``input_ids``."""
        shown = sum(
            1 for message in prefix for part in message["content"] if part["type"] == "image"
        )
        prompt_ids = self._encode(loaded, prefix, images[:shown], add_generation_prompt=True)[
            "input_ids"
        ][0]
        if not torch.equal(input_ids[: len(prompt_ids)], prompt_ids):
            raise DataError(
                source,
                "the chat template renders the prompt differently from the start of the "
                "conversation, so assistant tokens cannot be found by prompt length",
            )
        return len(prompt_ids)

    def _check_cut(self, loaded, input_ids: torch.Tensor, max_length: int, source: str) -> None:
        region = torch.tensor(sorted(self.image_region_ids(loaded)))
        cut_images = torch.nonzero(torch.isin(input_ids[max_length:], region)).flatten()
        if len(cut_images):
            raise DataError(
                source,
                f"{len(input_ids)} tokens; a cut at max_length {max_length} falls inside image "
                f"tokens (token {max_length + int(cut_images[0])} is an image token): raise "
                f"max_length or lower the processor's pixel limits",
            )

    # -- grounding ----------------------------------------------------------------------------
    def _first_four_numbers(self, answer: str, pattern: str) -> tuple[float, ...] | None:
        match = re.search(pattern, answer)
        return tuple(float(value) for value in match.groups()) if match else None


def _image_processor_entry(model_dir: Path) -> tuple[Path, dict, dict]:
    """(file, its JSON, the image processor's settings inside it): transformers 5 nests them in
    ``processor_config.json``; older checkpoints keep a flat ``preprocessor_config.json``."""
    nested = model_dir / "processor_config.json"
    if nested.is_file():
        stored = json.loads(nested.read_text())
        if isinstance(stored.get("image_processor"), dict):
            return nested, stored, stored["image_processor"]
    flat = model_dir / "preprocessor_config.json"
    if not flat.is_file():
        raise ValueError(f"{model_dir}: no image-processor settings to set pixel limits in")
    stored = json.loads(flat.read_text())
    return flat, stored, stored


def _edge_pixel_limits(
    self, image_processor, min_pixels: int | None, max_pixels: int | None
) -> dict:
    """Qwen-VL's ``size``: ``shortest_edge``/``longest_edge`` count pixels (smart_resize's
    min/max_pixels), not edge lengths; a limit left unset keeps the checkpoint's."""
    size = dict(image_processor.size)
    longest = max_pixels if max_pixels is not None else size["longest_edge"]
    shortest = min_pixels if min_pixels is not None else size["shortest_edge"]
    if shortest > longest:
        raise ValueError(f"min_pixels {shortest} exceeds max_pixels {longest}")
    return {"size": {"longest_edge": longest, "shortest_edge": shortest}}


class GridBoxFamily(HFFamily):
    """Boxes as integers on a ``grid`` relative to the original image (Qwen3-VL, InternVL)."""

    grid: ClassVar[int] = 1000  # coordinates run 0..grid inclusive

    def _to_grid(self, box: Box, image: Image.Image) -> list[int]:
        width, height = image.size
        scales = (width, height, width, height)
        return [
            min(self.grid, max(0, round(value / scale * self.grid)))
            for value, scale in zip(box, scales, strict=True)
        ]

    def _from_grid(self, values: Sequence[float], image: Image.Image) -> Box:
        width, height = image.size
        x0, y0, x1, y1 = (min(self.grid, max(0.0, value)) / self.grid for value in values)
        return (x0 * width, y0 * height, x1 * width, y1 * height)


def _bbox_json(label: str, values: Sequence[int]) -> str:
    return json.dumps({"bbox_2d": list(values), "label": label}, ensure_ascii=False)


_BBOX_2D = r'"bbox_2d"\s*:\s*' + _FOUR_NUMBERS


class Qwen2_5_VLFamily(HFFamily):
    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    lora_target_regex = r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"
    box_convention = (
        'JSON {"bbox_2d": [x1, y1, x2, y2], "label": ...}, integer pixels of the '
        "processor-resized image (multiples of patch × merge within the pixel limits)"
    )
    template_file = "qwen2_5_vl.jinja"
    vision_path = "model.visual"
    projector_path = "model.visual.merger"
    pixel_limit_settings = _edge_pixel_limits

    def resized_size(self, loaded: LoadedModel, image: Image.Image) -> tuple[int, int]:
        """(width, height) the processor resizes ``image`` to: the frame of this family's boxes."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        image_processor = loaded.processor.image_processor
        width, height = image.size
        resized_height, resized_width = smart_resize(
            height,
            width,
            factor=image_processor.patch_size * image_processor.merge_size,
            min_pixels=image_processor.size["shortest_edge"],
            max_pixels=image_processor.size["longest_edge"],
        )
        return resized_width, resized_height

    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        width, height = image.size
        resized_width, resized_height = self.resized_size(loaded, image)
        scales = (resized_width / width, resized_height / height) * 2
        limits = (resized_width, resized_height) * 2
        values = [
            min(limit, max(0, round(value * scale)))
            for value, scale, limit in zip(box, scales, limits, strict=True)
        ]
        return _bbox_json(expression, values)

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        values = self._first_four_numbers(answer, _BBOX_2D)
        if values is None:
            return None
        width, height = image.size
        resized_width, resized_height = self.resized_size(loaded, image)
        scales = (width / resized_width, height / resized_height) * 2
        limits = (resized_width, resized_height) * 2
        return tuple(
            min(limit, max(0.0, value)) * scale
            for value, scale, limit in zip(values, scales, limits, strict=True)
        )


class Qwen3VLFamily(GridBoxFamily):
    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    lora_target_regex = Qwen2_5_VLFamily.lora_target_regex
    box_convention = (
        'JSON {"bbox_2d": [x1, y1, x2, y2], "label": ...}, integers on a 0–1000 grid relative '
        "to the image (independent of the resize)"
    )
    template_file = "qwen3_vl.jinja"
    vision_path = Qwen2_5_VLFamily.vision_path
    projector_path = Qwen2_5_VLFamily.projector_path
    pixel_limit_settings = _edge_pixel_limits

    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        return _bbox_json(expression, self._to_grid(box, image))

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        values = self._first_four_numbers(answer, _BBOX_2D)
        return None if values is None else self._from_grid(values, image)


class InternVLFamily(GridBoxFamily):
    name = "internvl"
    model_types = ("internvl",)
    lora_target_regex = r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"
    box_convention = (
        "<ref>label</ref><box>[[x1, y1, x2, y2]]</box>, integers on a 0–1000 grid relative to "
        "the original image; decoded with special tokens kept"
    )
    template_file = "internvl.jinja"
    keep_special_tokens = True  # <ref>/<box> are special tokens (P5)

    def pixel_limit_settings(
        self, image_processor, min_pixels: int | None, max_pixels: int | None
    ) -> dict:
        """InternVL cuts an image into tiles of ``size`` (plus a thumbnail when there are two or
        more): the limits become tile counts, ``max_pixels`` rounded down, ``min_pixels`` up."""
        tile = image_processor.size["height"] * image_processor.size["width"]
        most = image_processor.max_patches if max_pixels is None else max(1, max_pixels // tile)
        least = image_processor.min_patches if min_pixels is None else math.ceil(min_pixels / tile)
        if least > most:
            raise ValueError(
                f"min_pixels {min_pixels} needs {least} tiles of {tile} pixels, more than the "
                f"{most} max_pixels allows"
            )
        return {"crop_to_patches": True, "min_patches": max(1, least), "max_patches": most}

    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        x0, y0, x1, y1 = self._to_grid(box, image)
        return f"<ref>{expression}</ref><box>[[{x0}, {y0}, {x1}, {y1}]]</box>"

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        # "[[…]]" after <box>, or the form a decode without special tokens leaves (P5)
        values = self._first_four_numbers(answer, r"\[" + _FOUR_NUMBERS)
        return None if values is None else self._from_grid(values, image)


class LlavaOnevisionFamily(HFFamily):
    name = "llava_onevision"
    model_types = ("llava_onevision",)
    lora_target_regex = r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"
    box_convention = (
        "[x1, y1, x2, y2] as decimals (3 places) on 0–1 relative to the original image: the "
        "workflow's own choice, OneVision documents none (LLaVA-1.5 data use 0–1 floats)"
    )
    template_file = "llava_onevision.jinja"

    def model_parts(self, model: torch.nn.Module) -> dict[str, tuple[str, torch.nn.Module]]:
        """The projector's part also holds ``image_newline`` (a bare parameter of ``model.model``)."""
        parts = super().model_parts(model)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        projector = torch.nn.Module()
        projector.multi_modal_projector = parts["projector"][1]
        projector.register_parameter("image_newline", base.model.image_newline)
        parts["projector"] = (f"{self.projector_path}+model.image_newline", projector)
        return parts

    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        width, height = image.size
        scales = (width, height) * 2
        values = (
            min(1.0, max(0.0, value / scale)) for value, scale in zip(box, scales, strict=True)
        )
        return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        values = self._first_four_numbers(answer, _FOUR_NUMBERS)
        if values is None:
            return None
        width, height = image.size
        scales = (width, height) * 2
        return tuple(
            min(1.0, max(0.0, value)) * scale for value, scale in zip(values, scales, strict=True)
        )


# Image-region tokens the Idefics3/SmolVLM processors write as literal text, so a checkpoint's
# tokenizer must hold them: each tile's position (up to 6 × 6 tiles) and the global view's tag.
IDEFICS3_LITERAL_IMAGE_TOKENS = (
    "<global-img>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)


class Idefics3Family(GridBoxFamily):
    """Idefics3: a SigLIP tower (``model.vision_model``), a pixel-shuffle connector and a Llama
    LM at ``model.text_model``. An image is resized to a longest edge of ``size``, split into
    tiles of ``max_image_size`` (each ``<fake_token_around_image><row_i_col_j>`` + its image
    tokens) and followed by a global view (``<global-img>``). Idefics3 documents no box format,
    so the workflow declares one: plain text ``[x1, y1, x2, y2]``, integers on a 0–1000 grid
    of the original image, as Qwen3-VL's grid."""

    name = "idefics3"
    model_types = ("idefics3",)
    lora_target_regex = r"model\.text_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"
    box_convention = (
        "[x1, y1, x2, y2] as plain text, integers on a 0–1000 grid relative to the original "
        "image: the workflow's own choice, Idefics3 documents none"
    )
    template_file = "idefics3.jinja"
    vision_path = "model.vision_model"
    projector_path = "model.connector"
    llm_path = "model.text_model"

    def image_region_ids(self, loaded: LoadedModel) -> set[int]:
        """The image tokens, the tile delimiters, the 36 tile-position tokens and <global-img>
        (the processor writes the last two by their literal text)."""
        processor = loaded.processor
        tokens = [processor.image_token, processor.fake_image_token, *IDEFICS3_LITERAL_IMAGE_TOKENS]
        return set(processor.tokenizer.convert_tokens_to_ids(tokens))

    def pixel_limit_settings(
        self, image_processor, min_pixels: int | None, max_pixels: int | None
    ) -> dict:
        """Every image is resized (up or down) to a longest edge of ``size.longest_edge``, then cut
        into square tiles of ``max_image_size.longest_edge``: ``max_pixels`` becomes that longest
        edge, rounded down to whole tiles (at least one), so an image never exceeds it. There is
        no lower bound to set: a narrow image stays narrow."""
        if min_pixels is not None:
            raise ValueError(
                f"family {self.name!r} has no min_pixels: it resizes every image's longest edge "
                "to size.longest_edge; set max_pixels only"
            )
        if max_pixels is None:
            return {}
        tile = image_processor.max_image_size["longest_edge"]
        edge = max(1, math.isqrt(max_pixels) // tile) * tile
        return {"size": {"longest_edge": edge}}

    def box_answer(self, loaded: LoadedModel, expression: str, box: Box, image: Image.Image) -> str:
        x0, y0, x1, y1 = self._to_grid(box, image)
        return f"[{x0}, {y0}, {x1}, {y1}]"

    def parse_box(self, loaded: LoadedModel, answer: str, image: Image.Image) -> Box | None:
        values = self._first_four_numbers(answer, _FOUR_NUMBERS)
        return None if values is None else self._from_grid(values, image)


class SmolVLMFamily(Idefics3Family):
    """SmolVLM: Idefics3's architecture, module paths, tiles and box convention; its processor
    needs torchvision (a video processor) and ``num2words``, and takes images nested per sample
    (P2), as every family here is given them."""

    name = "smolvlm"
    model_types = ("smolvlm",)
    template_file = "smolvlm.jinja"


def _structured_messages(
    conversations: Sequence[Message], image_count: int, system_prompt: str | None, source: str
) -> list[dict]:
    """Chat-template messages with typed parts: each ``<image>`` tag becomes an image part;
    without tags, every image goes before the first user turn's text."""
    tags = sum(message["content"].count(IMAGE_TAG) for message in conversations)
    if tags and tags != image_count:
        raise DataError(source, f"{tags} {IMAGE_TAG} tags for {image_count} images")
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    untagged_images = 0 if tags else image_count
    for message in conversations:
        if message["role"] not in ("system", "user", "assistant"):
            raise DataError(source, f"unknown role {message['role']!r}")
        parts = []
        if message["role"] == "user" and untagged_images:
            parts += [{"type": "image"}] * untagged_images
            untagged_images = 0
        for index, text in enumerate(message["content"].split(IMAGE_TAG)):
            if index:
                parts.append({"type": "image"})
                text = text.removeprefix("\n")  # the template lays out the image part itself
            if text:
                parts.append({"type": "text", "text": text})
        messages.append({"role": message["role"], "content": parts})
    if untagged_images:
        raise DataError(source, f"{image_count} images but no user turn to put them in")
    return messages


def _right_pad(rows: Sequence[torch.Tensor], width: int, value: int) -> torch.Tensor:
    """[B, width] from 1-D rows, ``value`` after each row's end."""
    padded = torch.full((len(rows), width), value, dtype=rows[0].dtype)
    for index, row in enumerate(rows):
        padded[index, : len(row)] = row
    return padded


def _cat_padded(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenation along dim 0, zero-padding the other dims to the largest (LLaVA-OV's
    [1, tiles, 3, H, W] rows differ in tiles; the model reads only each image's own)."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for tensor in tensors:
        grown = tensor.new_zeros((tensor.shape[0], *shape))
        grown[tuple(slice(0, size) for size in tensor.shape)] = tensor
        padded.append(grown)
    return torch.cat(padded)


def _jsonable(value):
    """Processor settings (SizeDict, tuples…) as plain JSON values."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
