"""Special tokens shared by the tokenizer, the chat template and the image placeholders.

Names and strings follow the exercise's (MiniCPM-V 2.6 / Qwen2) tokenizer, so a real tokenizer
drops in. The demo tokenizer gives them the ids of their order in ``SPECIAL_TOKENS``.
"""

from __future__ import annotations

END_OF_TEXT = "<|endoftext|>"  # padding
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of every turn, and the end-of-sequence token
IMAGE_START = "<image>"
IMAGE_END = "</image>"
IMAGE_PAD = "<unk>"  # one per resampler query; the model overwrites these embeddings
SLICE_START = "<slice>"
SLICE_END = "</slice>"
IMAGE_ID_START = "<image_id>"
IMAGE_ID_END = "</image_id>"
REF_START = "<ref>"
REF_END = "</ref>"
BOX_START = "<box>"
BOX_END = "</box>"

SPECIAL_TOKENS = (
    END_OF_TEXT,
    IM_START,
    IM_END,
    IMAGE_START,
    IMAGE_END,
    IMAGE_PAD,
    SLICE_START,
    SLICE_END,
    IMAGE_ID_START,
    IMAGE_ID_END,
    REF_START,
    REF_END,
    BOX_START,
    BOX_END,
)

IMAGE_TAG = "<image>"  # where a data record puts its image; replaced by the placeholder
MINICPMV_IMAGE_TAG = "(<image>./</image>)"  # MiniCPM-V's prompt tag, parentheses included
