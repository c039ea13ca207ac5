"""Images embedded in the page as data URIs, so the report stays one file that opens offline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

GT_COLOUR = (0, 170, 0)
PREDICTION_COLOUR = (220, 0, 0)


def data_uri(image: Image.Image) -> str:
    """The smaller of PNG (flat drawings, exact) and JPEG (photographs and the demo's noisy
    textures, which PNG barely compresses)."""
    encoded = {}
    for fmt, options in (("png", {"optimize": True}), ("jpeg", {"quality": 85})):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt.upper(), **options)
        encoded[fmt] = buffer.getvalue()
    fmt = min(encoded, key=lambda f: len(encoded[f]))
    return f"data:image/{fmt};base64,{base64.b64encode(encoded[fmt]).decode()}"


def thumbnail(image: Image.Image, size: int, *, enlarge: bool = False) -> Image.Image:
    """At most `size` px on the long side, shrunk for embedding; a smaller image stays as it is (the
    page scales it up, cheaper than embedding more pixels) unless `enlarge`, where nearest
    neighbour keeps the demo's 64-px shapes crisp under drawn boxes."""
    scale = size / max(image.size)
    if scale >= 1 and not enlarge:
        return image.convert("RGB")
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(target, resample)


def draw_boxes(
    image: Image.Image,
    gt_box: Sequence[float],
    pred_box: Sequence[float] | None,
    size: int,
) -> Image.Image:
    """The image scaled to `size` with the ground-truth box (green) and the predicted one (red,
    absent when the answer did not parse); boxes are pixel xyxy of the original image."""
    shown = thumbnail(image, size, enlarge=True)
    scale = shown.width / image.width
    draw = ImageDraw.Draw(shown)
    width = max(2, size // 100)
    for box, colour in ((gt_box, GT_COLOUR), (pred_box, PREDICTION_COLOUR)):
        if box is not None:
            draw.rectangle([v * scale for v in box], outline=colour, width=width)
    return shown
