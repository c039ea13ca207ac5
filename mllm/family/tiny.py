"""Tiny random-weight checkpoints of the HF families, built offline (no hub), for tests.

Each builder writes a folder that ``AutoModelForImageTextToText`` / ``AutoProcessor`` (and so
``HFFamily.load``) read like a real checkpoint: a ≤ 2-layer model of hidden size 64 (the Qwen
M-RoPE section (4, 2, 2) covers head_dim / 2) with the real ``spatial_merge_size`` 2, a
byte-level BPE trained on a few hundred generated sentences with the family's special tokens as
named attributes, an image processor with small pixel limits and the project's shipped chat
template. Building twice gives byte-identical folders (seeded weights, sorted JSON).

    python -m mllm.family.tiny qwen2_5_vl OUT_DIR
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    Idefics3Config,
    Idefics3Processor,
    InternVLConfig,
    InternVLProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
    SmolVLMConfig,
    SmolVLMProcessor,
)
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)
from transformers.models.llava_onevision.video_processing_llava_onevision import (
    LlavaOnevisionVideoProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

from mllm.atomic import atomic_directory
from mllm.family.hf import IDEFICS3_LITERAL_IMAGE_TOKENS, shipped_template

VOCAB_SIZE = 640
SEED = 0

# The ChatML tokens every family here uses; eos is <|im_end|>, pad <|endoftext|>.
CHATML_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VL_TOKENS = {  # name -> token: the attributes the Qwen-VL processors read
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}
QWEN_BOX_TOKENS = ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>")
INTERNVL_TOKENS = {  # the attributes InternVLProcessor reads (it has no defaults)
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
INTERNVL_BOX_TOKENS = ("<ref>", "</ref>", "<box>", "</box>")
LLAVA_TOKENS = {"image_token": "<image>", "video_token": "<video>"}
# The Idefics3/SmolVLM processors read these by their literal text; <end_of_utterance> ends
# each turn (eos); the 36 tile-position tokens must exist (MODEL_FAMILIES.md)
IDEFICS3_TOKENS = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    *IDEFICS3_LITERAL_IMAGE_TOKENS,
)

_COLOURS = ("red", "blue", "green", "white", "black", "yellow", "brown", "grey")
_OBJECTS = ("dog", "cat", "car", "person", "chair", "table", "bus", "bird", "cup", "tree")
_PLACES = ("on the left", "on the right", "in the middle", "near the top", "at the bottom")


def corpus() -> list[str]:
    """A few hundred sentences with the words, digits and JSON the tests' answers use."""
    sentences = [
        f"There is a {colour} {thing} {place} of the image."
        for colour, thing, place in itertools.product(_COLOURS, _OBJECTS, _PLACES)
    ]
    sentences += [
        f'{{"bbox_2d": [{a}, {b}, {a + 37}, {b + 113}], "label": "the {_OBJECTS[i % 10]}"}}'
        for i, (a, b) in enumerate(itertools.product(range(0, 1000, 97), repeat=2))
    ]
    sentences += ["Is there a dog? Yes. Is there a cat? No.", "Describe the image in detail."]
    sentences += ["You are a helpful assistant.", "user", "assistant", "system"]
    return sentences


def build_tokenizer(
    named_tokens: dict[str, str],
    extra_tokens: tuple[str, ...] = (),
    *,
    eos_token: str = "<|im_end|>",
):
    """A byte-level BPE (vocab ``VOCAB_SIZE``) with ChatML, ``named_tokens`` (each also a named
    attribute, v5 ``extra_special_tokens``) and ``extra_tokens`` as special tokens, ids first."""
    special = [*CHATML_TOKENS, *named_tokens.values(), *extra_tokens]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos_token,
        pad_token="<|endoftext|>",
        extra_special_tokens={**named_tokens, **{token: token for token in extra_tokens}},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    return tokenizer


def _token_ids(tokenizer) -> dict:
    """The ids every text config and generation config carries (P11)."""
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos = tokenizer.eos_token_id
    return {"bos_token_id": pad, "eos_token_id": eos, "pad_token_id": pad}


def _text_config(tokenizer, **rest) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        **_token_ids(tokenizer),
        **rest,
    )


