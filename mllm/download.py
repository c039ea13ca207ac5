"""Fetch the real world's checkpoint and data: atomically, verified, with provenance.

Every fetch streams into a temporary sibling of its destination and renames it into place only
after the bytes (sha256) and the contents (COCO / benchmark schema, checkpoint files) check out, so
a failed or killed job never leaves a half-written file that Snakemake would take for a finished
output. A source is an ``http(s)://`` URL, a ``file://`` URL or a local path, so the same rules run
on cluster nodes without internet once the files were copied there by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlparse

from huggingface_hub import model_info, snapshot_download
from huggingface_hub.utils import filter_repo_objects
from tqdm.auto import tqdm

from mllm.atomic import atomic_directory, atomic_file

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Known sources
#
# Where the real world's inputs are published. Keys: ``kind`` ("hub_model", "url" or "manual"),
# ``source`` (a Hub repo id or URL to pass to the fetchers; None when no URL can be fetched),
# ``page`` (where a person downloads a "manual" source), ``files`` (archive members or per-file
# URLs), ``sha256`` and ``evidence`` (where each fact was read).
#
# sha256 is None everywhere: none of these publishers lists a SHA-256 digest, and we do not invent
# one. Pin the digest from the provenance of a first download in the experiment config instead.
# "manual" sources sit behind Google Drive pages, which serve HTML rather than the file to a plain
# HTTP client: download them by hand (or with gdown) and give the local path as the source.
# ---------------------------------------------------------------------------------------------

EXERCISE_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1j2kw_UZZq1JXfZI644RGNZzbLIB7bTT5"
EXERCISE_README = (
    "README of Haoye17/THUNLP_Multimodal_Excercise, read through the copy in "
    "BryceK99/Multimodal_Excercise 'README copy.md'"
)
EXERCISE_MIRROR_RAW = (
    "https://raw.githubusercontent.com/qinyh10300/THUNLP_Multimodal_Excercise/"
    "f25aaae55c243a1f72d5091eda6c5dcf92c31666"
)
SHIKRA_REC_EVAL_FILES = [
    f"REC_{name}.jsonl"
    for name in (
        "refcoco_unc_val", "refcoco_unc_testA", "refcoco_unc_testB",
        "refcoco+_unc_val", "refcoco+_unc_testA", "refcoco+_unc_testB",
        "refcocog_umd_val", "refcocog_umd_test",
    )
]  # fmt: skip
QWENVL_EVAL = "https://ofasys-wlcb.oss-cn-wulanchabu.aliyuncs.com/Qwen-VL/evaluation"

KNOWN_SOURCES: dict[str, dict] = {
    "exercise_model": {
        "kind": "hub_model",
        "source": "HaoyeZhang/MLLM_Excercise_Model",
        "revision": None,
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 模型下载: https://huggingface.co/HaoyeZhang/MLLM_Excercise_Model; "
            "qinyh10300/THUNLP_Multimodal_Excercise_0 download_model.py loads the same id. "
            "No commit is cited anywhere: snapshot_model records the one it resolves."
        ),
    },
    "coco2014_annotations": {
        "kind": "url",
        "source": "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        "files": [
            f"annotations/{kind}_{split}.json"
            for kind in ("captions", "instances")
            for split in ("train2014", "val2014")
        ],
        "sha256": None,
        "evidence": (
            "COCO download page; RLHF-V/RLAIF-V README (Object HalBench evaluation) fetches this URL. "
            "COCO publishes no digests; third-party download scripts check the sha1 "
            "8e0b9df54c175f1688400e98d1a97f292e726870 (not verified here)."
        ),
    },
    "coco2014_train_images": {
        "kind": "url",
        "source": "http://images.cocodataset.org/zips/train2014.zip",
        "sha256": None,
        "evidence": (
            "RefCOCO images are COCO train2014 (shikras/shikra "
            "config/_base_/dataset/DEFAULT_TEST_REC_VARIANT.py image_folder .../mscoco/images/train2014/)."
        ),
    },
    "objhal_bench": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["objhal_bench.jsonl"],
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 数据下载 (Google Drive folder). Related but not verified to "
            "be identical: the 300 Object HalBench questions at "
            "https://github.com/RLHF-V/RLAIF-V/blob/main/eval/data/obj_halbench_300_with_image.jsonl"
        ),
    },
    "preference_train": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["preference_train.json"],
        "sha256": None,
        "evidence": f"{EXERCISE_README}, sections 任务3 and 数据下载 (Google Drive folder).",
    },
    "sft_images": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["sft_images.tar.gz"],
        "sha256": None,
        "evidence": f"{EXERCISE_README}, section 数据下载: unpack into data/ and rename to images/.",
    },
    "chair_300": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["chair_300.pkl"],
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 数据下载. Optional: mllm.eval.chair rebuilds the same "
            "ground truth from coco2014_annotations."
        ),
    },
    "sft_train": {
        "kind": "url",
        "source": f"{EXERCISE_MIRROR_RAW}/data/train.json",
        "sha256": None,
        "evidence": (
            "data/train.json of the exercise repo, pinned to commit f25aaae of the mirror "
            "qinyh10300/THUNLP_Multimodal_Excercise, whose tree equals upstream a249593 (EXERCISE_SPEC.md)."
        ),
    },
    "sft_test": {
        "kind": "url",
        "source": f"{EXERCISE_MIRROR_RAW}/data/test.json",
        "sha256": None,
        "evidence": "data/test.json, pinned like sft_train.",
    },
    "shikra_annotations": {
        "kind": "manual",
        "source": None,
        "page": "https://drive.google.com/file/d/1CNLu1zJKPtliQEYCZlZ8ykH00ppInnyN/view",
        "files": [
            *SHIKRA_REC_EVAL_FILES,
            "REC_ref3_train.jsonl",
            "GC_genome196_train.jsonl",
            "CWB_flickr30k_train.jsonl",
            "GPT4GEN_BoxCoT_train.jsonl",
            "GPT4GEN_RD_BoxCoT_train.jsonl",
        ],
        "sha256": None,
        "evidence": (
            "shikras/shikra README (News 07/03) and docs/data.md: one zip of all annotation jsonl "
            "files; eval file names from config/_base_/dataset/DEFAULT_TEST_REC_VARIANT.py, train "
            "names from the exercise's data/prepare_grounding.py. Lines are {img_path, expression, "
            "bbox}. The folder layout inside the zip is not documented; fetch_file matches a member "
            "by file name."
        ),
    },
    "refcoco_qwenvl": {
        "kind": "url",
        "source": None,
        "files": {
            "refcoco_val": f"{QWENVL_EVAL}/refcoco/refcoco_val.jsonl",
            "refcoco_testA": f"{QWENVL_EVAL}/refcoco/refcoco_testA.jsonl",
            "refcoco_testB": f"{QWENVL_EVAL}/refcoco/refcoco_testB.jsonl",
            "refcoco+_val": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_val.jsonl",
            "refcoco+_testA": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_testA.jsonl",
            "refcoco+_testB": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_testB.jsonl",
            "refcocog_val": f"{QWENVL_EVAL}/refcocog/refcocog_val.jsonl",
            "refcocog_test": f"{QWENVL_EVAL}/refcocog/refcocog_test.jsonl",
        },
        "sha256": None,
        "evidence": (
            "QwenLM/Qwen-VL eval_mm/EVALUATION.md. Directly downloadable, but in Qwen-VL's schema "
            "{image, sent, bbox, width, height}, not Shikra's: convert before use."
        ),
    },
}

# ---------------------------------------------------------------------------------------------
# Fetching bytes
# ---------------------------------------------------------------------------------------------

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60
RETRY_DELAYS_SECONDS = (2.0, 10.0, 30.0)  # waits before the 2nd, 3rd and 4th attempt
TRANSIENT_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "mllm-workflow (python urllib)"


class FetchError(RuntimeError):
    """A source that could not be fetched, or does not hold what it should; the message names it."""


class _TransientError(Exception):
    """A failure worth another attempt: a dropped connection, an overloaded server."""


def fetch_file(
    source: str, dest: Path, *, sha256: str | None = None, member: str | None = None
) -> dict:
    """Fetch ``source``, or one ``member`` of the zip archive it names, to ``dest``.

    ``sha256`` checks the fetched source itself (the archive when ``member`` is given, since that
    is what publishers list digests for); the returned ``sha256`` and ``bytes`` describe it too.
    """
    dest = Path(dest)
    with atomic_file(dest) as scratch:
        if member is None:
            digest, size = _fetch_bytes(source, scratch, sha256=sha256)
        else:
            with _scratch_dir(dest) as work:
                archive = work / "archive.zip"
                digest, size = _fetch_bytes(source, archive, sha256=sha256)
                _extract_member(archive, member, scratch, source)
    return {"source": source, "sha256": digest, "bytes": size, "member": member}


def _fetch_bytes(
    source: str | os.PathLike, target: Path, *, sha256: str | None = None
) -> tuple[str, int]:
    """Stream ``source`` into ``target``; return its (sha256, size), checked against ``sha256``."""
    path = _local_path(source)
    if path is None:
        digest, size = _download(os.fspath(source), target)
    elif path.is_file():
        with open(path, "rb") as reader:
            digest, size = _pump(reader, target, path.stat().st_size, path.name)
    else:
        raise FetchError(f"{source}: no such file")
    if sha256 is not None and sha256.strip().lower() != digest:
        raise FetchError(f"{source}: sha256 mismatch: expected {sha256}, got {digest}")
    return digest, size


def _local_path(source: str | os.PathLike) -> Path | None:
    """The path a source names on this machine, or None for an http(s) URL."""
    text = os.fspath(source)
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if "://" in text:
        raise FetchError(
            f"{text}: unsupported scheme {parsed.scheme!r} (use http(s)://, file:// or a path)"
        )
    return Path(text).expanduser()


def _pump(reader: BinaryIO, target: Path, total: int | None, label: str) -> tuple[str, int]:
    """Copy ``reader`` into ``target``, hashing on the way, behind a progress bar."""
    digest = hashlib.sha256()
    size = 0
    progress = tqdm(
        total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, mininterval=5
    )
    with open(target, "wb") as writer, progress:
        while chunk := reader.read(CHUNK_BYTES):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            progress.update(len(chunk))
    return digest.hexdigest(), size


def _download(url: str, target: Path) -> tuple[str, int]:
    """GET ``url`` into ``target``, retrying transient failures with growing waits."""
    for delay in RETRY_DELAYS_SECONDS:
        try:
            return _download_once(url, target)
        except _TransientError as error:
            log.warning("%s: %s; retrying in %.0f s", url, error, delay)
            time.sleep(delay)
    try:
        return _download_once(url, target)
    except _TransientError as error:
        attempts = len(RETRY_DELAYS_SECONDS) + 1
        raise FetchError(f"{url}: still failing after {attempts} attempts: {error}") from error


def _download_once(url: str, target: Path) -> tuple[str, int]:
    """One GET; a permanent HTTP error (404, 403, ...) raises FetchError, not worth a retry."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            if response.headers.get_content_type() == "text/html":
                raise FetchError(
                    f"{url}: the server sent an HTML page, not the file (a Google Drive or GitHub "
                    "page?); download it by hand and give its local path"
                )
            expected = _content_length(response)
            digest, size = _pump(response, target, expected, PurePosixPath(urlparse(url).path).name)
    except urllib.error.HTTPError as error:
        if error.code in TRANSIENT_HTTP_CODES:
            raise _TransientError(f"HTTP {error.code} {error.reason}") from error
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    ) as error:
        raise _TransientError(str(error) or type(error).__name__) from error
    # http.client returns a short body without complaint when the server hangs up early.
    if expected is not None and size != expected:
        raise _TransientError(f"connection closed after {size} of {expected} bytes")
    return digest, size


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


