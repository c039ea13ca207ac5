"""The model checkpoint: a Hub snapshot pinned to the commit it resolves to, or a local folder
hard-linked into place; checked to hold a config and complete weights, and to be of the model
family the config names (``model.family``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from huggingface_hub import model_info, snapshot_download

from mllm.atomic import atomic_directory, remove_stale_scratch
from mllm.download.errors import FetchError
from mllm.download.fetch import local_path, read_fetched_json
from mllm.download.hub_tree import HUB_REPO_ID, link_tree
from mllm.family.registry import family_named
from mllm.workflow.plan import ConfigError

log = logging.getLogger(__name__)

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def snapshot_model(
    source: str,
    dest: Path,
    *,
    revision: str | None = None,
    allow_patterns: str | list[str] | None = None,
    trust_remote_code: bool = False,
    family: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> dict:
    """Copy a local checkpoint folder, or download a Hub repo, into ``dest`` and check it loads.

    A Hub download is pinned to the commit ``revision`` resolves to now, and the provenance records
    it, so the report says exactly which weights were evaluated. ``allow_patterns`` selects files
    with the Hub's rules in both cases. ``family`` (the config's ``model.family``) must be the family
    of the checkpoint's ``config.json`` ``model_type``: a ``ConfigError`` otherwise, and no
    ``dest``. ``min_pixels`` / ``max_pixels`` (``model.*``) are written into ``dest``'s processor
    settings, so every stage, and every model trained from it, loads the same limits.
    """
    dest = Path(dest)
    local = local_path(source)
    remove_stale_scratch(dest)
    with atomic_directory(dest) as scratch:
        if local is not None and local.is_dir():
            if revision is not None:
                raise ValueError(f"{source}: a local folder has no revision to pin ({revision!r})")
            link_tree(local, scratch, allow_patterns)
            commit = None
        elif HUB_REPO_ID.fullmatch(source):
            commit = _download_hub_snapshot(source, scratch, revision, allow_patterns)
        else:
            raise FetchError(f"{source}: neither a local folder nor a Hub repo id (owner/name)")
        summary = _checkpoint_summary(scratch, source, trust_remote_code)
        if family is not None:
            _check_family(family, summary["model_type"], source)
        pixel_limits = _set_pixel_limits(scratch, family, min_pixels, max_pixels)
    return {
        "source": source,
        "revision": revision,
        "commit": commit,
        "family": family,
        "pixel_limits": pixel_limits,
        **summary,
    }


def _set_pixel_limits(
    folder: Path, family: str | None, min_pixels: int | None, max_pixels: int | None
) -> dict | None:
    """The processor settings the configured pixel limits became (None without limits)."""
    if min_pixels is None and max_pixels is None:
        return None
    if family is None:
        raise ConfigError("config model.min_pixels/max_pixels: name the model.family they apply to")
    try:
        return family_named(family).set_pixel_limits(
            folder, min_pixels=min_pixels, max_pixels=max_pixels
        )
    except ValueError as error:
        raise ConfigError(f"config model.min_pixels/max_pixels: {error}") from error


def _check_family(name: str, model_type: str | None, source: str) -> None:
    try:
        expected = family_named(name).model_types
    except ValueError as error:
        raise ConfigError(f"config model.family: {error}") from error
    if model_type not in expected:
        raise ConfigError(
            f"config model.family is {name!r} (model_type {', '.join(expected)}), but {source}'s "
            f"config.json has model_type {model_type!r}: name the checkpoint's family"
        )


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
    config = read_fetched_json(folder / "config.json", f"{source}: config.json")
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
        "model_type": config.get("model_type"),
        "auto_map": auto_map,
        "remote_code_ignored": bool(auto_map) and not trust_remote_code,
    }


def _check_shards(folder: Path, source: str) -> None:
    """A sharded checkpoint's index names every shard: catch a download cut short, e.g. by
    ``allow_patterns``, before a GPU job fails to load it."""
    for index_name in SHARD_INDEXES:
        if not (folder / index_name).is_file():
            continue
        index = read_fetched_json(folder / index_name, f"{source}: {index_name}")
        shards = set(index.get("weight_map", {}).values()) if isinstance(index, dict) else set()
        missing = sorted(shard for shard in shards if not (folder / shard).is_file())
        if missing:
            raise FetchError(f"{source}: {index_name} names missing shards {missing}")
