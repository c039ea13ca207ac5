"""CHAIR (Rohrbach et al. 2018) exactly as the exercise's ``eval/chair.py`` computes it.

A caption's object mentions are its lemmas (``mllm.eval.text_analysis``) after merging
double words left to right, dropping 'seat' when 'toilet' is present, and keeping the
words of the CHAIR lexicon; each maps to a node word (its COCO category). A mention is
hallucinated when its node word is not among the image's ground-truth objects, which
come from the COCO instances and from the mentions in the image's GT captions.

Metrics (CHAIRs, CHAIRi and Recall in percent, Len in tokens — chair.py's printed numbers):

* CHAIRs = captions with a hallucinated mention / captions
* CHAIRi = hallucinated mentions / mentions (repeats counted)
* Recall = Σ distinct correct node words / Σ GT objects (over captions)
* Len    = tokens after merging double words, punctuation included / captions

CHAIRi and Recall are 0 when their denominator is (chair.py divides by zero there).
The GT is built once per annotation set into a JSON cache (``build_gt_cache``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm.atomic import write_json
from mllm.eval.chair_lexicon import ChairLexicon, default_lexicon
from mllm.eval.text_analysis import AnalyzerUnavailable, TextAnalyzer, get_analyzer
from mllm.records import SYNTAX, JSONFileError, iter_jsonl, read_json

GT_CACHE_FORMAT = "mllm.chair.gt/1"
log = logging.getLogger(__name__)


class ChairInputError(ValueError):
    """Bad CHAIR input, located by file and (for JSONL) 1-based line number."""

    def __init__(self, message: str, path: str | os.PathLike, line: int | None = None):
        self.path, self.line = Path(path), line
        super().__init__(f"{path}{f':{line}' if line else ''}: {message}")


# --- mentions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionObjects:
    """A caption after merging double words: ``tokens`` (surface, lowercased) and ``lemmas``
    align one to one; ``mentions`` are (token index, lexicon word, node word)."""

    tokens: list[str]
    lemmas: list[str]
    mentions: list[tuple[int, str, str]]


def caption_objects(
    caption: str, analyzer: TextAnalyzer, lexicon: ChairLexicon | None = None
) -> CaptionObjects:
    """chair.py's ``caption_to_words``, keeping surface tokens and true mention indices.

    (chair.py's own indices point into the unmerged lemmas and shift after the 'seat' rule;
    ours index ``tokens``, which is what a report highlights.)
    """
    lexicon = lexicon or default_lexicon()
    analyzed = analyzer.analyze(caption)
    tokens, lemmas = [], []
    i = 0
    while i < len(analyzed):
        pair = analyzed[i : i + 2]
        merged = lexicon.double_words.get(" ".join(lemma for _, lemma in pair))
        if merged is None:
            pair, merged = pair[:1], pair[0][1]
        tokens.append(" ".join(token for token, _ in pair))
        lemmas.append(merged)
        i += len(pair)
    # 'the seat of the toilet' must not fire 'chair'.
    drop_seat = "toilet" in lemmas and "seat" in lemmas
    mentions = [
        (index, lemma, lexicon.node_of[lemma])
        for index, lemma in enumerate(lemmas)
        if lemma in lexicon.objects and not (drop_seat and lemma == "seat")
    ]
    return CaptionObjects(tokens, lemmas, mentions)


# --- ground truth --------------------------------------------------------------------------


def _read_json(path: str | os.PathLike) -> Any:
    try:
        return read_json(path)
    except OSError as error:
        raise ChairInputError(f"cannot read JSON: {error}", path) from error
    except JSONFileError as error:
        raise ChairInputError(f"cannot read JSON: {error.problem}", path, error.line) from error


def _coco_records(
    path: str | os.PathLike, data: Any, key: str, fields: Sequence[str], id_field: str
) -> list:
    """``data[key]``, checked: records with ``fields``, whose ``id_field`` is an integer (COCO's
    ids are, and the cache's image ids must compare equal to the answers')."""
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(
        isinstance(record, dict) and all(field in record for field in fields) for record in records
    ):
        raise ChairInputError(f"not COCO format: expected '{key}' records with {fields}", path)
    for index, record in enumerate(records):
        value = record[id_field]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ChairInputError(
                f"{key} record {index}: {id_field!r} must be an integer, got {value!r}", path
            )
    return records


def build_gt_cache(
    instances_paths: Iterable[str | os.PathLike],
    captions_paths: Iterable[str | os.PathLike],
    analyzer: TextAnalyzer | None = None,
    image_ids: Collection[int] | None = None,
) -> dict[str, Any]:
    """Ground-truth node words per image from COCO ``instances_*.json`` + ``captions_*.json``.

    Every image listed in the files gets an entry, so an image without objects is known
    (and scored) rather than missing. ``image_ids`` restricts the work to those images
    (an image's GT depends only on its own annotations). Returns the JSON-ready cache.
    """
    instances_paths, captions_paths = list(instances_paths), list(captions_paths)
    analyzer = analyzer or get_analyzer()
    lexicon = default_lexicon()
    wanted = None if image_ids is None else set(image_ids)
    objects: dict[int, set[str]] = {}

    def add(image_id: int, nodes: Iterable[str] = ()) -> None:
        if wanted is None or image_id in wanted:
            objects.setdefault(image_id, set()).update(nodes)

    for path in instances_paths:
        data = _read_json(path)
        names = {
            c["id"]: c["name"]
            for c in _coco_records(path, data, "categories", ["id", "name"], "id")
        }
        for image in _coco_records(path, data, "images", ["id"], "id"):
            add(image["id"])
        for annotation in _coco_records(
            path, data, "annotations", ["image_id", "category_id"], "image_id"
        ):
            name = names.get(annotation["category_id"])
            if name not in lexicon.node_of:
                raise ChairInputError(
                    f"category {annotation['category_id']} ({name!r}) is not "
                    "a COCO object category",
                    path,
                )
            add(annotation["image_id"], [lexicon.node_of[name]])
    for path in captions_paths:
        data = _read_json(path)
        for image in _coco_records(path, data, "images", ["id"], "id"):
            add(image["id"])
        for annotation in _coco_records(
            path, data, "annotations", ["image_id", "caption"], "image_id"
        ):
            if wanted is None or annotation["image_id"] in wanted:
                mentions = caption_objects(annotation["caption"], analyzer, lexicon).mentions
                add(annotation["image_id"], [node for _, _, node in mentions])
    return {
        "format": GT_CACHE_FORMAT,
        "analyzer": analyzer.info,
        "sources": {
            "instances": [Path(p).name for p in instances_paths],
            "captions": [Path(p).name for p in captions_paths],
        },
        "objects": {str(image_id): sorted(objects[image_id]) for image_id in sorted(objects)},
    }


def read_gt_cache(path: str | os.PathLike) -> dict[str, Any]:
    cache = _read_json(path)
    if not isinstance(cache, dict) or cache.get("format") != GT_CACHE_FORMAT:
        raise ChairInputError(f"not a CHAIR GT cache (format {GT_CACHE_FORMAT})", path)
    return cache


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One caption to score; ``question_id`` is the answer's ``question_id`` or ``idx``."""

    image_id: int
    caption: str
    question_id: Any = None
    line: int | None = None


_COCO_IMAGE_ID = re.compile(r"(?:COCO_[a-z]+\d*_)?(\d+)(?:\.jpg)?")


def _image_id(record: dict, key: str) -> int | None:
    """``record[key]``, else ``record['metainfos'][key]`` (the exercise's answers), as an
    int; COCO file names ('COCO_val2014_000000000042.jpg') are accepted like chair.py does."""
    value = record.get(key)
    if value is None and isinstance(record.get("metainfos"), dict):
        value = record["metainfos"].get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _COCO_IMAGE_ID.fullmatch(value.strip()) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _jsonl_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises ``ChairInputError``."""
    try:
        yield from iter_jsonl(path)
    except OSError as error:
        raise ChairInputError(f"cannot read: {error}", path) from error
    except JSONFileError as error:
        problem = f"malformed JSON ({error.detail})" if error.reason == SYNTAX else error.problem
        raise ChairInputError(problem, path, error.line) from error


def load_answers(
    path: str | os.PathLike,
    caption_key: str = "answer",
    image_id_key: str = "image_id",
    known_image_ids: Collection[int] | None = None,
) -> list[Answer]:
    """Read an answers JSONL; any bad line raises ``ChairInputError`` naming file and line."""
    answers = []
    for number, record in _jsonl_objects(path):
        caption = record.get(caption_key)
        if not isinstance(caption, str):
            raise ChairInputError(
                f"missing or non-string caption key {caption_key!r}", path, number
            )
        image_id = _image_id(record, image_id_key)
        if image_id is None:
            raise ChairInputError(f"missing or invalid image id key {image_id_key!r}", path, number)
        if known_image_ids is not None and image_id not in known_image_ids:
            raise ChairInputError(f"image id {image_id} is not in the GT annotations", path, number)
        question_id = record.get("question_id", record.get("idx"))
        answers.append(Answer(image_id, caption, question_id, number))
    if not answers:
        raise ChairInputError("no answers to score", path)
    return answers


# --- scoring -------------------------------------------------------------------------------


def _percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0


def score_captions(
    answers: Sequence[Answer],
    gt_objects: Mapping[int, Collection[str]],
    analyzer: TextAnalyzer,
    lexicon: ChairLexicon | None = None,
) -> dict[str, Any]:
    """CHAIR metrics and the per-caption details of ``answers`` against ``gt_objects``."""
    if not answers:
        raise ValueError("CHAIR needs at least one caption")
    counts = dict.fromkeys(
        [
            "hallucinated_captions",
            "mentions",
            "hallucinated_mentions",
            "recalled_objects",
            "gt_objects",
            "tokens",
        ],
        0,
    )
    per_caption = []
    for answer in answers:
        found = caption_objects(answer.caption, analyzer, lexicon)
        gt = set(gt_objects[answer.image_id])
        hallucinated = [(i, word, node) for i, word, node in found.mentions if node not in gt]
        recalled = {node for _, _, node in found.mentions if node in gt}
        counts["hallucinated_captions"] += bool(hallucinated)
        counts["mentions"] += len(found.mentions)
        counts["hallucinated_mentions"] += len(hallucinated)
        counts["recalled_objects"] += len(recalled)
        counts["gt_objects"] += len(gt)
        counts["tokens"] += len(found.tokens)
        per_caption.append(
            {
                "question_id": answer.question_id,
                "image_id": answer.image_id,
                "caption": answer.caption,
                "tokens": found.tokens,
                "mentioned_words": [word for _, word, _ in found.mentions],
                "node_words": [node for _, _, node in found.mentions],
                "mention_indices": [i for i, _, _ in found.mentions],
                "hallucinated_words": [[word, node] for _, word, node in hallucinated],
                "hallucinated_indices": [i for i, _, _ in hallucinated],
                "recalled_objects": sorted(recalled),
                "gt_objects": sorted(gt),
            }
        )
    n = len(answers)
    return {
        "CHAIRs": _percent(counts["hallucinated_captions"], n),
        "CHAIRi": _percent(counts["hallucinated_mentions"], counts["mentions"]),
        "Recall": _percent(counts["recalled_objects"], counts["gt_objects"]),
        "Len": counts["tokens"] / n,
        "n_captions": n,
        "counts": counts,
        "analyzer": analyzer.info,
        "per_caption": per_caption,
    }


def score_answers(
    answers_path: str | os.PathLike,
    gt_cache: Mapping[str, Any],
    *,
    analyzer: TextAnalyzer | None = None,
    caption_key: str = "answer",
    image_id_key: str = "image_id",
) -> dict[str, Any]:
    """Score an answers JSONL against a GT cache (``build_gt_cache``/``read_gt_cache``).

    By default the analyzer is the one that built the cache, so GT and captions are
    analyzed alike; the cache's analyzer is recorded as ``gt_analyzer`` either way.
    """
    gt_analyzer = gt_cache["analyzer"]
    analyzer = analyzer or get_analyzer(gt_analyzer["name"])
    if analyzer.name != gt_analyzer["name"]:
        log.warning(
            "scoring with analyzer %s but the GT cache was built with %s",
            analyzer.name,
            gt_analyzer["name"],
        )
    gt_objects = {int(image_id): nodes for image_id, nodes in gt_cache["objects"].items()}
    answers = load_answers(answers_path, caption_key, image_id_key, known_image_ids=gt_objects)
    return {**score_captions(answers, gt_objects, analyzer), "gt_analyzer": gt_analyzer}


# --- command line --------------------------------------------------------------------------


def _read_image_ids(path: Path) -> set[int]:
    ids = set()
    for number, record in _jsonl_objects(path):
        image_id = _image_id(record, "image_id")
        if image_id is None:
            raise ChairInputError("missing or invalid 'image_id'", path, number)
        ids.add(image_id)
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mllm.eval.chair",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-cache", help="build the GT cache of an annotation set")
    build.add_argument("--instances", type=Path, nargs="+", required=True)
    build.add_argument("--captions", type=Path, nargs="+", required=True)
    build.add_argument(
        "--only-images-in",
        type=Path,
        help="JSONL (e.g. the benchmark) whose image ids restrict the cache",
    )
    build.add_argument("--analyzer", default="auto")
    build.add_argument("--out", type=Path, required=True)
    score = commands.add_parser("score", help="score an answers JSONL")
    score.add_argument("--answers", type=Path, required=True)
    score.add_argument("--cache", type=Path, required=True)
    score.add_argument("--caption-key", default="answer")
    score.add_argument("--image-id-key", default="image_id")
    score.add_argument("--analyzer", help="default: the analyzer that built the cache")
    score.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "build-cache":
        image_ids = _read_image_ids(args.only_images_in) if args.only_images_in else None
        cache = build_gt_cache(
            args.instances, args.captions, get_analyzer(args.analyzer), image_ids
        )
        write_json(args.out, cache, indent=1)
        print(f"{len(cache['objects'])} images, analyzer {cache['analyzer']['name']} -> {args.out}")
    else:
        analyzer = get_analyzer(args.analyzer) if args.analyzer else None
        metrics = score_answers(
            args.answers,
            read_gt_cache(args.cache),
            analyzer=analyzer,
            caption_key=args.caption_key,
            image_id_key=args.image_id_key,
        )
        write_json(args.out, metrics, indent=1)
        for key in ("CHAIRs", "CHAIRi", "Recall", "Len"):
            print(f"{key:<10}: {metrics[key]:.1f}")


if __name__ == "__main__":
    try:
        main()
    except (ChairInputError, AnalyzerUnavailable) as error:
        sys.exit(f"error: {error}")
