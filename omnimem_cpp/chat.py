"""The chat layout of the Qwen2.5-Omni thinker (ChatML), as its tokenizer's chat template writes it."""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)


def system_turn(text: str) -> str:
    return f"<|im_start|>system\n{text}<|im_end|>\n"


def user_turn(text: str) -> str:
    """A complete user turn followed by the opening of the assistant's answer."""
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