@contextmanager
def _scratch_dir(beside: Path) -> Iterator[Path]:
    """A work folder next to ``beside``: same file system, so results rename into place."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=beside.parent, prefix=f".{beside.name}.") as work:
        yield Path(work)


def _extract_member(archive: Path, member: str, target: Path, source: str) -> tuple[str, int]:
    """Copy one member of the zip ``archive`` into ``target``; return its (sha256, size)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            info = _find_member(bundle, member, source)
            with bundle.open(info) as reader:
                return _pump(reader, target, info.file_size, PurePosixPath(member).name)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{source}: not a readable zip archive ({error})") from error


def _find_member(bundle: zipfile.ZipFile, member: str, source: str) -> zipfile.ZipInfo:
    """``member`` by full name, else the one entry with its file name: archives of the same data
    differ in their top folder (Shikra's layout is undocumented)."""
    names = bundle.namelist()
    if member in names:
        return bundle.getinfo(member)
    wanted = PurePosixPath(member).name
    same_name = [name for name in names if PurePosixPath(name).name == wanted]
    if len(same_name) == 1:
        return bundle.getinfo(same_name[0])
    raise FetchError(
        f"{source}: no single member {member!r} in the archive "
        f"({len(same_name)} with that file name; it holds e.g. {names[:5]})"
    )


