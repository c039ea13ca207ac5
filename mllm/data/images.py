"""Image loading and MiniCPM-V 2.6 style slicing into patch strips for the NaViT encoder."""

from __future__ import annotations

import base64
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mllm.data.errors import DataError
from mllm.data.special_tokens import (
    IMAGE_END,
    IMAGE_ID_END,
    IMAGE_ID_START,
    IMAGE_PAD,
    IMAGE_START,
    SLICE_END,
    SLICE_START,
)

if TYPE_CHECKING:  # torch is imported where tensors are made: the jobs that only open images
    import torch  # (world imports, the report) then start without it, ~7 s each

BASE64_MIN_LENGTH = 1000  # model_eval.py's rule: a longer string is base64, a shorter one a path
RECENT_IMAGES = 64  # pictures a pass over a data set keeps decoded and processed (ImageLoader)

Grid = tuple[int, int]  # (cols, rows) of the slices


def load_image(
    ref: str | Path, image_folder: str | Path | None = None, *, source: str
) -> Image.Image:
    """Open an RGB image from a path (relative to ``image_folder``) or a base64 string.

    ``source`` names the record (e.g. ``"sample 17"``) for the ``DataError`` raised when the
    file is missing or does not decode, so a bad image is found without bisecting the data.
    """
    path = image_file(ref, image_folder)
    origin = "base64 image" if path is None else f"image file {path}"
    try:
        with Image.open(BytesIO(base64.b64decode(ref)) if path is None else path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(source, f"cannot decode {origin}: {error}") from error


class RecentlyUsed:
    """At most ``size`` values by key, the least recently used dropped first (``size`` None: no
    limit, 0: nothing kept): memory stays bounded however long the data set."""

    def __init__(self, size: int | None):
        self.size = size
        self._values: OrderedDict[Hashable, object] = OrderedDict()

    def get_or_make(self, key: Hashable, make: Callable[[], object]):
        """The value kept for ``key``, else ``make()`` (kept, as the most recent)."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = make()
        if self.size != 0:
            self._values[key] = value
            if self.size is not None and len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


class ImageLoader:
    """``load_image`` for the records of one data set: a file (or base64 string) that several
    records name is decoded once and the same ``Image`` returned for each, so what is computed
    from the picture can be shared as well (``ConversationPreprocessor``). The ``max_images`` most
    recently used pictures stay decoded (None: all, 0: none)."""

    def __init__(self, image_folder: str | Path | None = None, *, max_images: int | None):
        self.image_folder = image_folder
        self._images = RecentlyUsed(max_images)

    def __call__(self, ref: str | Path, *, source: str) -> Image.Image:
        """The image ``ref`` names; ``source`` names the record for ``load_image``'s errors."""
        key = (
            ref if _is_base64(ref) else os.path.abspath(os.path.join(self.image_folder or "", ref))
        )
        return self._images.get_or_make(
            key, lambda: load_image(ref, self.image_folder, source=source)
        )


def image_file(ref: str | Path, image_folder: str | Path | None = None) -> Path | None:
    """The file an image reference names (relative to ``image_folder``; an absolute one ignores
    it), or None for a base64 image: what ``load_image`` opens, for those who hash it."""
    return None if _is_base64(ref) else Path(image_folder or "", ref)


def _is_base64(ref: str | Path) -> bool:
    return isinstance(ref, str) and len(ref) > BASE64_MIN_LENGTH


@dataclass(frozen=True)
class ProcessedImage:
    """One image as the vision encoder takes it: the downscaled source, then its slices."""

    pixel_values: list[torch.Tensor]  # n × [3, patch, (H/patch)*(W/patch)*patch]
    tgt_sizes: torch.Tensor  # [n, 2] long: (H/patch, W/patch) of each piece
    grid: Grid | None  # slice layout; None when the image is not sliced (n == 1)


class ImageProcessor:
    """MiniCPM-V 2.6 image slicing ("LLaVA-UHD"), normalisation and patch strips.

    An image of about ``scale_resolution``² pixels or less is resized (up or down) to about that
    area; a larger one is also cut into a grid of up to ``max_slice_nums`` slices of about that
    area each, the grid's aspect ratio closest to the image's. Sides are multiples of
    ``patch_size``, so every piece is a whole number of patches. ``slice_mode=False`` never slices.

    ``use_image_id`` prefixes every image's placeholder with ``<image_id>k</image_id>``. The
    exercise did so at training only for sliced images, but always at inference (EXERCISE_SPEC
    §7.10); here the flag applies to every image, in training and inference alike.
    """

    def __init__(
        self,
        *,
        patch_size: int = 14,
        scale_resolution: int = 448,
        max_slice_nums: int = 9,
        slice_mode: bool = True,
        use_image_id: bool = False,
    ):
        self.patch_size = patch_size
        self.scale_resolution = scale_resolution
        self.max_slice_nums = max_slice_nums
        self.slice_mode = slice_mode
        self.use_image_id = use_image_id

    def __call__(self, image: Image.Image) -> ProcessedImage:
        """Resize (and slice) ``image`` into pieces, each as a normalised patch strip."""
        grid = self.grid(image)
        source_size = self._best_resize(image.size, allow_upscale=grid is None)
        pieces = [image.resize(source_size, Image.Resampling.BICUBIC)]
        if grid is not None:
            refined = image.resize(self._refine_size(image.size, grid), Image.Resampling.BICUBIC)
            pieces += _split(refined, grid)
        import torch

        patch = self.patch_size
        strips = [_to_patch_strip(_normalise(piece), patch) for piece in pieces]
        tgt_sizes = torch.tensor([[p.height // patch, p.width // patch] for p in pieces])  # [n, 2]
        return ProcessedImage(pixel_values=strips, tgt_sizes=tgt_sizes, grid=grid)

    def grid(self, image: Image.Image) -> Grid | None:
        """The slice layout ``__call__`` gives ``image`` (None: not sliced), found from its size
        alone: what its placeholder needs, without resizing a pixel."""
        return self.slice_grid(*image.size) if self.slice_mode else None

    def slice_grid(self, width: int, height: int) -> Grid | None:
        """The (cols, rows) grid for a width×height image, or None if it needs no slicing.

        The slice count m is the image's area in units of ``scale_resolution``², capped at
        ``max_slice_nums``; the grid is the factor pair of m−1, m or m+1 (never 1 slice, never
        more than the cap) whose cols/rows ratio is closest in log scale to width/height.
        """
        area_ratio = width * height / self.scale_resolution**2
        multiple = min(math.ceil(area_ratio), self.max_slice_nums)
        if multiple <= 1:
            return None
        log_aspect = math.log(width / height)
        candidates = [
            (cols, count // cols)
            for count in (multiple - 1, multiple, multiple + 1)
            if 1 < count <= self.max_slice_nums
            for cols in range(1, count + 1)
            if count % cols == 0
        ]
        return min(candidates, key=lambda grid: abs(log_aspect - math.log(grid[0] / grid[1])))

    def placeholder(self, grid: Grid | None, *, query_num: int, image_index: int = 0) -> str:
        """The text that stands for one image: ``query_num`` ``<unk>`` per piece, between tags.

        ``<image>…</image>`` holds the source, then the slices follow, one line per grid row
        (rows joined by ``"\\n"``), each ``<slice>…</slice>``; pieces appear in the order of
        ``ProcessedImage.pixel_values``.
        """
        text = f"{IMAGE_ID_START}{image_index}{IMAGE_ID_END}" if self.use_image_id else ""
        text += IMAGE_START + IMAGE_PAD * query_num + IMAGE_END
        if grid is not None:
            cols, rows = grid
            row = (SLICE_START + IMAGE_PAD * query_num + SLICE_END) * cols
            text += "\n".join([row] * rows)
        return text

    def _best_resize(self, size: tuple[float, float], *, allow_upscale: bool) -> tuple[int, int]:
        """Keep the aspect ratio, bring the area to about scale_resolution² (only down unless
        ``allow_upscale``) and round each side to a multiple of the patch size."""
        width, height = size
        if width * height > self.scale_resolution**2 or allow_upscale:
            aspect = width / height
            height = int(self.scale_resolution / math.sqrt(aspect))
            width = int(height * aspect)
        patch = self.patch_size
        return _round_to_multiple(width, patch), _round_to_multiple(height, patch)

    def _refine_size(self, size: tuple[int, int], grid: Grid) -> tuple[int, int]:
        """Size to resize the image to before cutting it into ``grid`` equal slices."""
        (width, height), (cols, rows) = size, grid
        slice_size = (
            _round_to_multiple(width, cols) / cols,
            _round_to_multiple(height, rows) / rows,
        )
        slice_width, slice_height = self._best_resize(slice_size, allow_upscale=True)
        return slice_width * cols, slice_height * rows


def _round_to_multiple(length: float, multiple: int) -> int:
    return max(round(length / multiple) * multiple, multiple)


def _split(image: Image.Image, grid: Grid) -> list[Image.Image]:
    """Cut ``image`` into ``grid`` equal slices, row by row."""
    cols, rows = grid
    width, height = image.width // cols, image.height // rows
    return [
        image.crop((col * width, row * height, (col + 1) * width, (row + 1) * height))
        for row in range(rows)
        for col in range(cols)
    ]


# (x / 255 − 0.5) / 0.5 of each uint8 level x, in float32 as the per-pixel formula computes it:
# looking a pixel up is bit for bit that formula, without three passes over the image
_NORMALISED_LEVELS = (np.arange(256, dtype=np.float32) / 255.0 - 0.5) / 0.5


def _normalise(image: Image.Image) -> torch.Tensor:
    """RGB image -> [3, H, W] float in [-1, 1] ((x − 0.5) / 0.5, MiniCPM-V's mean and std)."""
    import torch

    pixels = np.take(_NORMALISED_LEVELS, np.asarray(image))  # [H, W, 3] float32
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _to_patch_strip(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[3, H, W] -> [3, patch, (H/patch)*(W/patch)*patch]: the patches side by side, row-major.

    This is MiniCPM-V's ``reshape_by_patch``: the NaViT encoder embeds the strip with a
    patch×patch convolution of stride patch, so patch k of the strip is patch k of the image.
    """
    channels, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    grid = pixels.reshape(channels, rows, patch, cols, patch)  # [3, h, p, w, p]
    return grid.permute(0, 2, 1, 3, 4).reshape(channels, patch, -1)  # [3, p, h*w*p]


class LazyImages(Sequence):
    """``load_image`` on demand: a batch slice opens only its own images. An eval split of 10k
    referents would otherwise hold every decoded image in memory at once."""

    def __init__(
        self, refs: Sequence[str], image_folder: str | Path | None, sources: Sequence[str]
    ):
        if len(refs) != len(sources):
            raise ValueError(f"{len(refs)} images but {len(sources)} sources")
        self.refs, self.image_folder, self.sources = list(refs), image_folder, list(sources)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return load_image(self.refs[index], self.image_folder, source=self.sources[index])
