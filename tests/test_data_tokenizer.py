"""The demo tokenizer and the ChatML template it carries."""

from __future__ import annotations

import timeit

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mllm.data.special_tokens import IM_END, SPECIAL_TOKENS
from mllm.data.template import DEFAULT_SYSTEM_PROMPT, render_chatml
from mllm.demo.tokenizer import build_tokenizer

CAPTIONS = [
    "A dog sits on a red sofa next to a cat.",
    "Two people ride bicycles down the street.",
    "A plate of food with a fork and a knife on a table.",
] * 40


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(CAPTIONS, vocab_size=1500)


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(
    "text",
    [
        "(12,34),(56,78)",
        "line one\nline two\n\n",
        "  spaced  out ",
        "héllo 🐱, 2014 and 0.5",
        "<ref>dog</ref><box>(1,2),(3,4)</box>",
    ],
)
def test_decode_inverts_encode(tokenizer, text):
    assert tokenizer.decode(ids_of(tokenizer, text)) == text


def test_whole_numbers_below_1000_are_single_tokens(tokenizer):
    assert all(len(ids_of(tokenizer, str(n))) == 1 for n in range(1000))
    assert [tokenizer.decode([i]) for i in ids_of(tokenizer, "(12,345)")] == [
        "(",
        "12",
        ",",
        "345",
        ")",
    ]


def test_common_and_chat_words_are_single_tokens(tokenizer):
    for word in ["Yes", "No", "system", "user", "assistant", " dog", " table", " sofa"]:
        assert len(ids_of(tokenizer, word)) == 1, word


def test_special_tokens_have_stable_ids_and_are_never_split(tokenizer):
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert ids_of(tokenizer, "".join(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 0
    assert tokenizer.eos_token == IM_END and tokenizer.bos_token is None


def test_reloads_with_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, PreTrainedTokenizerFast)
    text = "<|im_start|>user\n<image><unk></image>\nIs the dog at (12,34)?<|im_end|>"
    assert ids_of(reloaded, text) == ids_of(tokenizer, text)
    assert (reloaded.pad_token_id, reloaded.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )
    assert reloaded.chat_template == tokenizer.chat_template
    assert len(reloaded) == len(tokenizer)


def test_trains_fast_on_ten_thousand_captions():
    captions = [
        f"A dog and {i % 7} cats sit on sofa number {i} near a table." for i in range(10_000)
    ]
    # Best of two, so a busy machine does not fail the test.
    assert (
        min(timeit.repeat(lambda: build_tokenizer(captions, vocab_size=3000), number=1, repeat=2))
        < 1.0
    )


def test_vocab_too_small_for_the_number_tokens_is_refused():
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(CAPTIONS, vocab_size=1000)


YES_NO = [{"role": "user", "content": "Is there a dog?"}, {"role": "assistant", "content": "Yes"}]


def test_render_matches_the_exercise_template_exactly():
    text, spans = render_chatml(YES_NO)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nIs there a dog?<|im_end|>\n"
        "<|im_start|>assistant\nYes<|im_end|>"
    )
    assert [text[s:e] for s, e in spans] == ["\nYes<|im_end|>"]


def test_render_supervises_every_assistant_turn_and_honours_a_system_message():
    messages = [
        {"role": "system", "content": "Be brief."},
        *YES_NO,
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "No"},
    ]
    text, spans = render_chatml(messages, system_prompt="ignored")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "ignored" not in text
    assert [text[s:e] for s, e in spans] == ["\nYes<|im_end|>", "\nNo<|im_end|>"]


def test_generation_prompt_ends_with_the_assistant_header():
    text, spans = render_chatml(YES_NO[:1], add_generation_prompt=True)
    assert text.endswith("Is there a dog?<|im_end|>\n<|im_start|>assistant\n") and spans == []


@pytest.mark.parametrize(
    "messages", [YES_NO, [{"role": "system", "content": "Be brief."}, *YES_NO]]
)
def test_render_equals_apply_chat_template(tokenizer, messages):
    # The template ends every turn with "\n"; the exercise drops the final one.
    templated = tokenizer.apply_chat_template(messages, tokenize=False)
    assert templated == render_chatml(messages)[0] + "\n"
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    assert prompt == render_chatml(messages[:-1], add_generation_prompt=True)[0]
    assert DEFAULT_SYSTEM_PROMPT in tokenizer.apply_chat_template(YES_NO, tokenize=False)