# ---------------------------------------------------------------------------------------------
# COCO annotations
# ---------------------------------------------------------------------------------------------

COCO_REQUIRED_KEYS = {
    "captions": ("images", "annotations"),
    "instances": ("images", "annotations", "categories"),
}


def fetch_coco_annotations(
    source: str,
    dest_dir: Path,
    *,
    splits: Sequence[str] = ("train2014", "val2014"),
    sha256: str | None = None,
) -> dict:
    """Write ``dest_dir/{captions,instances}_{split}.json`` from COCO's annotations zip (URL or
    local copy) or from a folder that already holds them (flat or under ``annotations/``).

    Every file is validated before any is moved into place, so a broken source leaves ``dest_dir``
    as it was. ``sha256`` checks the zip; a folder has no single digest to check.
    """
    names = {f"{kind}_{split}.json": kind for kind in COCO_REQUIRED_KEYS for split in splits}
    return _fetch_file_set(
        source,
        Path(dest_dir),
        {name: f"annotations/{name}" for name in names},
        locate=_coco_file_in,
        validate=lambda path, name: _validate_coco(
            path, COCO_REQUIRED_KEYS[names[name]], f"{source}: {name}"
        ),
        sha256=sha256,
    )


def _fetch_file_set(
    source: str,
    dest_dir: Path,
    members: dict[str, str],
    *,
    locate: Callable[[Path, str], Path],
    validate: Callable[[Path, str], None],
    sha256: str | None,
) -> dict:
    """Fetch several files from one zip (URL or local; ``members`` maps each file name to its
    member) or from a local folder (``locate(folder, name)`` finds each), check every one, then
    move them into ``dest_dir`` together, so a broken source leaves ``dest_dir`` as it was.
    ``sha256`` checks the zip; a folder has no single digest to check."""
    local = _local_path(source)
    folder = local if local is not None and local.is_dir() else None
    if folder is not None and sha256 is not None:
        raise ValueError(f"{source}: sha256 checks a zip archive, not a folder")
    with _scratch_dir(dest_dir) as work:
        if folder is None:
            archive = work / "archive.zip"
            archive_digest, archive_size = _fetch_bytes(source, archive, sha256=sha256)
            files = {
                name: _extract_member(archive, member, work / name, source)
                for name, member in members.items()
            }
        else:
            archive_digest = archive_size = None
            files = {name: _fetch_bytes(locate(folder, name), work / name) for name in members}
        for name in members:
            validate(work / name, name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        for name in members:
            os.replace(work / name, dest_dir / name)
    return {
        "source": source,
        "sha256": archive_digest,
        "bytes": archive_size,
        "files": {
            name: {"sha256": digest, "bytes": size} for name, (digest, size) in files.items()
        },
    }


def _coco_file_in(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / "annotations" / name):
        if candidate.is_file():
            return candidate
    raise FetchError(f"{folder}: holds no {name} (looked in it and in annotations/)")


def _validate_coco(path: Path, required: Sequence[str], label: str) -> None:
    """Fail here on a truncated or wrong file, not deep inside the CHAIR ground-truth build."""
    data = _read_json(path, label)
    if not isinstance(data, dict):
        raise FetchError(f"{label}: not a COCO annotation file (the top level is not an object)")
    missing = [key for key in required if not isinstance(data.get(key), list)]
    if missing:
        raise FetchError(f"{label}: not a COCO annotation file (no {', '.join(missing)} list)")


def _read_json(path: Path, label: str) -> object:
    try:
        return json.loads(path.read_bytes())
    except ValueError as error:
        raise FetchError(f"{label}: not valid JSON ({error})") from error


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------

BENCHMARK_FIELDS = ("image", "question", "image_id")


def fetch_benchmark(source: str, dest: Path, *, sha256: str | None = None) -> dict:
    """Fetch an objhal_bench-style JSONL (``{image, question, image_id, org_idx?}`` per line) to
    ``dest`` after checking every line, so a bad line fails here with its number, before any GPU
    decoding starts."""
    dest = Path(dest)
    with atomic_file(dest) as scratch:
        digest, size = _fetch_bytes(source, scratch, sha256=sha256)
        questions = _validate_benchmark(scratch, source)
    return {
        "source": source,
        "sha256": digest,
        "bytes": size,
        "member": None,
        "questions": questions,
    }


def _validate_benchmark(path: Path, source: str) -> int:
    """Check each non-blank line; return how many questions the file holds."""
    questions = 0
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    _validate_question(line, f"{source}:{number}")
                    questions += 1
    except UnicodeDecodeError as error:
        raise FetchError(f"{source}: not UTF-8 text ({error})") from error
    if not questions:
        raise FetchError(f"{source}: holds no questions")
    return questions


def _validate_question(line: str, where: str) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise FetchError(f"{where}: malformed JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise FetchError(f"{where}: expected a JSON object")
    missing = [field for field in BENCHMARK_FIELDS if record.get(field) in (None, "")]
    if missing:
        raise FetchError(f"{where}: missing {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------
# Grounding: REC annotation files and the COCO images they point into
# ---------------------------------------------------------------------------------------------


def fetch_rec_files(
    source: str, dest_dir: Path, names: Sequence[str], *, sha256: str | None = None
) -> dict:
    """Write ``dest_dir/<name>`` for each REC JSONL in ``names`` from an annotation zip (URL or
    local; members matched by file name, since Shikra's zip layout is undocumented) or a folder.

    Each file's first record must parse as a JSON object, so a Drive HTML page or a truncated
    download fails here with its name; all files move into place together or none does.
    """
    return _fetch_file_set(
        source,
        Path(dest_dir),
        {name: name for name in names},
        locate=lambda folder, name: folder / name,
        validate=lambda path, name: _validate_jsonl_head(path, f"{source}: {name}"),
        sha256=sha256,
    )


def _validate_jsonl_head(path: Path, label: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as lines:
        first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise FetchError(f"{label}: empty file")
    try:
        record = json.loads(first)
    except json.JSONDecodeError as error:
        raise FetchError(f"{label}: the first line is not JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise FetchError(f"{label}: the first line is not a JSON object")


def fetch_image_folder(source: str, dest: Path, *, sha256: str | None = None) -> dict:
    """Unpack an image zip (URL or local, e.g. COCO's ``train2014.zip``) into the folder ``dest``.

    The archive's single top folder (``train2014/``) is stripped, so image paths in the REC files
    resolve against ``dest``. Members that would land outside ``dest`` are refused. The folder
    appears only once complete.
    """
    dest = Path(dest)
    with atomic_directory(dest) as scratch, _scratch_dir(dest) as work:
        archive = work / "archive.zip"
        digest, size = _fetch_bytes(source, archive, sha256=sha256)
        try:
            with zipfile.ZipFile(archive) as bundle:
                images = _unpack_images(bundle, Path(scratch), source)
        except zipfile.BadZipFile as error:
            raise FetchError(f"{source}: not a readable zip archive ({error})") from error
    return {"source": source, "sha256": digest, "bytes": size, "images": images}


def _unpack_images(bundle: zipfile.ZipFile, target: Path, source: str) -> int:
    members = [info for info in bundle.infolist() if not info.is_dir()]
    if not members:
        raise FetchError(f"{source}: the archive holds no files")
    for info in members:
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts:
            raise FetchError(f"{source}: unsafe member path {info.filename!r}")
    tops = {PurePosixPath(info.filename).parts[0] for info in members}
    strip = 1 if len(tops) == 1 and all("/" in info.filename for info in members) else 0
    for info in members:
        path = target.joinpath(*PurePosixPath(info.filename).parts[strip:])
        path.parent.mkdir(parents=True, exist_ok=True)
        with bundle.open(info) as reader, open(path, "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK_BYTES)
    return len(members)


# ---------------------------------------------------------------------------------------------
# Model checkpoint
# ---------------------------------------------------------------------------------------------

HUB_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def snapshot_model(
    source: str,
    dest: Path,
    *,
    revision: str | None = None,
    allow_patterns: str | list[str] | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Copy a local checkpoint folder, or download a Hub repo, into ``dest`` and check it loads.

    A Hub download is pinned to the commit ``revision`` resolves to now, and the provenance records
    it, so the report says exactly which weights were evaluated. ``allow_patterns`` selects files
    with the Hub's rules in both cases.
    """
    dest = Path(dest)
    local = _local_path(source)
    with atomic_directory(dest) as scratch:
        if local is not None and local.is_dir():
            if revision is not None:
                raise ValueError(f"{source}: a local folder has no revision to pin ({revision!r})")
            _link_tree(local, scratch, allow_patterns)
            commit = None
        elif HUB_REPO_ID.fullmatch(source):
            commit = _download_hub_snapshot(source, scratch, revision, allow_patterns)
        else:
            raise FetchError(f"{source}: neither a local folder nor a Hub repo id (owner/name)")
        summary = _checkpoint_summary(scratch, source, trust_remote_code)
    return {"source": source, "revision": revision, "commit": commit, **summary}


def _link_tree(source_dir: Path, target_dir: Path, allow_patterns: str | list[str] | None) -> None:
    """Mirror the selected files of ``source_dir``, hard-linked where the file system allows: a
    16 GB checkpoint then costs neither space nor time, and checkpoints are replaced, never edited
    in place, so sharing inodes is safe."""
    relative = [
        path.relative_to(source_dir).as_posix()
        for path in sorted(source_dir.rglob("*"))
        if path.is_file()
    ]
    for name in filter_repo_objects(relative, allow_patterns=allow_patterns):
        target = target_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # resolved first: a Hub cache snapshot holds symlinks, and Linux links the link itself
            os.link((source_dir / name).resolve(), target)
        except OSError:
            shutil.copy2(source_dir / name, target)


def _download_hub_snapshot(
    repo_id: str, target: Path, revision: str | None, allow_patterns: str | list[str] | None
) -> str:
    """Download ``repo_id`` at the commit ``revision`` resolves to; return that commit."""
    commit = model_info(repo_id, revision=revision).sha
    snapshot_download(
        repo_id=repo_id, revision=commit, local_dir=target, allow_patterns=allow_patterns
    )
    # .cache/ holds the Hub's resume bookkeeping, not part of the model.
    shutil.rmtree(target / ".cache", ignore_errors=True)
    return commit


def _checkpoint_summary(folder: Path, source: str, trust_remote_code: bool) -> dict:
    """Fail unless ``folder`` holds config.json and complete weights; summarise it for provenance."""
    if not (folder / "config.json").is_file():
        raise FetchError(f"{source}: no config.json")
    config = _read_json(folder / "config.json", f"{source}: config.json")
    if not isinstance(config, dict):
        raise FetchError(f"{source}: config.json is not a JSON object")
    weights = sorted(path.name for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern))
    if not weights:
        raise FetchError(f"{source}: no weights (*.safetensors or pytorch_model*.bin)")
    _check_shards(folder, source)
    auto_map = config.get("auto_map")
    if auto_map and not trust_remote_code:
        log.info(
            "%s ships remote code (auto_map); not trusted: mllm loads it with its own classes",
            source,
        )
    files = [path for path in folder.rglob("*") if path.is_file()]
    return {
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "weights": weights,
        "auto_map": auto_map,
        "remote_code_ignored": bool(auto_map) and not trust_remote_code,
    }


def _check_shards(folder: Path, source: str) -> None:
    """A sharded checkpoint's index names every shard: catch a download cut short, e.g. by
    ``allow_patterns``, before a GPU job fails to load it."""
    for index_name in SHARD_INDEXES:
        if not (folder / index_name).is_file():
            continue
        index = _read_json(folder / index_name, f"{source}: {index_name}")
        shards = set(index.get("weight_map", {}).values()) if isinstance(index, dict) else set()
        missing = sorted(shard for shard in shards if not (folder / shard).is_file())
        if missing:
            raise FetchError(f"{source}: {index_name} names missing shards {missing}")
