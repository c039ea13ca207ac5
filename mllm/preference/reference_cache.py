"""Reference-model log-probs of every preference pair, scored once and cached as safetensors.

DPO and NCA compare the policy with the frozen reference model on every pair. The reference is
fixed, so its log-probs are computed once (no reference forward, and no second model in memory,
during training) and shared by every loss and β.

The cache is keyed by *content*, not by a name (the exercise keyed it by ``ref_name`` only,
EXERCISE_SPEC §7.8): a sha256 per input that changes the numbers (reference weights, tokenizer,
the family's processing — ``ModelFamily.cache_identity``: processor, pixel limits, chat
template —, data, prompt template) is stored with it, and a cache whose key differs is
refused naming the inputs that changed. Safetensors holds only tensors and string metadata, so
loading a cache never runs code (the exercise's pickle could).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate.utils import send_to_device
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from mllm.atomic import atomic_file
from mllm.data.collators import preference_collate
from mllm.data.images import image_file
from mllm.data.preprocess import IGNORE_INDEX
from mllm.data.template import DEFAULT_SYSTEM_PROMPT
from mllm.distributed import is_main_process
from mllm.family.base import LoadedModel
from mllm.hashing import update_with_file
from mllm.train.datasets import read_json_records

from .dataset import image_reference
from .logps import concatenated_logps

CACHE_FORMAT = "mllm-reference-logps/2"  # /2: the key is one metadata entry (byte-stable files)
# Bump when preprocessing or the chat rendering changes the tokens of a pair for the same inputs.
TEMPLATE_VERSION = "1"
_MISSING_FILE = b"<missing>"


# -- content key ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheKey:
    """sha256 of each input that determines the reference log-probs, by name."""

    components: Mapping[str, str]

    @property
    def digest(self) -> str:
        text = "".join(f"{name}={value}\n" for name, value in sorted(self.components.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    def differing(self, other: CacheKey) -> list[str]:
        names = set(self.components) | set(other.components)
        return sorted(n for n in names if self.components.get(n) != other.components.get(n))


def reference_cache_key(
    *,
    model_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    processing: Mapping,
    max_length: int,
    image_folder: str | os.PathLike | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> CacheKey:
    """The key of the reference log-probs of ``data_path`` under the model in ``model_dir``;
    ``processing`` is the family's ``cache_identity`` (kept under the name ``image_config``, which
    the own family's slicing settings had before there were families, so its keys stay valid)."""
    return CacheKey(
        {
            "reference_model": hash_model_files(model_dir),
            "tokenizer": hash_tokenizer(tokenizer),
            "image_config": hash_json(dict(processing)),
            "data": hash_data(data_path, image_folder),
            "template": hash_json(
                {
                    "system_prompt": system_prompt,
                    "max_length": max_length,
                    "version": TEMPLATE_VERSION,
                }
            ),
        }
    )


def loaded_model_cache_key(
    loaded: LoadedModel,
    *,
    model_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    max_length: int,
) -> CacheKey:
    """The key of ``data_path``'s reference log-probs under ``loaded``, loaded from ``model_dir``:
    what the reference job writes with the cache and what each training run expects of it."""
    return reference_cache_key(
        model_dir=model_dir,
        data_path=data_path,
        tokenizer=loaded.tokenizer,
        processing=loaded.family.cache_identity(loaded),
        max_length=max_length,
        image_folder=image_folder,
    )


def hash_model_files(model_dir: str | os.PathLike) -> str:
    """sha256 over the bytes of the model's ``*.safetensors`` weights (sharded or not) and its
    ``config.json`` (architecture constants such as ``rope_theta`` change the numbers too)."""
    model_dir = Path(model_dir)
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights to key the cache on")
    digest = hashlib.sha256()
    for path in [*weights, model_dir / "config.json"]:
        digest.update(path.name.encode() + b"\0")
        update_with_file(digest, path)
    return digest.hexdigest()