def _vit_config(**rest) -> dict:
    """The tiny ViT tower (InternViT, SigLIP) of the families whose vision config takes these
    keys: 2 layers of width 32."""
    return dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **rest
    )


def _qwen_image_processor(patch_size: int) -> Qwen2VLImageProcessorPil:
    factor = patch_size * 2  # patch × merge: one image token
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": 2 * 2 * factor * factor, "longest_edge": 16 * factor * factor},
    )


def qwen2_5_vl() -> tuple[object, object]:
    """(model, processor) of a tiny Qwen2.5-VL: 2 + 2 layers, 4–16 image tokens per image."""
    tokenizer = build_tokenizer(QWEN_VL_TOKENS, QWEN_BOX_TOKENS)
    config = Qwen2_5_VLConfig(
        text_config=_text_config(
            tokenizer,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],
            },
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        **_qwen_token_ids(tokenizer),
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=_qwen_image_processor(14),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2),
        chat_template=shipped_template("qwen2_5_vl.jinja"),
    )
    return _model(config), processor


def _qwen_token_ids(tokenizer) -> dict[str, int]:
    """The config's ``image_token_id``, ``video_token_id``, ``vision_{start,end}_token_id``."""
    return {
        f"{name}_id": tokenizer.convert_tokens_to_ids(token)
        for name, token in QWEN_VL_TOKENS.items()
    }


def qwen3_vl() -> tuple[object, object]:
    """(model, processor) of a tiny Qwen3-VL: 2 + 2 layers (deepstack at vision layer 1)."""
    tokenizer = build_tokenizer(QWEN_VL_TOKENS, QWEN_BOX_TOKENS)
    config = Qwen3VLConfig(
        text_config=_text_config(
            tokenizer,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[1],
        ),
        **_qwen_token_ids(tokenizer),
    )
    processor = Qwen3VLProcessor(
        image_processor=_qwen_image_processor(16),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2),
        chat_template=shipped_template("qwen3_vl.jinja"),
    )
    return _model(config), processor


def internvl() -> tuple[object, object]:
    """(model, processor) of a tiny InternVL-hf: 32-px tiles of 2 × 2 patches, 4 tokens each
    after the 0.5 pixel shuffle, up to 2 tiles + thumbnail per image."""
    tokenizer = build_tokenizer(INTERNVL_TOKENS, INTERNVL_BOX_TOKENS)
    image_size, patch_size, downsample = 32, 8, 0.5
    config = InternVLConfig(
        text_config=dict(model_type="qwen2", **_text_config(tokenizer)),
        vision_config=_vit_config(
            image_size=[image_size, image_size], patch_size=[patch_size, patch_size]
        ),
        image_token_id=tokenizer.convert_tokens_to_ids(INTERNVL_TOKENS["context_image_token"]),
        image_seq_length=int((image_size // patch_size) ** 2 * downsample**2),
        downsample_ratio=downsample,
        tie_word_embeddings=False,
    )
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": image_size, "width": image_size},
            crop_to_patches=True,
            min_patches=1,
            max_patches=2,
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size={"height": image_size, "width": image_size}),
        image_seq_length=config.image_seq_length,
        chat_template=shipped_template("internvl.jinja"),
    )
    return _model(config), processor


def llava_onevision() -> tuple[object, object]:
    """(model, processor) of a tiny LLaVA-OneVision: a 2-layer SigLIP on 16-px tiles of 2 × 2
    patches, anyres up to 2 × 2 tiles, the "full" feature strategy of SigLIP (P7)."""
    tokenizer = build_tokenizer(LLAVA_TOKENS)
    image_size, patch_size = 16, 8
    pinpoints = [[16, 16], [16, 32], [32, 16], [32, 32]]
    config = LlavaOnevisionConfig(
        text_config=dict(model_type="qwen2", **_text_config(tokenizer)),
        vision_config=_vit_config(
            model_type="siglip_vision_model", image_size=image_size, patch_size=patch_size
        ),
        image_token_index=tokenizer.convert_tokens_to_ids(LLAVA_TOKENS["image_token"]),
        video_token_index=tokenizer.convert_tokens_to_ids(LLAVA_TOKENS["video_token"]),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(
            size={"height": image_size, "width": image_size}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(
            size={"height": image_size, "width": image_size}
        ),
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=shipped_template("llava_onevision.jinja"),
    )
    return _model(config), processor


def idefics3() -> tuple[object, object]:
    """(model, processor) of a tiny Idefics3 (no video processor, so no torchvision)."""
    tokenizer = build_tokenizer({}, ("<|begin_of_text|>", *IDEFICS3_TOKENS), **_IDEFICS3_EOS)
    config = Idefics3Config(**_idefics3_config(tokenizer))
    image_processor = Idefics3ImageProcessorPil(**_idefics3_image_sizes(), do_image_splitting=True)
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=_IDEFICS3_IMAGE_SEQ_LEN,
        chat_template=shipped_template("idefics3.jinja"),
    )
    return _model(config), processor


