"""RLAIF-V's parquet shards (``openbmb/RLAIF-V-Dataset``) as the project's preference records.

A shard row ``{ds_name, image: {bytes, path}, question, chosen, rejected, origin_dataset,
origin_split, idx, image_path}`` becomes ``{idx, question, chosen, rejected, image, metainfos}``
(the exercise's ``preference_train.json``, read by ``mllm.preference.dataset``):

* ``image`` is base64 of the image bytes exactly as published (never re-encoded);
* ``question`` stays as published: it carries no ``<image>`` tag, and the preference loader
  prepends ``"<image>\\n"`` as RLAIF-V's own loader does (adding it here would give two);
* ``idx`` is a string (RLAIF-V's is one; an int is stringified);
* the other columns go to ``metainfos``; ``origin_split`` is parsed when it holds JSON, kept as
  the string otherwise (its keys are unverified), and ``""`` when empty. ``shard``/``row`` say
  where the pair came from.

A bad row (undecodable image, an empty response, identical responses, a missing field) raises a
``DataError`` naming shard, row and field, or with ``on_bad_record="skip"`` is counted per reason.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence

from mllm.data.errors import BadRecord, BadRecordPolicy, DataError, SkipTally
from mllm.data.images import BASE64_MIN_LENGTH
from mllm.data.parquet_rows import image_bytes, iter_parquet_rows

log = logging.getLogger(__name__)

REPO_ID = "openbmb/RLAIF-V-Dataset"
REQUIRED_COLUMNS = ("image", "question", "chosen", "rejected", "idx")
METAINFO_COLUMNS = ("ds_name", "origin_dataset", "origin_split", "image_path")


def shard_patterns(shards: Sequence[int] | None) -> list[str]:
    """The file patterns of the selected shards (``RLAIF-V-Dataset_000.parquet`` …); None: all."""
    if shards is None:
        return ["*.parquet"]
    if not shards:
        raise ValueError("shards: an empty selection (leave it out to take every shard)")
    return [f"RLAIF-V-Dataset_{shard:03d}.parquet" for shard in sorted(set(shards))]


def convert_rlaif_v(
    shard_paths: Sequence[str | os.PathLike],
    *,
    max_rows: int | None = None,
    on_bad_record: BadRecordPolicy = "raise",
) -> tuple[list[dict], dict]:
    """(preference records, summary) from the shards in order, stopping after ``max_rows``
    records (None: every row). The summary counts rows read, records kept and skips per reason."""
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be positive or None, got {max_rows}")
    if not shard_paths:
        raise DataError("RLAIF-V", "no parquet shards to convert")
    tally = SkipTally(on_bad_record)
    records: list[dict] = []
    read = 0
    for where, row in iter_parquet_rows(sorted(map(str, shard_paths)), REQUIRED_COLUMNS):
        if max_rows is not None and len(records) >= max_rows:
            break
        read += 1
        try:
            records.append(preference_record(row, where))
        except BadRecord as error:
            tally.reject(error)
    if tally.skipped:
        log.warning("RLAIF-V: skipped %s of %d rows; first: %s", tally.skipped, read, tally.first)
    if not records:
        raise DataError("RLAIF-V", f"no usable rows in {len(shard_paths)} shard(s)")
    summary = {"rows_read": read, "records": len(records), "skipped": tally.skipped}
    return records, summary


def preference_record(row: dict, where: str) -> dict:
    """One shard row -> one preference record (see the module docstring)."""
    texts = {}
    for field in ("question", "chosen", "rejected"):
        value = row.get(field)
        if not isinstance(value, str):
            raise BadRecord(where, "missing_field", f"field {field!r} is not a string: {value!r}")
        texts[field] = value
    for field in ("chosen", "rejected"):
        if not texts[field].strip():
            raise BadRecord(where, "empty_response", f"field {field!r} is empty")
    if texts["chosen"].strip() == texts["rejected"].strip():
        raise BadRecord(where, "identical_responses", "fields 'chosen' and 'rejected' are equal")
    if row.get("idx") in (None, ""):
        raise BadRecord(where, "missing_field", "field 'idx' is empty")
    encoded = base64.b64encode(image_bytes(row.get("image"), where)).decode("ascii")
    if len(encoded) <= BASE64_MIN_LENGTH:  # the exercise's format would read it as a path
        raise BadRecord(where, "undecodable_image", f"field 'image': {len(encoded)} base64 chars")
    shard, _, number = where.rpartition(" row ")
    metainfos = {column: row.get(column) for column in METAINFO_COLUMNS if column in row}
    if "origin_split" in metainfos:
        metainfos["origin_split"] = _lenient_json(metainfos["origin_split"])
    return {
        "idx": str(row["idx"]),
        "question": texts["question"],
        "chosen": texts["chosen"],
        "rejected": texts["rejected"],
        "image": encoded,
        "metainfos": {**metainfos, "shard": shard, "row": int(number)},
    }


def _lenient_json(value):
    """A JSON string's value; an empty or non-JSON string (format unverified) kept as it is."""
    if not isinstance(value, str) or not value.strip():
        return value or ""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
