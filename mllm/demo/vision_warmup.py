"""Supervised warm-up of the vision tower on the demo world's boxes.

A vision tower trained from scratch inside caption pre-training stays blind within a CPU budget of
minutes (reference/DEMO_FEASIBILITY.md); a real SigLIP arrives pre-trained. This stands in for that
pre-training: every patch learns which category covers it (or background) and, when covered, the
box of that object, so its features carry *what* and *where* — what captioning and grounding need.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from mllm.atomic import atomic_file, write_json
from mllm.data.images import ImageProcessor
from mllm.model.config import MLLMVisionConfig
from mllm.model.vision import VisionTransformer
from mllm.records import read_json
from mllm.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmupSettings(Settings):
    """Config ``vision_warmup``: AdamW steps on random batches of training images, the weight of
    the box loss beside the class loss, and how many images are held out for the metrics."""

    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    box_loss_weight: float = 5.0
    holdout_images: int = 200
    seed: int = 0


@dataclass
class PatchTargets:
    pixel_values: torch.Tensor  # [N, 3, p, L*p]
    tgt_sizes: torch.Tensor  # [N, 2]
    category: torch.Tensor  # [N, L] class index, 0 = background
    box: torch.Tensor  # [N, L, 4] normalised xyxy of the covering object (0 where background)


def patch_targets(
    instances_path: str | os.PathLike, image_root: str | os.PathLike, processor: ImageProcessor
) -> tuple[PatchTargets, list[str]]:
    """Per-patch category and box targets from COCO instances; returns them and the class names.

    A patch belongs to the last-listed object whose box holds the patch centre (the demo world
    draws objects in annotation order, so the last one is on top).
    """
    coco = read_json(instances_path)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: index + 1 for index, c in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    strips, sizes, classes, boxes = [], [], [], []
    for image in tqdm(coco["images"], desc="warm-up targets"):
        width, height = image["width"], image["height"]
        processed = processor(Image.open(Path(image_root) / image["file_name"]).convert("RGB"))
        rows, cols = processed.tgt_sizes[0].tolist()
        centre_x = (torch.arange(cols) + 0.5) * width / cols  # [cols]
        centre_y = (torch.arange(rows) + 0.5) * height / rows  # [rows]
        cx, cy = (
            centre_x[None, :].expand(rows, cols).flatten(),
            centre_y[:, None].expand(rows, cols).flatten(),
        )
        category = torch.zeros(rows * cols, dtype=torch.long)
        box = torch.zeros(rows * cols, 4)
        for annotation in by_image.get(image["id"], []):
            x, y, w, h = annotation["bbox"]
            inside = (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)
            category[inside] = class_of[annotation["category_id"]]
            box[inside] = torch.tensor([x / width, y / height, (x + w) / width, (y + h) / height])
        strips.append(processed.pixel_values[0])
        sizes.append(processed.tgt_sizes[0])
        classes.append(category)
        boxes.append(box)
    if len({s.shape for s in strips}) != 1:
        raise ValueError(
            f"{instances_path}: vision warm-up expects images of one size (the demo world's)"
        )
    names = [c["name"] for c in categories]
    return PatchTargets(
        torch.stack(strips), torch.stack(sizes), torch.stack(classes), torch.stack(boxes)
    ), names


class WarmupHeads(nn.Module):
    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.classify = nn.Linear(width, num_classes + 1)
        self.box = nn.Linear(width, 4)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # features [N, L, D] -> class logits [N, L, C+1], boxes [N, L, 4] in [0, 1]
        return self.classify(features), torch.sigmoid(self.box(features))


def losses(
    tower, heads, batch: PatchTargets, box_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    mask = torch.ones(batch.category.shape, dtype=torch.bool)
    logits, boxes = heads(tower(batch.pixel_values, mask, batch.tgt_sizes))
    class_loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.category.flatten())
    covered = batch.category > 0  # [N, L]
    box_loss = (
        nn.functional.l1_loss(boxes[covered], batch.box[covered])
        if covered.any()
        else logits.sum() * 0
    )
    with torch.no_grad():
        accuracy = (logits.argmax(-1) == batch.category).float().mean().item()
        object_recall = (
            (logits.argmax(-1)[covered] == batch.category[covered]).float().mean().item()
        )
    total = class_loss + box_weight * box_loss
    return total, {
        "loss": total.item(),
        "class_loss": class_loss.item(),
        "box_l1": box_loss.item(),
        "patch_accuracy": accuracy,
        "object_patch_accuracy": object_recall,
    }


def subset(targets: PatchTargets, index: torch.Tensor) -> PatchTargets:
    return PatchTargets(
        *(getattr(targets, f)[index] for f in ("pixel_values", "tgt_sizes", "category", "box"))
    )


def warm_up_vision(
    instances_path: str | os.PathLike,
    image_root: str | os.PathLike,
    vision_config: MLLMVisionConfig,
    processor: ImageProcessor,
    settings: WarmupSettings,
    *,
    weights_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """Train the tower, write its weights (safetensors, ``vpm``-relative names) and metrics."""
    torch.manual_seed(settings.seed)
    targets, class_names = patch_targets(instances_path, image_root, processor)
    order = torch.randperm(
        len(targets.category), generator=torch.Generator().manual_seed(settings.seed)
    )
    holdout = subset(targets, order[: settings.holdout_images])
    train = subset(targets, order[settings.holdout_images :])
    tower = VisionTransformer(vision_config)
    heads = WarmupHeads(vision_config.hidden_size, len(class_names))
    parameters = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    warmup = max(1, settings.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
        ),
    )
    generator = torch.Generator().manual_seed(settings.seed)
    history, started = [], time.perf_counter()
    tower.train()
    for step in (bar := tqdm(range(settings.steps), desc="vision warm-up")):
        index = torch.randint(len(train.category), (settings.batch_size,), generator=generator)
        loss, logged = losses(tower, heads, subset(train, index), settings.box_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        if step % 10 == 0 or step == settings.steps - 1:
            history.append({"step": step, **logged})
            bar.set_postfix(loss=f"{logged['loss']:.3f}", acc=f"{logged['patch_accuracy']:.3f}")
    tower.eval()
    with torch.no_grad():
        _, held_out = losses(tower, heads, holdout, settings.box_loss_weight)
    metrics = {
        "classes": class_names,
        "train_images": len(train.category),
        "holdout": held_out,
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    with atomic_file(weights_path) as scratch:
        save_file({name: t.contiguous() for name, t in tower.state_dict().items()}, str(scratch))
    write_json(metrics_path, metrics)
    log.info("vision warm-up held-out: %s", held_out)
    return metrics
