"""POPE question files: built from COCO-format instances with the paper's construction, or read
from the published files (AoiDragon/POPE's json lines, lmms-lab/POPE's parquet).

Every source becomes the same record, one per question, in json lines (the official layout plus
two fields)::

    {"question_id": 1, "image": "images/val/x.png", "text": "Is there a dog in the image?",
     "label": "yes", "object": "dog", "image_id": 200001}

``image`` resolves from the world's image root; ``object`` and ``image_id`` are None where a
source does not say. The construction follows AoiDragon/POPE ``main.py`` / ``utils.py``: images
with at least 3 objects, 500 of them sampled, 3 positives per image each followed by one
negative that is neither in the image nor asked before for it — ``random``: uniform over the
objects of the sampled images; ``popular``: the most frequent one; ``adversarial``: the one that
co-occurs most often with that positive (both falling back to random). Frequencies and
co-occurrences are counted over the sampled images only; ties keep first-seen order, as Python's
stable sort does in the original. Unlike the original, every draw comes from one seeded stream.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from mllm.atomic import atomic_directory, atomic_file, write_jsonl
from mllm.data.errors import DataError
from mllm.records import iter_jsonl, read_json
from mllm.settings import Settings
from mllm.workflow.world import POPE_SETTINGS

LABELS = ("yes", "no")
QUESTION = re.compile(r"^Is there an? (?P<object>.+) in the image\?$")
OFFICIAL_FIELDS = ("question_id", "image", "text", "label")
LMMS_LAB_FIELDS = ("question_id", "question", "answer", "image_source", "image", "category")
# The published files: AoiDragon/POPE output/coco/, and lmms-lab/POPE's config `default`
PUBLISHED_FORMATS = ("official", "lmms_lab")
OFFICIAL_FILES = {setting: f"coco_pope_{setting}.json" for setting in POPE_SETTINGS}
LMMS_LAB_SHARDS = "data/test-*.parquet"


@dataclass(frozen=True)
class PopeConstruction(Settings):
    """The ``pope.construction`` config section: how many images (the paper: 500; fewer when the
    world has fewer eligible ones), how many positives and negatives per image (3, which is also
    the least number of objects an image needs), and the seed of every draw."""

    images: int = 500
    objects_per_image: int = 3
    seed: int = 0


def question_text(category: str) -> str:
    """The official template with the article fixed: 'Is there an apple in the image?'."""
    article = "an" if category[:1].lower() in "aeiou" else "a"
    return f"Is there {article} {category} in the image?"


def asked_object(text: str) -> str | None:
    """The object a question asks about, or None for a question not in the template."""
    match = QUESTION.match(text.strip())
    return match.group("object") if match else None


# --- construction ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatedImage:
    image_id: int
    file_name: str
    objects: tuple[str, ...]  # distinct category names, in the order drawn for the positives


def annotated_images(instances: Mapping, source: str) -> list[AnnotatedImage]:
    """Each image of COCO-format ``instances`` with its distinct category names (first
    annotation first), in the file's image order."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(instances.get(key), list):
            raise DataError(source, f"not COCO instances: no list {key!r}")
    names = {}
    for index, category in enumerate(instances["categories"]):
        if "id" not in category or "name" not in category:
            raise DataError(f"{source} categories[{index}]", "needs 'id' and 'name'")
        names[category["id"]] = category["name"]
    objects: dict[int, dict[str, None]] = {}
    for index, annotation in enumerate(instances["annotations"]):
        where = f"{source} annotations[{index}]"
        for field in ("image_id", "category_id"):
            if field not in annotation:
                raise DataError(where, f"missing field {field!r}")
        if annotation["category_id"] not in names:
            raise DataError(where, f"unknown category_id {annotation['category_id']!r}")
        objects.setdefault(annotation["image_id"], {})[names[annotation["category_id"]]] = None
    images = []
    for index, image in enumerate(instances["images"]):
        for field in ("id", "file_name"):
            if field not in image:
                raise DataError(f"{source} images[{index}]", f"missing field {field!r}")
        found = tuple(objects.get(image["id"], {}))
        images.append(AnnotatedImage(image["id"], image["file_name"], found))
    return images