def hash_tokenizer(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the vocabulary, merges, normalisation, special tokens and chat template."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())  # fast tokenizers only
    return hash_json(
        {
            "backend": backend,
            "special_tokens": tokenizer.special_tokens_map,
            "chat_template": tokenizer.chat_template,
        }
    )


def hash_data(data_path: str | os.PathLike, image_folder: str | os.PathLike | None) -> str:
    """sha256 of the data file's bytes and of every image file its records resolve to (in
    ``image`` or ``image_path``, as ``PreferenceDataset`` reads them).

    Base64 images are part of the file's bytes; images by path are hashed by content, so editing
    one invalidates the cache while touching or copying the folder does not.
    """
    digest = hashlib.sha256()
    update_with_file(digest, Path(data_path))
    refs = (image_reference(r) for r in read_json_records(data_path) if isinstance(r, dict))
    image_paths = sorted({ref for ref in refs if isinstance(ref, str) and image_file(ref)})
    for image_path in image_paths:
        digest.update(str(image_path).encode() + b"\0")
        path = image_file(image_path, image_folder)
        if path.is_file():
            update_with_file(digest, path)
        else:
            digest.update(_MISSING_FILE)
    return digest.hexdigest()


def hash_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# -- the log-probs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceLogps:
    """Reference log-probs of pairs, one row per pair; the field names are the file's tensor names.

    Per-token log-probs keep only supervised tokens, left-aligned and zero-padded to the longest
    response (``*_token_lengths`` gives each row's count).
    """

    pair_indices: torch.Tensor  # [N] long: the pair's index in the PreferenceDataset
    chosen_logps: torch.Tensor  # [N] sum over tokens
    rejected_logps: torch.Tensor  # [N]
    chosen_avg_logps: torch.Tensor  # [N] mean over tokens
    rejected_avg_logps: torch.Tensor  # [N]
    chosen_token_logps: torch.Tensor  # [N, Tc]
    chosen_token_lengths: torch.Tensor  # [N] long
    rejected_token_logps: torch.Tensor  # [N, Tr]
    rejected_token_lengths: torch.Tensor  # [N] long

    def __len__(self) -> int:
        return len(self.pair_indices)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def lookup(
        self, pair_indices: torch.Tensor, average: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) scores [B] of the pairs ``pair_indices`` [B] of a complete cache."""
        rows = pair_indices.cpu()
        if average:
            return self.chosen_avg_logps[rows], self.rejected_avg_logps[rows]
        return self.chosen_logps[rows], self.rejected_logps[rows]


def score_reference(
    loaded: LoadedModel,
    dataset: Dataset,
    batch_size: int,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
) -> ReferenceLogps:
    """Score the pairs of batches ``shard_index, shard_index + num_shards, …`` of ``dataset``.

    ``dataset[i]`` is ``{"chosen": sample, "rejected": sample, …}`` (a PreferenceDataset item).
    Each rank of a distributed job scores its own shard; rank 0 then joins them with
    ``merge_reference_logps``. Shards are strided by whole batches, so every batch (its padding,
    hence its arithmetic) is the one a single process scores, and the merged shards equal the
    single-process result bit for bit. A shard can be empty (more ranks than batches). Uses the
    training batches and forward (``collate_preference_pairs`` through ``loaded``'s family,
    ``concatenated_logps``) so that the policy's log-probs at step 0 equal these.
    """
    model = loaded.model
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard {shard_index} of {num_shards} does not exist")
    positions = [
        i
        for start in range(shard_index * batch_size, len(dataset), num_shards * batch_size)
        for i in range(start, min(start + batch_size, len(dataset)))
    ]
    if not positions:
        return ReferenceLogps(
            **{
                f.name: torch.zeros(
                    (0, 0) if f.name.endswith("_token_logps") else 0,
                    dtype=torch.long if f.name.endswith(("_indices", "_lengths")) else None,
                )
                for f in dataclasses.fields(ReferenceLogps)
            }
        )
    collected = {side: defaultdict(list) for side in ("chosen", "rejected")}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(positions), batch_size),
                desc="reference log-probs",
                disable=not is_main_process(),
            ):
                chunk = positions[start : start + batch_size]
                batch = preference_collate(
                    [dataset[i] for i in chunk], collate=partial(loaded.family.collate, loaded)
                )
                batch = send_to_device(batch, model.device)
                logps = concatenated_logps(model, batch)  # 2B rows: [chosen; rejected]
                supervised = batch["concatenated_labels"] != IGNORE_INDEX  # [2B, L]
                halves = (slice(None, len(chunk)), slice(len(chunk), None))
                for parts, rows in zip(collected.values(), halves, strict=True):
                    parts["logps"].append(logps.sum[rows].cpu())
                    parts["avg_logps"].append(logps.avg[rows].cpu())
                    parts["tokens"] += [
                        row[mask].cpu()
                        for row, mask in zip(logps.per_token[rows], supervised[rows], strict=True)
                    ]
    finally:
        model.train(was_training)
    fields = {"pair_indices": torch.tensor(positions)}
    for side, parts in collected.items():
        fields[f"{side}_logps"] = torch.cat(parts["logps"])
        fields[f"{side}_avg_logps"] = torch.cat(parts["avg_logps"])
        fields[f"{side}_token_logps"] = pad_sequence(parts["tokens"], batch_first=True)  # [N, T]
        fields[f"{side}_token_lengths"] = torch.tensor([len(t) for t in parts["tokens"]])
    return ReferenceLogps(**fields)


def merge_reference_logps(shards: Sequence[ReferenceLogps]) -> ReferenceLogps:
    """Join shards into one cache ordered by pair index; each pair must be scored exactly once."""
    merged = _concatenate([shard for shard in shards if len(shard)])
    order = merged.pair_indices.argsort()
    merged = ReferenceLogps(**{name: t[order] for name, t in merged.tensors().items()})
    _check_complete(merged, "merged shards")
    return merged


def save_reference_logps(path: str | os.PathLike, logps: ReferenceLogps, key: CacheKey) -> None:
    """Write a complete cache as safetensors, with its key (total and components) as metadata."""
    _check_complete(logps, str(path))
    # One metadata entry: safetensors writes several in hash-map order, which differs from run to
    # run, and the same log-probs must give the same bytes (a torchrun job's file == one process's).
    header = {"format": CACHE_FORMAT, "content_key": key.digest, "components": dict(key.components)}
    metadata = {"mllm": json.dumps(header, sort_keys=True)}
    tensors = {name: t.contiguous() for name, t in logps.tensors().items()}
    with atomic_file(path) as scratch:
        save_file(tensors, str(scratch), metadata=metadata)


def load_reference_logps(path: str | os.PathLike, expected_key: CacheKey) -> ReferenceLogps:
    """Read a cache, refusing one that was computed from other inputs than ``expected_key``'s."""
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads((handle.metadata() or {}).get("mllm", "{}"))
    if header.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: not a reference log-probs cache of format {CACHE_FORMAT}")
    stored = CacheKey(header["components"])
    if stored.digest != expected_key.digest:
        changed = ", ".join(
            f"{name} (cache {stored.components.get(name, '-')[:12]}, "
            f"now {expected_key.components.get(name, '-')[:12]})"
            for name in stored.differing(expected_key)
        )
        raise ValueError(
            f"{path}: stale reference log-probs: computed from a different {changed}; "
            "delete the cache and score the reference model again"
        )
    logps = ReferenceLogps(**load_file(str(path)))
    _check_complete(logps, str(path))
    return logps


# -- helpers ----------------------------------------------------------------------------------


def _concatenate(shards: Sequence[ReferenceLogps]) -> ReferenceLogps:
    fields: dict[str, torch.Tensor] = {}
    for name in (f.name for f in dataclasses.fields(ReferenceLogps)):
        parts = [getattr(shard, name) for shard in shards]
        if name.endswith("_token_logps"):
            width = max(p.shape[1] for p in parts)
            parts = [nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        fields[name] = torch.cat(parts)
    return ReferenceLogps(**fields)


def _check_complete(logps: ReferenceLogps, where: str) -> None:
    """Pair i must sit in row i, so that a lookup is plain indexing."""
    if not torch.equal(logps.pair_indices, torch.arange(len(logps))):
        raise ValueError(
            f"{where}: reference log-probs do not cover pairs 0..{len(logps) - 1} exactly once"
        )
