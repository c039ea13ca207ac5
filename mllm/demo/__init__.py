"""The synthetic demo world: COCO-category glyph images and every dataset the workflow needs,
written in the real datasets' formats (see :mod:`mllm.demo.world` for the layout)."""

from mllm.demo.config import DemoWorldConfig
from mllm.demo.world import generate_world

__all__ = ["DemoWorldConfig", "generate_world"]
