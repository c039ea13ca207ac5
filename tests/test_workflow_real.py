"""The real-world path (world: real) end to end on local fixture files: download rules fetch a
checkpoint folder, COCO annotations and a base64 benchmark, then decode → CHAIR → report run
exactly as they would on the exercise's data. Never touches the network."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import write_tiny_checkpoint
from tests.test_workflow import REPO, snakemake

IMAGE_IDS = (139, 285, 632)
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 47, "name": "cup"}, {"id": 1, "name": "person"}]


def png_base64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_fixtures(root):
    """A tiny checkpoint folder, COCO-format annotations and an objhal-style benchmark."""
    write_tiny_checkpoint(root / "checkpoint")

    annotations = root / "coco"
    annotations.mkdir()
    images = [
        {"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": 64, "height": 64}
        for i in IMAGE_IDS
    ]
    instances = [
        {
            "id": 1,
            "image_id": 139,
            "category_id": 18,
            "bbox": [1, 1, 20, 20],
            "area": 400,
            "iscrowd": 0,
        }
    ]
    captions = [
        {"id": k, "image_id": i, "caption": "A cup on a table."} for k, i in enumerate(IMAGE_IDS)
    ]
    (annotations / "instances_val2014.json").write_text(
        json.dumps({"images": images, "annotations": instances, "categories": CATEGORIES})
    )
    (annotations / "captions_val2014.json").write_text(
        json.dumps({"images": images, "annotations": captions})
    )

    benchmark = root / "objhal_bench.jsonl"
    rows = [
        {
            "image": png_base64(k),
            "question": "Describe this image in detail.",
            "image_id": i,
            "org_idx": k,
        }
        for k, i in enumerate(IMAGE_IDS)
    ]
    benchmark.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "checkpoint", annotations, benchmark


@pytest.mark.slow
def test_real_world_config_runs_to_the_report_from_local_sources(tmp_path):
    model, annotations, benchmark = write_fixtures(tmp_path / "fixtures")
    config = yaml.safe_load((REPO / "config/experiments/exercise.yaml").read_text())
    config["real"].update(
        model=str(model), coco_annotations=str(annotations), benchmark=str(benchmark)
    )
    for strategy in config["decoding"]["strategies"].values():
        strategy["max_new_tokens"] = 6
    config["compute"] = {"threads": 1, "train_gpus": 0, "eval_gpus": 0}
    for section in ("sft", "yesno"):  # the fixtures hold no SFT data: the base stage only
        del config[section]
    config["stages"] = ["base"]
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    snakemake("--cores", "2", "report", workdir=workdir, configfile=config_path)

    provenance = json.loads((workdir / "resources/models/base.provenance.json").read_text())
    assert provenance["weights"] and not provenance["remote_code_ignored"]
    bench_provenance = json.loads((workdir / "resources/benchmark/provenance.json").read_text())
    assert bench_provenance["questions"] == 3
    for strategy in ("sampling", "greedy", "beam"):
        metrics = json.loads((workdir / f"results/chair/base/{strategy}.json").read_text())
        assert metrics["n_captions"] == 3
    assert (workdir / "results/report/index.html").stat().st_size > 1000
    rerun = snakemake("-n", "report", workdir=workdir, configfile=config_path)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
