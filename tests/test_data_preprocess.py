"""Training samples (labels, image bounds, truncation, errors) and generation prompts."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mllm.data.errors import DataError
from mllm.data.images import ImageLoader, ImageProcessor
from mllm.data.preprocess import (
    IGNORE_INDEX,
    build_generation_inputs,
    preprocess_conversation,
    read_sft_record,
)
from mllm.demo.tokenizer import build_tokenizer

QUERY_NUM = 4
SMALL = (20, 20)  # not sliced at scale_resolution 28
WIDE = (60, 30)  # sliced into a (2, 1) grid at scale_resolution 28


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(
        ["Is there a dog in the image?", "A dog sits on a red sofa."] * 50, vocab_size=1500
    )


@pytest.fixture(scope="module")
def processor():
    return ImageProcessor(patch_size=14, scale_resolution=28)


def conversation(answer: str = "Yes", question: str = "<image>\nIs there a dog?") -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def preprocess(
    tokenizer, processor, conversations, images, max_length: int = 512, sample_id: object = 17
):
    return preprocess_conversation(
        conversations,
        images,
        tokenizer,
        processor,
        query_num=QUERY_NUM,
        max_length=max_length,
        sample_id=sample_id,
    )


def preprocess_sft_record(record, tokenizer, processor, *, image_folder=None, max_length=512):
    """A record read (``read_sft_record``) and preprocessed, as the SFT dataset does."""
    conversations, images = read_sft_record(record, ImageLoader(image_folder, max_images=0))
    return preprocess(
        tokenizer, processor, conversations, images, max_length, record.get("id", "?")
    )


def token_id(tokenizer, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


def test_yes_no_answer_supervises_newline_answer_and_end_pre_shifted(tokenizer, processor):
    sample = preprocess(tokenizer, processor, conversation("Yes"), [Image.new("RGB", SMALL)])
    ids, labels = sample["input_ids"], sample["labels"]
    # The sequence ends "... <|im_start|> assistant \n Yes <|im_end|>"; the last four positions are
    # assistant (L-4), \n (L-3), Yes (L-2), <|im_end|> (L-1).
    length = len(ids)
    assert tokenizer.convert_ids_to_tokens(ids[-5:].tolist()) == [
        "<|im_start|>",
        "assistant",
        "Ċ",
        "Yes",
        "<|im_end|>",
    ]
    expected = torch.full_like(ids, IGNORE_INDEX)
    expected[length - 4] = token_id(tokenizer, "Ċ")  # logits at "assistant" predict "\n"
    expected[length - 3] = token_id(tokenizer, "Yes")
    expected[length - 2] = token_id(tokenizer, "<|im_end|>")
    assert torch.equal(labels, expected)
    assert torch.equal(sample["position_ids"], torch.arange(length))


def test_longer_answer_supervises_exactly_its_tokens(tokenizer, processor):
    answer = "A dog sits on a red sofa."
    sample = preprocess(tokenizer, processor, conversation(answer), [Image.new("RGB", SMALL)])
    answer_ids = tokenizer(f"\n{answer}<|im_end|>", add_special_tokens=False)["input_ids"]
    supervised = sample["labels"][sample["labels"] != IGNORE_INDEX].tolist()
    assert supervised == answer_ids
    start = len(sample["input_ids"]) - len(answer_ids)  # first supervised token
    assert torch.equal(sample["labels"][start - 1 : -1], sample["input_ids"][start:])


def test_image_bounds_point_at_query_num_placeholder_tokens(tokenizer, processor):
    sample = preprocess(tokenizer, processor, conversation(), [Image.new("RGB", WIDE)])
    ids, bounds = sample["input_ids"], sample["image_bound"]
    assert bounds.dtype == torch.long and bounds.shape == (3, 2)  # source + 2 slices
    assert len(sample["pixel_values"]) == 3 and sample["tgt_sizes"].shape == (3, 2)
    opening = ["<image>", "<slice>", "<slice>"]
    closing = ["</image>", "</slice>", "</slice>"]
    for (start, end), open_tag, close_tag in zip(bounds.tolist(), opening, closing, strict=True):
        assert end - start == QUERY_NUM
        assert (ids[start:end] == token_id(tokenizer, "<unk>")).all()
        assert tokenizer.convert_ids_to_tokens([ids[start - 1].item(), ids[end].item()]) == [
            open_tag,
            close_tag,
        ]
    for strip, (h, w) in zip(sample["pixel_values"], sample["tgt_sizes"].tolist(), strict=True):
        assert strip.shape == (3, 14, h * w * 14)


def test_missing_image_tag_puts_the_placeholder_before_the_first_user_turn(tokenizer, processor):
    tagged = preprocess(tokenizer, processor, conversation(), [Image.new("RGB", SMALL)])
    untagged = preprocess(
        tokenizer, processor, conversation(question="Is there a dog?"), [Image.new("RGB", SMALL)]
    )
    assert torch.equal(tagged["input_ids"], untagged["input_ids"])
    text = tokenizer.decode(untagged["input_ids"])
    assert "<|im_start|>user\n<image>" + "<unk>" * QUERY_NUM + "</image>\nIs there a dog?" in text


def test_text_only_sample_has_no_image_pieces(tokenizer, processor):
    sample = preprocess(tokenizer, processor, conversation(question="Hello?"), [])
    assert sample["image_bound"].shape == sample["tgt_sizes"].shape == (0, 2)
    assert sample["pixel_values"] == [] and (sample["labels"] != IGNORE_INDEX).sum() == 3


def test_truncation_keeps_max_length_tokens(tokenizer, processor):
    long_answer, image = conversation("A dog sits on a red sofa. " * 8), [Image.new("RGB", SMALL)]
    full = preprocess(tokenizer, processor, long_answer, image)
    cut = preprocess(tokenizer, processor, long_answer, image, max_length=60)
    assert len(cut["input_ids"]) == 60 < len(full["input_ids"])
    assert torch.equal(cut["input_ids"], full["input_ids"][:60])
    assert torch.equal(cut["labels"], full["labels"][:60])


@pytest.mark.parametrize(
    ("conversations", "images", "max_length", "problem"),
    [
        ([{"role": "user", "content": "<image>\nHi"}], [SMALL], 512, "no assistant turn"),
        (
            conversation(question="<image>\n<image>\nSame?"),
            [SMALL],
            512,
            "user turns have 2 <image> tags but the record has 1 images",
        ),
        (
            conversation(question="Is there a dog?"),
            [SMALL, SMALL],
            512,
            "0 <image> tags but the record has 2 images",
        ),
        (conversation(), [WIDE], 20, "too long.*cut through the image placeholder"),
        (
            conversation(question="<image>\n" + "Is there a dog? " * 10),
            [SMALL],
            40,
            "too long: no supervised token",
        ),
        (conversation("<image>"), [SMALL], 512, "image placeholders do not match the images"),
    ],
)
def test_bad_samples_raise_naming_the_sample(
    tokenizer, processor, conversations, images, max_length, problem
):
    images = [Image.new("RGB", size) for size in images]
    with pytest.raises(DataError, match=f"^sample 17: .*{problem}"):
        preprocess(tokenizer, processor, conversations, images, max_length=max_length)


def test_undecodable_image_in_a_record_names_the_sample_and_file(tokenizer, processor, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    record = {"id": 99, "image": "broken.jpg", "conversations": conversation()}
    with pytest.raises(DataError, match=r"^sample 99: cannot decode image file .*broken\.jpg"):
        preprocess_sft_record(record, tokenizer, processor, image_folder=tmp_path)


@pytest.mark.parametrize(
    ("conversations", "problem"),
    [
        (None, "no 'conversations' field"),
        ("Is there a dog?", "'conversations' must be a list of turns, got str"),
        (
            [{"role": "user"}],
            r"conversations\[0\] must be an object with string 'role' and 'content'",
        ),
        (
            [conversation()[0], "Yes"],
            r"conversations\[1\] must be an object with string 'role' and 'content'",
        ),
    ],
    ids=["missing", "not-a-list", "turn-without-content", "turn-not-an-object"],
)
def test_malformed_conversations_name_the_sample_and_field(
    tokenizer, processor, conversations, problem
):
    record = {"id": 5} if conversations is None else {"id": 5, "conversations": conversations}
    with pytest.raises(DataError, match=f"^sample 5: {problem}"):
        preprocess_sft_record(record, tokenizer, processor)


def test_sft_record_loads_its_image(tokenizer, processor, tmp_path):
    Image.new("RGB", WIDE).save(tmp_path / "a.png")
    record = json.loads(json.dumps({"id": 1, "image": "a.png", "conversations": conversation()}))
    sample = preprocess_sft_record(record, tokenizer, processor, image_folder=tmp_path)
    assert sample["image_bound"].shape == (3, 2)


def test_generation_inputs_are_left_padded_with_shifted_bounds(tokenizer, processor):
    questions = ["Is there a dog?", "Describe the image in detail, please."]
    batch = build_generation_inputs(
        questions,
        [Image.new("RGB", WIDE), Image.new("RGB", SMALL)],
        tokenizer,
        processor,
        query_num=QUERY_NUM,
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(dim=1)
    assert ids.shape == mask.shape and lengths[0] < lengths[1] == ids.shape[1]
    pad = ids.shape[1] - lengths[0]
    assert (
        (ids[0, :pad] == tokenizer.pad_token_id).all()
        and (mask[0, :pad] == 0).all()
        and (mask[0, pad:] == 1).all()
    )
    for row, bounds in enumerate(batch["image_bound"]):
        assert len(bounds) == len(batch["pixel_values"][row]) == len(batch["tgt_sizes"][row])
        for start, end in bounds.tolist():
            assert (
                end - start == QUERY_NUM
                and (ids[row, start:end] == token_id(tokenizer, "<unk>")).all()
            )
        assert tokenizer.decode(ids[row, -3:]) == "<|im_start|>assistant\n"
    # The MiniCPM-V tag is replaced whole, parentheses included.
    prompt = tokenizer.decode(ids[1])
    assert "(<image>" not in prompt and "./" not in prompt
    assert "<|im_start|>user\n<image>" + "<unk>" * QUERY_NUM + "</image>\nDescribe" in prompt


@pytest.mark.parametrize("use_image_id", [False, True])
def test_generation_prompt_is_the_training_prompt(tokenizer, use_image_id):
    processor = ImageProcessor(patch_size=14, scale_resolution=28, use_image_id=use_image_id)
    image = Image.new("RGB", WIDE)
    sample = preprocess(tokenizer, processor, conversation(), [image])
    prompt = build_generation_inputs(
        ["Is there a dog?"], [image], tokenizer, processor, query_num=QUERY_NUM
    )
    (prompt_ids,) = prompt["input_ids"]
    assert torch.equal(sample["input_ids"][: len(prompt_ids)], prompt_ids)
    assert torch.equal(sample["image_bound"], prompt["image_bound"][0])
    assert ("<image_id>0</image_id>" in tokenizer.decode(prompt_ids)) == use_image_id
