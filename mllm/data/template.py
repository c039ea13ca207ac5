"""ChatML rendering with the character spans the loss supervises."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mllm.data.special_tokens import IM_END, IM_START

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen2's chat template, verbatim apart from the default system prompt constant.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


def render_chatml(
    messages: Sequence[Message],
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    *,
    add_generation_prompt: bool = False,
) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` as ChatML and return ``(text, supervised_char_spans)``.

    The text is what ``CHAT_TEMPLATE`` renders without its final ``"\\n"`` (the exercise drops
    that token, so a sample ends on ``<|im_end|>``, its last supervised token); with
    ``add_generation_prompt`` it ends on ``"<|im_start|>assistant\\n"`` instead. A leading system
    message replaces ``system_prompt``, as in the template.

    Each assistant turn supervises ``"\\n" + content + "<|im_end|>"``: the newline after the role
    name starts the span so that the prompt's last position (``assistant``) learns to open the
    answer. Spans are half-open ``[start, end)`` character ranges of ``text``.
    """
    if messages and messages[0]["role"] == "system":
        system_prompt, messages = messages[0]["content"], messages[1:]
    turns = [("system", system_prompt)] + [(m["role"], m["content"]) for m in messages]

    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    offset = 0
    for role, content in turns:
        header, body = f"{IM_START}{role}", f"\n{content}{IM_END}"
        if role == "assistant":
            start = offset + len(header)
            spans.append((start, start + len(body)))
        pieces.append(header + body)
        offset += len(header) + len(body) + 1  # the "\n" that joins turns
    text = "\n".join(pieces)
    if add_generation_prompt:
        text += f"\n{IM_START}assistant\n"
    return text, spans
