"""Referring-expression grounding data: readers, validation, and Qwen-VL-style SFT conversations.

Three source formats become one list of :class:`Referent` (one expression, one pixel box):

* ``shikra`` — Shikra REC JSONL ``{img_path, expression, bbox:[x0,y0,x1,y1] px}`` (the
  exercise's ``REC_*.jsonl``); ``width``/``height`` are taken from the row when present, else
  from the image file's header (PIL reads the size without decoding the pixels).
* ``qwen`` — Qwen-VL eval JSONL ``{image, sent, bbox:[x0,y0,x1,y1] px, width, height}``.
* ``coco_refs`` — the RefCOCO ``refs(unc).p`` list as JSON (``{ref_id, ann_id, image_id, split,
  sentences:[{sent}]}``) plus the COCO ``instances.json`` beside it, which gives each ref's
  box (``[x, y, w, h]``) and image size and file name. Pickles are not read, because unpickling
  a downloaded file runs whatever code it holds; convert yours once::

      import json, pickle
      with open("refcoco/refs(unc).p", "rb") as f:
          refs = pickle.load(f)  # add encoding="latin1" if Python 3 rejects a Python 2 pickle
      with open("refcoco/refs(unc).json", "w") as f:
          json.dump(refs, f)

A malformed record (bad JSON, a missing or mistyped field) always raises ``DataError``. A
well-formed record that cannot be a sample — image missing or unreadable, a zero-area box, a box
outside the image by more than ``BBOX_TOLERANCE_PX`` — follows ``on_bad_record``: ``"raise"``
raises ``DataError`` naming file and line, ``"skip"`` drops it and counts it by reason in
``Referents.skipped`` (also logged), so nothing disappears silently.

Training records keep the answer as a box turn ``{role: assistant, expression, box}`` with the
pixel box: the model's family writes it in its own convention when the SFT data is preprocessed
(``ModelFamily.box_answer``; the own family's is Qwen-VL's ``<ref>expr</ref><box>(x1,y1),(x2,y2)
</box>`` on the 0..999 grid, EXERCISE_SPEC §1), so one prepared file trains every family.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mllm.atomic import write_json
from mllm.data.errors import BadRecordPolicy, DataError, check_bad_record_policy
from mllm.data.special_tokens import IMAGE_TAG, REF_END, REF_START
from mllm.records import iter_jsonl, read_json

log = logging.getLogger(__name__)

FORMATS = ("shikra", "qwen", "coco_refs")
SKIP_REASONS = ("missing_image", "unreadable_image", "zero_area_bbox", "bbox_outside_image")
BBOX_TOLERANCE_PX = 1.0  # annotation tools round; a box this far past the border is still fine

# The Shikra REC file of each evaluation split (images in COCO train2014).
SHIKRA_REC_FILES = {
    (dataset, split): f"REC_{dataset}_{scheme}_{split}.jsonl"
    for dataset, scheme, splits in (
        ("refcoco", "unc", ("val", "testA", "testB")),
        ("refcoco+", "unc", ("val", "testA", "testB")),
        ("refcocog", "umd", ("val", "test")),
    )
    for split in splits
}

EXPR = "{expr}"
REF_SLOT = f"{REF_START}{EXPR}{REF_END}"
# Questions in the spirit of Shikra's REC pool, worded afresh. Each holds the image tag once and
# the expression once, wrapped in <ref></ref> as Qwen-VL marks it.
GROUNDING_TEMPLATES = (
    f"{IMAGE_TAG}\nWhere is {REF_SLOT} in the image? Answer with its bounding box.",
    f"In {IMAGE_TAG}, locate {REF_SLOT} and give its box coordinates.",
    f"Find {REF_SLOT} in this picture {IMAGE_TAG} and report where it is.",
    f"{IMAGE_TAG}\nGive the bounding box of {REF_SLOT}.",
    f"Look at {IMAGE_TAG}. Which region shows {REF_SLOT}? Reply with a box.",
    f"Here is an image: {IMAGE_TAG}. Point out {REF_SLOT} with a bounding box.",
    f"{IMAGE_TAG}\nOutput the coordinates of the region described as {REF_SLOT}.",
    f"Can you mark {REF_SLOT} in {IMAGE_TAG} with a box?",
    f"Using the image {IMAGE_TAG}, name the top-left and bottom-right corners of {REF_SLOT}.",
    f"{IMAGE_TAG}\nDetect {REF_SLOT} and answer with its box.",
)
# Qwen-VL prompts its base model with "<img>…</img><ref>expr</ref><box>" and lets it complete the
# box. Our model answers a chat turn instead, so evaluation asks one fixed question from the
# training pool: wording the model was trained on, and the same for every item and every run.
EVAL_TEMPLATE = GROUNDING_TEMPLATES[0]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class Referent:
    """One referring expression and the pixel box it refers to.

    ``image`` is the path as the source file writes it (relative to ``image_folder``);
    ``source_line`` locates the record (``file:line``, or ``file:ref_id=N`` for COCO refs).
    """

    image: str
    expression: str
    bbox_xyxy_px: Box
    width: int
    height: int
    source_line: str


class Referents(list):
    """A list of :class:`Referent` that also carries ``skipped``: dropped records per reason."""

    def __init__(self, items: Sequence[Referent] = (), skipped: dict[str, int] | None = None):
        super().__init__(items)
        self.skipped = dict(skipped or {})


# --- readers -------------------------------------------------------------------------------


# The JSONL formats' rows: (image key, expression key, whether every row carries width/height).
# A Shikra REC row without them gets them from the image header.
_JSONL_LAYOUTS = {"shikra": ("img_path", "expression", False), "qwen": ("image", "sent", True)}


def read_referents(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    image_folder: str | os.PathLike | None = None,
    on_bad_record: BadRecordPolicy = "raise",
    split: str | None = None,
    instances: str | os.PathLike | None = None,
) -> Referents:
    """Read any supported grounding file; ``fmt="auto"`` tells them apart by their first record.

    ``split`` and ``instances`` apply to ``coco_refs`` only (see :func:`read_coco_refs`).
    """
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown grounding format {fmt!r}; expected one of {FORMATS} or 'auto'")
    if fmt == "coco_refs":
        return read_coco_refs(
            path, instances, split=split, image_folder=image_folder, on_bad_record=on_bad_record
        )
    if split is not None or instances is not None:
        raise ValueError(f"split/instances apply to coco_refs files, not to {fmt} file {path}")
    return _read_box_rows(path, *_JSONL_LAYOUTS[fmt], image_folder, on_bad_record)


def detect_format(path: str | os.PathLike) -> str:
    """``coco_refs`` for a JSON list, else ``shikra`` or ``qwen`` by the first JSONL row's keys."""
    with open(path, encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    if first.lstrip().startswith("["):
        return "coco_refs"
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        row = None
    if isinstance(row, dict) and "img_path" in row:
        return "shikra"
    if isinstance(row, dict) and "sent" in row:
        return "qwen"
    raise DataError(
        str(path), "cannot tell the grounding format (no img_path/sent row, no JSON list)"
    )


def _read_box_rows(
    path: str | os.PathLike,
    image_key: str,
    expression_key: str,
    size_required: bool,
    image_folder: str | os.PathLike | None,
    on_bad_record: BadRecordPolicy,
) -> Referents:
    """JSONL rows ``{<image_key>, <expression_key>, bbox, width?, height?}``; without
    ``size_required`` a row that has neither width nor height gets them from the image header."""
    intake = _Intake(image_folder, on_bad_record)
    for source, row in _jsonl_rows(path):
        has_size = size_required or "width" in row or "height" in row
        intake.add(
            source,
            _text(row, image_key, source),
            _text(row, expression_key, source),
            _box(row, "bbox", source),
            _size(row, source) if has_size else None,
        )
    return intake.result(path)


def read_coco_refs(
    refs_path: str | os.PathLike,
    instances_path: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    image_folder: str | os.PathLike | None = None,
    on_bad_record: BadRecordPolicy = "raise",
) -> Referents:
    """RefCOCO refs as JSON + COCO instances (default: ``instances.json`` beside the refs).

    One referent per sentence; ``split`` keeps only refs of that split (None keeps all). The
    image path is the instances' ``file_name`` — the refs' own ``file_name`` carries an
    annotation suffix and names no real file.
    """
    instances_path = instances_path or Path(refs_path).parent / "instances.json"
    images, annotations = _coco_index(instances_path)
    refs = read_json(refs_path)
    if not isinstance(refs, list):
        raise DataError(str(refs_path), "expected a JSON list of refs")
    intake = _Intake(image_folder, on_bad_record)
    for index, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise DataError(f"{refs_path}:#{index}", "expected a ref object")
        if split is not None and ref.get("split") != split:
            continue
        source = f"{refs_path}:ref_id={ref.get('ref_id')}"
        image = _lookup(images, ref.get("image_id"), "image_id", instances_path, source)
        annotation = _lookup(annotations, ref.get("ann_id"), "ann_id", instances_path, source)
        file_name, size = _text(image, "file_name", source), _size(image, source)
        x, y, w, h = _box(annotation, "bbox", source)
        for sentence in _sentences(ref, source):
            intake.add(source, file_name, sentence, (x, y, x + w, y + h), size)
    return intake.result(refs_path)


def _coco_index(path: str | os.PathLike) -> tuple[dict, dict]:
    """COCO instances -> (image id -> image record, annotation id -> annotation record)."""
    data = read_json(path)
    try:
        images = {image["id"]: image for image in data["images"]}
        annotations = {annotation["id"]: annotation for annotation in data["annotations"]}
    except (KeyError, TypeError) as error:
        raise DataError(
            str(path), f"not COCO instances (images/annotations with ids): {error!r}"
        ) from error
    return images, annotations


def _lookup(index: dict, key, name: str, index_path, source: str) -> dict:
    if key not in index:
        raise DataError(source, f"{name} {key!r} is not in {index_path}")
    return index[key]


def _sentences(ref: dict, source: str) -> list[str]:
    sentences = ref.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise DataError(source, "missing or empty 'sentences' list")
    return [_text(sentence, "sent", source) for sentence in sentences]


# --- record fields (malformed -> DataError, whatever the policy) ---------------------------


def _jsonl_rows(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """(``file:line``, object) for each non-blank line."""
    for number, row in iter_jsonl(path):
        yield f"{path}:{number}", row


def _text(row, key: str, source: str) -> str:
    value = row.get(key) if isinstance(row, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise DataError(source, f"missing or empty string field {key!r}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _box(row: dict, key: str, source: str) -> Box:
    value = row.get(key)
    if not isinstance(value, list) or len(value) != 4 or not all(map(_is_number, value)):
        raise DataError(source, f"field {key!r} must be a list of 4 numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _size(row: dict, source: str) -> tuple[int, int]:
    width, height = row.get("width"), row.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise DataError(source, f"width/height must be positive integers, got {width!r}/{height!r}")
    return width, height


# --- validation policy ---------------------------------------------------------------------


def _bbox_problem(bbox: Box, width: int, height: int) -> tuple[str, str] | None:
    """(reason, detail) when a box cannot be a target (no positive area, or outside the image
    beyond the tolerance), else None."""
    x0, y0, x1, y1 = bbox
    if x1 <= x0 or y1 <= y0:
        return "zero_area_bbox", f"bbox {list(bbox)} has no area"
    tol = BBOX_TOLERANCE_PX
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        return "bbox_outside_image", f"bbox {list(bbox)} is outside the {width}x{height} image"
    return None


class _Intake:
    """Checks each well-formed record and applies the ``on_bad_record`` policy to bad ones."""

    def __init__(self, image_folder: str | os.PathLike | None, on_bad_record: BadRecordPolicy):
        self.on_bad_record = check_bad_record_policy(on_bad_record)
        self.image_folder = Path(image_folder or "")
        self.referents: list[Referent] = []
        self.skipped: Counter[str] = Counter()
        self._file_exists: dict[Path, bool] = {}  # referents share images: stat each once

    def add(
        self, source: str, image: str, expression: str, bbox: Box, size: tuple[int, int] | None
    ) -> None:
        path = self.image_folder / image  # an absolute image path ignores the folder
        if not self._is_file(path):
            self._reject(source, "missing_image", f"no image file {path}")
            return
        if size is None:
            try:
                with Image.open(path) as opened:  # lazy: reads the header, not the pixels
                    size = opened.size
            except (OSError, Image.DecompressionBombError) as error:
                self._reject(source, "unreadable_image", f"cannot read {path}: {error}")
                return
        problem = _bbox_problem(bbox, *size)
        if problem:
            self._reject(source, *problem)
            return
        self.referents.append(Referent(image, expression, bbox, *size, source))

    def _is_file(self, path: Path) -> bool:
        if path not in self._file_exists:
            self._file_exists[path] = path.is_file()
        return self._file_exists[path]

    def _reject(self, source: str, reason: str, detail: str) -> None:
        if self.on_bad_record == "raise":
            raise DataError(source, f"{reason}: {detail}")
        self.skipped[reason] += 1

    def result(self, path: str | os.PathLike) -> Referents:
        if self.skipped:
            log.warning("%s: skipped %s", path, dict(self.skipped))
        return Referents(self.referents, dict(self.skipped))


# --- conversations -------------------------------------------------------------------------


def check_templates(templates: Sequence[str]) -> None:
    """Each template needs the image tag and ``<ref>{expr}</ref>`` exactly once."""
    if not templates:
        raise ValueError("no grounding question templates")
    for template in templates:
        if template.count(IMAGE_TAG) != 1 or template.count(REF_SLOT) != 1:
            raise ValueError(f"template needs one {IMAGE_TAG} and one {REF_SLOT}: {template!r}")


def grounding_conversations(
    referents: Sequence[Referent], seed: int, templates: Sequence[str] = GROUNDING_TEMPLATES
) -> list[dict]:
    """Exercise SFT records ``{id, image, source, conversations:[user, box turn]}``, one per
    referent; ``source`` is the referent's ``file:line``, and the box turn ``{role: assistant,
    expression, box}`` holds the pixel box (module docstring).

    The question template is drawn per record from one ``random.Random(seed)``, so the same
    referents and seed give the same records.
    """
    check_templates(templates)
    rng = random.Random(seed)
    records = []
    for index, referent in enumerate(referents):
        template = templates[rng.randrange(len(templates))]
        records.append(
            {
                "id": index,
                "image": referent.image,
                "source": referent.source_line,  # errors in training name the REC line
                "conversations": [
                    {"role": "user", "content": template.replace(EXPR, referent.expression)},
                    {
                        "role": "assistant",
                        "expression": referent.expression,
                        "box": list(referent.bbox_xyxy_px),
                    },
                ],
            }
        )
    return records


def grounding_eval_question(expression: str, template: str = EVAL_TEMPLATE) -> str:
    """The evaluation question for ``generate``: the training wording without its leading
    ``<image>`` line. Every family's ``generation_inputs`` puts the image before the question, so
    the image lands where it did in training."""
    check_templates([template])
    if not template.startswith(f"{IMAGE_TAG}\n"):
        raise ValueError(f"the evaluation template must start with {IMAGE_TAG!r}: {template!r}")
    return template.removeprefix(f"{IMAGE_TAG}\n").replace(EXPR, expression)


def prepare_grounding_sft(
    sources: Sequence[str | os.PathLike],
    *,
    image_folder: str | os.PathLike | None,
    fmt: str = "auto",
    on_bad_record: BadRecordPolicy = "raise",
    seed: int = 0,
    output_path: str | os.PathLike,
    summary_path: str | os.PathLike,
) -> dict:
    """Referring-expression files → one SFT records file (the ``train_sft`` input format).

    The summary counts records and skips per source file, so a skip policy never hides data: the
    report and the log show how many records each file lost and why.
    """
    referents: list[Referent] = []
    per_file = {}
    for source in sources:
        read = read_referents(source, fmt, image_folder=image_folder, on_bad_record=on_bad_record)
        referents += read
        per_file[os.fspath(source)] = {"referents": len(read), "skipped": read.skipped}
    if not referents:
        raise DataError(", ".join(map(os.fspath, sources)), "no usable referring expressions")
    records = grounding_conversations(referents, seed)
    summary = {"records": len(records), "seed": seed, "files": per_file}
    write_json(output_path, records)
    write_json(summary_path, summary)
    return summary