def smolvlm() -> tuple[object, object]:
    """(model, processor) of a tiny SmolVLM: Idefics3's architecture and sizes, a ChatML-started
    template, a video processor (torchvision) and ``num2words`` in its processor."""
    tokenizer = build_tokenizer({}, IDEFICS3_TOKENS, **_IDEFICS3_EOS)
    config = SmolVLMConfig(**_idefics3_config(tokenizer))
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessorPil(
            **_idefics3_image_sizes(), do_image_splitting=True
        ),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(**_idefics3_image_sizes()),
        image_seq_len=_IDEFICS3_IMAGE_SEQ_LEN,
        chat_template=shipped_template("smolvlm.jinja"),
    )
    return _model(config), processor


# Idefics3/SmolVLM: a 2-layer SigLIP on 16-px tiles of 4 × 4 patches, 4 tokens per tile after the
# scale-2 pixel shuffle; images resized to a longest edge of 32, so at most 2 × 2 tiles plus the
# global view (P7: the tile is the vision ``image_size``, image_seq_len its token count).
_IDEFICS3_TILE, _IDEFICS3_PATCH, _IDEFICS3_SCALE = 16, 4, 2
_IDEFICS3_IMAGE_SEQ_LEN = (_IDEFICS3_TILE // _IDEFICS3_PATCH) ** 2 // _IDEFICS3_SCALE**2
_IDEFICS3_EOS = {"eos_token": "<end_of_utterance>"}


def _idefics3_config(tokenizer) -> dict:
    return dict(
        text_config=dict(model_type="llama", **_text_config(tokenizer)),
        vision_config=_vit_config(image_size=_IDEFICS3_TILE, patch_size=_IDEFICS3_PATCH),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=_IDEFICS3_SCALE,
        pad_token_id=tokenizer.pad_token_id,  # deprecated on the top config; text_config's is read
    )


def _idefics3_image_sizes() -> dict:
    return dict(
        size={"longest_edge": 2 * _IDEFICS3_TILE},
        max_image_size={"longest_edge": _IDEFICS3_TILE},
    )


def _model(config):
    """The seeded random model of ``config``, its generation config carrying the token ids."""
    torch.manual_seed(SEED)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(**_token_ids_of(config.get_text_config()))
    return model.eval()


def _token_ids_of(text_config) -> dict:
    return {
        name: getattr(text_config, name)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id")
    }


BUILDERS: dict[str, Callable[[], tuple[object, object]]] = {
    "qwen2_5_vl": qwen2_5_vl,
    "qwen3_vl": qwen3_vl,
    "internvl": internvl,
    "llava_onevision": llava_onevision,
    "idefics3": idefics3,
    "smolvlm": smolvlm,
}


def build(family: str, out_dir: str | os.PathLike) -> Path:
    """Write the tiny checkpoint of ``family`` to ``out_dir`` (atomic); returns the folder."""
    if family not in BUILDERS:
        raise ValueError(f"no tiny builder for family {family!r}; known: {sorted(BUILDERS)}")
    model, processor = BUILDERS[family]()
    with atomic_directory(out_dir) as scratch:
        model.save_pretrained(scratch)
        processor.save_pretrained(scratch)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(BUILDERS))
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print(build(args.family, args.out_dir))


if __name__ == "__main__":
    main()