def build_pope(
    images: Sequence[AnnotatedImage], settings: PopeConstruction, image_prefix: str = ""
) -> tuple[dict[str, list[dict]], dict]:
    """The three settings' question records and a summary of the construction (images asked for
    and found, object frequencies). ``image_prefix`` is prepended to each file name so that the
    records' image paths resolve from the world's image root."""
    rng = np.random.default_rng(settings.seed)
    per_image = settings.objects_per_image
    eligible = [image for image in images if len(image.objects) >= per_image]
    if not eligible:
        raise DataError("POPE construction", f"no image has at least {per_image} objects")
    picks = sorted(rng.choice(len(eligible), min(settings.images, len(eligible)), replace=False))
    # Positives: a seeded draw of each image's objects (the original takes the file's first three).
    sampled = [
        AnnotatedImage(
            eligible[i].image_id,
            eligible[i].file_name,
            tuple(eligible[i].objects[j] for j in rng.permutation(len(eligible[i].objects))),
        )
        for i in picks
    ]
    frequency = Counter(name for image in sampled for name in image.objects)
    by_frequency = [name for name, _ in frequency.most_common()]
    co_occurrence: dict[str, Counter] = {}
    for image in sampled:
        for name in image.objects:
            partners = co_occurrence.setdefault(name, Counter())
            partners.update(other for other in image.objects if other != name)
    all_objects = list(frequency)  # first-seen order, what random.choice draws from
    records: dict[str, list[dict]] = {}
    for setting in POPE_SETTINGS:
        rows: list[dict] = []
        for image in sampled:
            asked: list[str] = []
            for positive in image.objects[:per_image]:
                asked.append(positive)
                if setting == "popular":
                    ranked = by_frequency
                elif setting == "adversarial":
                    ranked = [name for name, _ in co_occurrence[positive].most_common()]
                else:
                    ranked = []
                negative = _first_absent(ranked, image, asked)
                if negative is None:
                    negative = _random_absent(rng, all_objects, image, asked)
                asked.append(negative)
                for name, label in ((positive, "yes"), (negative, "no")):
                    rows.append(
                        {
                            "question_id": len(rows) + 1,
                            "image": f"{image_prefix}{image.file_name}",
                            "text": question_text(name),
                            "label": label,
                            "object": name,
                            "image_id": image.image_id,
                        }
                    )
        records[setting] = rows
    summary = {
        "images_asked": settings.images,
        "images_eligible": len(eligible),
        "images": len(sampled),
        "objects_per_image": per_image,
        "seed": settings.seed,
        "object_frequency": dict(frequency.most_common()),
    }
    return records, summary


def _first_absent(ranked: Iterable[str], image: AnnotatedImage, asked: list[str]) -> str | None:
    return next((name for name in ranked if name not in asked and name not in image.objects), None)


def _random_absent(
    rng: np.random.Generator, objects: list[str], image: AnnotatedImage, asked: list[str]
) -> str:
    candidates = [name for name in objects if name not in asked and name not in image.objects]
    if not candidates:  # the original loops forever here
        raise DataError(
            f"POPE construction, image {image.image_id}",
            f"no object of the sampled images is left to ask about as a negative "
            f"({len(objects)} objects in all)",
        )
    return candidates[rng.integers(len(candidates))]


def build_pope_files(
    instances_path: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
    settings: PopeConstruction,
    *,
    image_prefix: str = "",
) -> dict:
    """Build POPE from a COCO instances file and write one json-lines file per setting
    (``outputs``: setting -> path); returns the construction summary."""
    images = annotated_images(read_json(instances_path), str(instances_path))
    records, summary = build_pope(images, settings, image_prefix)
    questions = _write_settings(records, outputs, str(instances_path))
    return {"source": str(instances_path), "questions": questions, **summary}


