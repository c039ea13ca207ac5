"""Image loading, MiniCPM-V 2.6 slicing, patch strips and placeholders."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mllm.data.errors import DataError
from mllm.data.images import ImageLoader, ImageProcessor, _normalise, _to_patch_strip, load_image

PATCH = 14


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


# Hand-computed from the MiniCPM-V 2.6 rules (scale 448, patch 14, at most 9 slices):
# 1000×500: area 2.49 → m=3; grids of 2,3,4; (2,1) matches log(2) exactly. Source: h=int(448/√2)=316,
#   w=632 → rounded to 14s: 322×630 → [23,45]; slices: 500×500 → upscaled to 448×448 → [32,32].
# 448×448: area 1 → not sliced, already 448×448 → [32,32].
# 2000×2000: area 19.9 → m=9; grids of 8,9 (10 is over the cap); (3,3) exact; every piece 448² → [32,32].
# 1200×300: area 1.79 → m=2; grids of 2,3; log 4 is closest to (3,1) (error 0.29 vs 0.69 for (2,1)).
#   Source: h=int(448/2)=224, w=896 → [16,64]; slices 400×300 → h=int(448/√(4/3))=387, w=516 → [28,37].
# 100×30: not sliced, upscaled: h=int(448/√(10/3))=245 → 252 (17.5 rounds to 18), w=816 → 812 → [18,58].
@pytest.mark.parametrize(
    ("size", "grid", "tgt_sizes"),
    [
        ((1000, 500), (2, 1), [[23, 45]] + [[32, 32]] * 2),
        ((448, 448), None, [[32, 32]]),
        ((2000, 2000), (3, 3), [[32, 32]] * 10),
        ((1200, 300), (3, 1), [[16, 64]] + [[28, 37]] * 3),
        ((100, 30), None, [[18, 58]]),
    ],
)
def test_slicing_matches_hand_computed_grids_and_sizes(size, grid, tgt_sizes):
    processed = ImageProcessor()(noise_image(*size))
    assert processed.grid == grid
    assert processed.tgt_sizes.dtype == torch.long
    assert processed.tgt_sizes.tolist() == tgt_sizes
    for strip, (h, w) in zip(processed.pixel_values, processed.tgt_sizes.tolist(), strict=True):
        assert strip.shape == (3, PATCH, h * w * PATCH)


def test_slice_mode_off_never_slices():
    processed = ImageProcessor(slice_mode=False)(noise_image(2000, 2000))
    assert processed.grid is None and processed.tgt_sizes.tolist() == [[32, 32]]


def test_patch_strip_equals_minicpmv_unfold_layout():
    pixels = torch.randn(3, 3 * PATCH, 2 * PATCH)  # [3, H, W]
    # MiniCPM-V's reshape_by_patch, written with unfold as it does.
    patches = F.unfold(pixels, (PATCH, PATCH), stride=(PATCH, PATCH))  # [3*p*p, N]
    expected = patches.reshape(3, PATCH, PATCH, -1).permute(0, 1, 3, 2).reshape(3, PATCH, -1)
    torch.testing.assert_close(_to_patch_strip(pixels, PATCH), expected)


def test_pixels_are_normalised_to_minus_one_one():
    processor = ImageProcessor(scale_resolution=28)
    assert (processor(Image.new("RGB", (28, 28), "white")).pixel_values[0] == 1).all()
    assert (processor(Image.new("RGB", (28, 28), "black")).pixel_values[0] == -1).all()


def test_placeholder_layout():
    processor = ImageProcessor()
    image = "<image>" + "<unk>" * 2 + "</image>"
    piece = "<slice>" + "<unk>" * 2 + "</slice>"
    assert processor.placeholder(None, query_num=2) == image
    assert processor.placeholder((2, 3), query_num=2) == image + "\n".join([piece * 2] * 3)
    with_id = ImageProcessor(use_image_id=True).placeholder(None, query_num=2, image_index=4)
    assert with_id == "<image_id>4</image_id>" + image


def test_load_image_from_folder_and_from_base64(tmp_path):
    image = noise_image(40, 30)
    image.save(tmp_path / "a.png")
    assert load_image("a.png", tmp_path, source="sample 1").size == (40, 30)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    assert len(encoded) > 1000
    loaded = load_image(encoded, source="sample 1")
    assert loaded.mode == "RGB" and loaded.tobytes() == image.tobytes()


@pytest.mark.parametrize("content", [b"not an image at all", None])
def test_unreadable_image_names_the_record_and_the_file(tmp_path, content):
    if content is not None:
        (tmp_path / "broken.jpg").write_bytes(content)
    with pytest.raises(DataError, match=r"sample 42: cannot decode image file .*broken\.jpg"):
        load_image("broken.jpg", tmp_path, source="sample 42")


def test_undecodable_base64_names_the_record():
    with pytest.raises(DataError, match="sample 7: cannot decode base64 image"):
        load_image("A" * 1001 + "!", source="sample 7")


def test_lazy_images_open_only_the_requested_slice(tmp_path):
    from mllm.data.images import LazyImages

    Image.new("RGB", (8, 6), "red").save(tmp_path / "a.png")
    images = LazyImages(["a.png", "gone.png"], tmp_path, ["rec.jsonl:1", "rec.jsonl:2"])
    assert len(images) == 2
    [first] = images[0:1]
    assert first.size == (8, 6) and first.mode == "RGB"
    with pytest.raises(DataError, match="rec.jsonl:2"):
        images[1:2]


def test_normalisation_is_the_per_pixel_formula_bit_for_bit():
    levels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)  # every uint8 level
    image = Image.fromarray(levels)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    assert torch.equal(_normalise(image), (pixels - 0.5) / 0.5)


def test_image_loader_decodes_a_picture_once_and_forgets_the_least_recent(tmp_path):
    for name in ("a", "b"):
        noise_image(8, 8).save(tmp_path / f"{name}.png")
    loader = ImageLoader(tmp_path, max_images=1)
    first = loader("a.png", source="sample 1")
    assert loader("./a.png", source="sample 2") is first
    loader("b.png", source="sample 3")
    again = loader("a.png", source="sample 4")
    assert again is not first and again.tobytes() == first.tobytes()
    assert ImageLoader(tmp_path, max_images=0)("a.png", source="s") is not again
