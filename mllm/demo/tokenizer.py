"""A small byte-level BPE tokenizer for the demo world, shaped like the exercise's Qwen2 one,
trained on every text of the world (``write_tokenizer``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mllm.atomic import atomic_directory
from mllm.data.errors import DataError
from mllm.data.special_tokens import END_OF_TEXT, IM_END, SPECIAL_TOKENS
from mllm.data.template import CHAT_TEMPLATE, DEFAULT_SYSTEM_PROMPT
from mllm.records import read_json_records, read_jsonl

# Every whole number 0..999 is one token: grounding answers are boxes on a 0-1000 grid, and a
# coordinate that costs one token is far easier for a tiny model to learn than three digits.
# Longer digit runs split into groups of three ("2014" -> "201", "4").
NUMBER_PATTERN = r"[1-9]\d{0,2}|0"
NUMBER_TOKENS = tuple(str(n) for n in range(1000))

# The chat scaffolding and yes/no answers are in every SFT sample but not in captions: training
# on them once per corpus line makes each of these words a single token.
_CHAT_WORDS = f"system\n{DEFAULT_SYSTEM_PROMPT}\nuser\nassistant\nYes\nNo\nyes\nno"


def build_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer of at most ``vocab_size`` tokens on ``corpus``.

    Byte-level pre-tokenisation and decoding make ``decode(encode(x)) == x`` for any text.
    ``SPECIAL_TOKENS`` take ids 0..13 in order and are never split; pad is ``<|endoftext|>``
    (id 0), eos is ``<|im_end|>``, there is no bos, and the Qwen2 ChatML template is attached.
    """
    lines = list(corpus)
    n_learned = vocab_size - (len(NUMBER_TOKENS) - 10)  # the ten digits are bytes already
    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    if n_learned <= len(SPECIAL_TOKENS) + len(byte_alphabet):
        raise ValueError(f"vocab_size={vocab_size} leaves no room for learned merges")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(NUMBER_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_learned,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=byte_alphabet,
        show_progress=False,
    )
    # Numbers become single digits here, so no learned merge touches digits; their merges are
    # added afterwards by _with_number_tokens.
    training_text = [re.sub(r"\d", "0", line) for line in lines] + [_CHAT_WORDS] * len(lines)
    tokenizer.train_from_iterator(training_text, trainer)
    tokenizer = _with_number_tokens(tokenizer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _with_number_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """Add the tokens 10..999 and merges that build each one from its digits.

    A number pre-token holds only digits, so only these merges apply to it. Every split of a
    number into two existing tokens is a merge, so whichever pair BPE merges first, the result
    is one token ("123": "1"+"2" or "2"+"3", then "12"+"3" or "1"+"23").
    """
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    number_merges = []
    for number in NUMBER_TOKENS:
        if number not in vocab:
            vocab[number] = len(vocab)
        number_merges += [
            [number[:cut], number[cut:]]
            for cut in range(1, len(number))
            if number[:cut] in vocab and number[cut:] in vocab
        ]
    spec["model"]["merges"] = number_merges + spec["model"]["merges"]
    return Tokenizer.from_str(json.dumps(spec))


def iter_texts(path: str | os.PathLike) -> Iterator[str]:
    """Every piece of text in a data file of one of the exercise's formats (SFT / preference JSON,
    objhal or Shikra REC JSONL)."""
    path = Path(path)
    rows = read_jsonl(path) if path.suffix == ".jsonl" else read_json_records(path)
    for row in rows:
        for turn in row.get("conversations", []):
            yield turn["content"]
        for key in ("question", "chosen", "rejected", "expression", "sent"):
            if isinstance(row.get(key), str):
                yield row[key]


def write_tokenizer(
    corpus_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    vocab_size: int = 1400,
) -> int:
    """Train the demo tokenizer on every text of the world (config ``tokenizer``: ``vocab_size``)
    and write it to ``output_dir``; returns its vocabulary size."""
    corpus = [text for path in corpus_files for text in iter_texts(path)]
    if not corpus:
        raise DataError(", ".join(map(str, corpus_files)), "no text to train a tokenizer on")
    tokenizer = build_tokenizer(corpus, vocab_size)
    with atomic_directory(output_dir) as scratch:
        tokenizer.save_pretrained(scratch)
    return len(tokenizer)