def _write_settings(
    records: Mapping[str, list[dict]], outputs: Mapping[str, str | os.PathLike], source: str
) -> dict[str, int]:
    """Write each setting's records (all checked before the first file is written); returns
    the number of questions per setting."""
    missing = sorted(set(outputs) - set(records))
    if missing:
        raise DataError(source, f"no questions for setting(s) {missing}")
    for setting, path in outputs.items():
        write_jsonl(path, records[setting])
    return {setting: len(records[setting]) for setting in outputs}


def read_pope(path: str | os.PathLike) -> list[dict]:
    """A world POPE file (the records above), each checked to have an image, a question and a
    yes/no label."""
    return [{**row, "label": _label(row["label"], where)} for where, row in _checked_rows(path)]


def _checked_rows(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """(``file:line``, row) of a json-lines POPE file whose rows all have the official fields."""
    rows = []
    for line, row in iter_jsonl(path):
        where = f"{path}:{line}"
        for field in OFFICIAL_FIELDS:
            if row.get(field) in (None, ""):
                raise DataError(where, f"missing field {field!r}")
        rows.append((where, row))
    if not rows:
        raise DataError(str(path), "holds no questions")
    return rows


# --- the published files -----------------------------------------------------------------------


def _label(value, where: str) -> str:
    label = str(value).strip().lower() if isinstance(value, str) else None
    if label not in LABELS:
        raise DataError(where, f"field 'label': expected 'yes' or 'no', got {value!r}")
    return label


def _image_id(stem: str) -> int | None:
    """COCO_val2014_000000310196 -> 310196 (None when the name ends in no number)."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else None


def read_official(path: str | os.PathLike, image_prefix: str = "") -> list[dict]:
    """One of AoiDragon/POPE's ``coco_pope_{setting}.json`` (json lines ``{question_id, image,
    text, label}``) as POPE records; ``image_prefix`` makes the file names resolve from the
    world's image root."""
    return [
        {
            "question_id": row["question_id"],
            "image": f"{image_prefix}{row['image']}",
            "text": row["text"],
            "label": _label(row["label"], where),
            "object": asked_object(row["text"]),
            "image_id": _image_id(PurePosixPath(str(row["image"])).stem),
        }
        for where, row in _checked_rows(path)
    ]


def read_lmms_lab(
    paths: Sequence[str | os.PathLike], image_dir: str | os.PathLike, image_prefix: str = ""
) -> dict[str, list[dict]]:
    """lmms-lab/POPE parquet shards (one row per question, ``category`` the setting, ``image``
    a struct<bytes, path>) as POPE records per setting. Each distinct image is written once to
    ``image_dir`` as ``{image_source}.{format}``, its bytes unchanged; records name it as
    ``{image_prefix}{file}``. Question ids restart at 1 per setting, as in the official files;
    the parquet's own ids are kept as ``source_question_id``."""
    import pyarrow.parquet as pq

    records: dict[str, list[dict]] = {}
    written: dict[str, str] = {}
    image_dir = Path(image_dir)
    for path in paths:
        table = pq.read_table(path)
        missing = [field for field in LMMS_LAB_FIELDS if field not in table.column_names]
        if missing:
            raise DataError(str(path), f"missing column(s) {missing}")
        for index, row in enumerate(table.select(list(LMMS_LAB_FIELDS)).to_pylist()):
            where = f"{path} row {index}"
            for field in LMMS_LAB_FIELDS:
                if row[field] in (None, ""):
                    raise DataError(where, f"missing field {field!r}")
            setting = str(row["category"]).strip().lower()
            if setting not in POPE_SETTINGS:
                raise DataError(
                    where, f"field 'category': {row['category']!r} is not one of {POPE_SETTINGS}"
                )
            source = str(row["image_source"])
            if source not in written:
                written[source] = _write_image(row["image"], image_dir, source, where)
            rows = records.setdefault(setting, [])
            rows.append(
                {
                    "question_id": len(rows) + 1,
                    "image": f"{image_prefix}{written[source]}",
                    "text": row["question"],
                    "label": _label(row["answer"], where),
                    "object": asked_object(row["question"]),
                    "image_id": _image_id(PurePosixPath(source).stem),
                    "source_question_id": row["question_id"],
                }
            )
    return records


