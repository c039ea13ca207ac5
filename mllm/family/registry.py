"""The model families a config's ``model.family`` may name."""

from __future__ import annotations

from mllm.family.hf import InternVLFamily, Qwen2_5_VLFamily, Qwen3VLFamily

FAMILIES = {family.name: family for family in (Qwen2_5_VLFamily, Qwen3VLFamily, InternVLFamily)}
