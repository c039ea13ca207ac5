"""The real-world path (world: real) end to end on local fixture files: download rules fetch a
checkpoint folder, COCO annotations and a base64 benchmark, then decode → CHAIR → report run
exactly as they would on the exercise's data. Never touches the network."""

from __future__ import annotations

import base64
import io
import json
import zipfile

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


def write_grounding_fixtures(root, config):
    """A Shikra-style annotation zip holding every REC file the config names (one bad record
    among them, skipped by the config's policy) and a COCO-style train2014.zip of its images."""
    names = [f"COCO_train2014_{i:012d}.jpg" for i in range(3)]
    with zipfile.ZipFile(root / "train2014.zip", "w") as bundle:
        for k, name in enumerate(names):
            buffer = io.BytesIO()
            Image.open(io.BytesIO(base64.b64decode(png_base64(k)))).save(buffer, format="JPEG")
            bundle.writestr(f"train2014/{name}", buffer.getvalue())
    grounding = config["grounding"]
    files = {*grounding["train_files"]} | {
        name for splits in grounding["splits"].values() for name in splits.values()
    }
    rows = [
        {"img_path": names[k % 3], "expression": f"the cup {k}", "bbox": [4, 8, 30 + k, 40]}
        for k in range(4)
    ]
    missing = {"img_path": "COCO_train2014_999.jpg", "expression": "gone", "bbox": [1, 1, 9, 9]}
    with zipfile.ZipFile(root / "shikra_data.zip", "w") as bundle:
        for name in sorted(files):
            lines = [*rows, missing] if name in grounding["train_files"] else rows
            bundle.writestr(f"shikra_data/{name}", "".join(json.dumps(r) + "\n" for r in lines))
    return root / "shikra_data.zip", root / "train2014.zip"


@pytest.mark.slow
def test_real_world_config_runs_to_the_report_from_local_sources(tmp_path):
    model, annotations, benchmark = write_fixtures(tmp_path / "fixtures")
    config = yaml.safe_load((REPO / "config/experiments/exercise.yaml").read_text())
    config["model"]["source"] = str(model)
    config["real"].update(coco_annotations=str(annotations), benchmark=str(benchmark))
    for strategy in config["decoding"]["strategies"].values():
        strategy["max_new_tokens"] = 6
    config["compute"] = {"threads": 1, "train_gpus": 0, "eval_gpus": 0}
    # the fixtures hold no SFT data (the base stage only) and no COCO val images (no POPE)
    for section in ("sft", "yesno", "pope"):
        del config[section]
    del config["real"]["pope"]
    config["stages"] = ["base"]
    annotations_zip, images_zip = write_grounding_fixtures(tmp_path / "fixtures", config)
    config["real"].update(rec_annotations=str(annotations_zip), rec_images=str(images_zip))
    config["grounding"]["eval"]["generation"]["max_new_tokens"] = 6
    config["grounding"]["training"].update(
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        eval_steps=2,
        save_steps=2,
        max_length=256,
        bf16=False,
        gradient_checkpointing=False,
        deepspeed=None,
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    snakemake("--cores", "2", "report", workdir=workdir, configfile=config_path)

    provenance = json.loads((workdir / "resources/models/base.provenance.json").read_text())
    assert provenance["weights"] and not provenance["remote_code_ignored"]
    downloads = workdir / "resources/downloads"
    bench_provenance = json.loads((downloads / "objhal_bench.jsonl.provenance.json").read_text())
    assert bench_provenance["questions"] == 3
    for strategy in ("sampling", "greedy", "beam"):
        metrics = json.loads((workdir / f"results/chair/base/{strategy}.json").read_text())
        assert metrics["n_captions"] == 3
    # the world's REC file: the image paths now resolve from the world's image root
    world_rec = (workdir / "resources/world/grounding/REC_ref3_train.jsonl").read_text()
    first = json.loads(world_rec.splitlines()[0])
    assert first["img_path"] == "../downloads/coco/train2014/COCO_train2014_000000000000.jpg"
    assert (workdir / "resources/world" / first["img_path"]).is_file()
    summary = json.loads((workdir / "results/grounding/data/train.summary.json").read_text())
    assert summary["records"] == 4
    assert list(summary["files"].values())[0]["skipped"] == {"missing_image": 1}
    for stage in ("base", "grounding"):
        metrics = json.loads(
            (workdir / f"results/grounding/{stage}/refcoco+_testB.json").read_text()
        )
        assert metrics["n"] == 4 and metrics["acc_at_0_5"] >= 0
    assert (workdir / "results/report/index.html").stat().st_size > 1000
    rerun = snakemake("-n", "report", workdir=workdir, configfile=config_path)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