def _write_image(image, image_dir: Path, source: str, where: str) -> str:
    """Write one parquet image's bytes (checked to decode) and return its file name."""
    data = image.get("bytes") if isinstance(image, dict) else None
    if not data:
        raise DataError(where, "field 'image': no bytes (expected struct<bytes, path>)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image_format = (opened.format or "png").lower()
            opened.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(where, f"field 'image': cannot decode its bytes: {error}") from error
    name = f"{PurePosixPath(source).name}.{'jpg' if image_format == 'jpeg' else image_format}"
    with atomic_file(image_dir / name) as scratch:
        scratch.write_bytes(data)
    return name


def import_official(
    sources: Mapping[str, str | os.PathLike],
    outputs: Mapping[str, str | os.PathLike],
    *,
    image_folder: str | os.PathLike,
    image_root: str | os.PathLike,
) -> dict:
    """The official files (setting -> ``coco_pope_{setting}.json``) into world POPE files whose
    image paths (COCO val2014 file names, in ``image_folder``) resolve from ``image_root``."""
    prefix = f"{Path(os.path.relpath(image_folder, image_root)).as_posix()}/"
    records = {setting: read_official(path, prefix) for setting, path in sources.items()}
    return {"questions": _write_settings(records, outputs, "POPE official files")}


def import_lmms_lab(
    shards: Sequence[str | os.PathLike],
    outputs: Mapping[str, str | os.PathLike],
    image_dir: str | os.PathLike,
    *,
    image_prefix: str = "",
) -> dict:
    """lmms-lab/POPE parquet shards into world POPE files and their image folder (replaced as a
    whole, only once every row has been read)."""
    with atomic_directory(image_dir) as scratch:
        records = read_lmms_lab(shards, scratch, image_prefix)
        images = sum(1 for _ in scratch.iterdir())
        questions = _write_settings(
            records, outputs, f"lmms-lab POPE shards {list(map(str, shards))}"
        )
    return {"questions": questions, "images": images}


def import_published(
    file_format: str,
    folder: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
    *,
    image_dir: str | os.PathLike | None,
    image_folder: str | os.PathLike | None,
    image_root: str | os.PathLike,
) -> dict:
    """A fetched folder of published files (mllm.download.pope) into world POPE files: the
    official ones with their images in ``image_folder`` (COCO val2014), lmms-lab's with the
    images they hold written to ``image_dir``, both resolving from ``image_root``."""
    folder = Path(folder)
    if file_format == "official":
        if image_folder is None:
            raise DataError(str(folder), "the official POPE files need a COCO val2014 image folder")
        sources = {setting: folder / name for setting, name in OFFICIAL_FILES.items()}
        return import_official(sources, outputs, image_folder=image_folder, image_root=image_root)
    if file_format == "lmms_lab":
        if image_dir is None:
            raise DataError(str(folder), "lmms-lab POPE needs a folder for its images")
        shards = sorted(folder.glob(PurePosixPath(LMMS_LAB_SHARDS).name))
        if not shards:
            raise DataError(str(folder), f"no shards {PurePosixPath(LMMS_LAB_SHARDS).name}")
        prefix = f"{Path(os.path.relpath(image_dir, image_root)).as_posix()}/"
        return import_lmms_lab(shards, outputs, image_dir, image_prefix=prefix)
    raise DataError(str(folder), f"POPE format {file_format!r} is not one of {PUBLISHED_FORMATS}")
