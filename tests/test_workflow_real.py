"""The real-world path (world: real) end to end on local fixture files: download rules fetch a
checkpoint folder, COCO annotations and a base64 benchmark, then decode → CHAIR → report run
exactly as they would on the exercise's data. Never touches the network."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from mllm.family.tiny import build as build_tiny_checkpoint
from tests.conftest import write_tiny_checkpoint
from tests.parquet_fixtures import refcoco_row, write_refcoco_split, write_rlaif_v_release
from tests.test_sft import write_sft_data
from tests.test_workflow import REPO, planned_jobs, snakemake

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


def write_preference_fixture(root):
    """The exercise's preference_train.json: one pair with a base64 image, one by image_path."""
    folder = root / "preference_images"
    folder.mkdir()
    Image.open(io.BytesIO(base64.b64decode(png_base64(7)))).save(folder / "pair1.png")
    pairs = [
        {
            "idx": 0,
            "question": "Describe this image.",
            "chosen": "A cup on a table.",
            "rejected": "A dog and a cup.",
            "image": png_base64(5),
        },
        {
            "idx": 1,
            "question": "What is in the image?",
            "chosen": "A cup.",
            "rejected": "A person.",
            "image_path": "pair1.png",
        },
    ]
    (root / "preference_train.json").write_text(json.dumps(pairs))
    return root / "preference_train.json", folder


def write_lmms_lab_refcoco(root, splits):
    """lmms-lab/RefCOCO's layout (data/{split}-*.parquet), one row touching the image's edge."""
    release = root / "lmms_lab_refcoco"
    rows = [refcoco_row(k) for k in range(3)]
    rows.append(refcoco_row(3, size=(48, 40), bbox=[8.0, 4.0, 40.0, 36.0]))
    for split in splits:
        write_refcoco_split(release, split, rows, files=2)
    return release


def tiny_training(training):
    """A real config's training section, shrunk to a few CPU steps."""
    training.update(
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        save_steps=2,
        max_length=320,
        bf16=False,
        gradient_checkpointing=False,
        deepspeed=None,
    )
    if "eval_steps" in training:
        training["eval_steps"] = 2


def fixture_config(tmp_path, name: str) -> dict:
    """``config/experiments/{name}.yaml`` on the local fixtures: the tiny checkpoint, COCO-format
    annotations and the benchmark; short answers, one CPU thread."""
    model, annotations, benchmark = write_fixtures(tmp_path / "fixtures")
    config = yaml.safe_load((REPO / f"config/experiments/{name}.yaml").read_text())
    config["model"]["source"] = str(model)
    config["real"].update(coco_annotations=str(annotations), benchmark=str(benchmark))
    for strategy in config["decoding"]["strategies"].values():
        strategy["max_new_tokens"] = 6
    config["compute"] = {"threads": 1, "train_gpus": 0, "eval_gpus": 0}
    # the fixtures hold no COCO val images, so no POPE (tests/test_pope.py covers its import)
    config.pop("pope", None)
    config["real"].pop("pope", None)
    return config


def run_to_report(tmp_path, config: dict):
    """Run ``config`` to the report in a fresh working directory; returns it and the config."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "report", workdir=workdir, configfile=config_path)
    return workdir, config_path


@pytest.mark.slow
def test_real_world_config_runs_to_the_report_from_local_sources(tmp_path):
    config = fixture_config(tmp_path, "exercise")
    for section in ("sft", "yesno"):  # the fixtures hold no SFT data: the base stage only
        del config[section]
    config["stages"] = ["base"]
    # RefCOCO's three splits and one of RefCOCO+ (both sources, half the evaluations: CPU time)
    splits = config["grounding"]["splits"]
    config["grounding"]["splits"] = {
        "refcoco": splits["refcoco"],
        "refcoco+": {"testB": splits["refcoco+"]["testB"]},
    }
    annotations_zip, images_zip = write_grounding_fixtures(tmp_path / "fixtures", config)
    config["real"].update(rec_annotations=str(annotations_zip), rec_images=str(images_zip))
    # RefCOCO's evaluation splits from lmms-lab's parquet release; the rest from Shikra's zip
    lmms_lab = write_lmms_lab_refcoco(
        tmp_path / "fixtures", config["grounding"]["splits"]["refcoco"]
    )
    config["real"]["rec_parquet"] = {"refcoco": {"source": str(lmms_lab)}}
    config["grounding"]["eval"]["generation"]["max_new_tokens"] = 6
    tiny_training(config["grounding"]["training"])
    del config["preference"]  # Task 3 on its own below: the two halves fit a CPU test each

    workdir, config_path = run_to_report(tmp_path, config)

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
    # lmms-lab's rows: one REC line per expression, the split's size checked
    summary = json.loads(
        (workdir / "resources/downloads/grounding_parquet/refcoco_val.summary.json").read_text()
    )
    assert summary["rows"] == 4 and summary["expressions"] == 8
    assert summary["matches_standard_split"] is False  # 4 rows, not UNC val's 3,811
    for split in ("val", "testA", "testB"):
        metrics = json.loads((workdir / f"results/grounding/base/refcoco_{split}.json").read_text())
        assert metrics["n"] == 8
    page = (workdir / "results/report/index.html").read_text()
    assert page.count("not the standard val set") == 1
    rerun = snakemake("-n", "report", workdir=workdir, configfile=config_path)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_rlaif_v_config_trains_on_parquet_shards_to_the_report(tmp_path):
    config = fixture_config(tmp_path, "rlaif_v")
    release = write_rlaif_v_release(tmp_path / "fixtures" / "rlaif_v", shards=3, rows_per_shard=2)
    config["real"]["preference_parquet"].update(
        source=str(release), revision=None, shards=[0, 2], max_rows=3
    )
    config["preference"]["betas"] = [0.5]
    tiny_training(config["preference"]["training"])

    workdir, _ = run_to_report(tmp_path, config)

    provenance = json.loads((workdir / "resources/downloads/rlaif_v.provenance.json").read_text())
    assert sorted(provenance["files"]) == [
        "RLAIF-V-Dataset_000.parquet",
        "RLAIF-V-Dataset_002.parquet",
    ]
    pairs = json.loads((workdir / "resources/world/preference_train.json").read_text())
    assert [pair["idx"] for pair in pairs] == ["VQAv2_000000", "VQAv2_000001", "VQAv2_000004"]
    reference = json.loads((workdir / "results/preference/reference_logps.json").read_text())
    assert reference["pairs"] == 3
    for run in ("dpo_beta0.5", "nca_beta0.5"):
        assert (workdir / f"results/chair/{run}/sampling.json").is_file()
    assert "exercise bar" in (workdir / "results/report/index.html").read_text()


@pytest.mark.parametrize("name", ["exercise", "rlaif_v", "qwen2_5_vl_7b", "internvl3_8b"])
def test_real_experiment_configs_plan_their_whole_dag_with_their_real_values(tmp_path, name):
    """The configs as shipped (hub ids, COCO URLs, the full beta sweep); only the exercise's
    manual downloads are stood in for by empty files where the config expects them."""
    data = tmp_path / "data"
    data.mkdir()
    for manual in ("train.json", "test.json", "preference_train.json", "shikra_data.zip"):
        (data / manual).write_text("")
    config = REPO / "config" / "experiments" / f"{name}.yaml"
    jobs = planned_jobs(snakemake("-n", "report", workdir=tmp_path, configfile=config).stdout)
    runs = {"exercise": 6, "rlaif_v": 4}.get(name, 2)  # losses x betas
    assert jobs["train_preference"] == runs and jobs["reference_logps"] == 1
    # the image-token budget of every training set, checked once per set before its training
    assert jobs["preflight_preference"] == 1
    if name != "rlaif_v":
        assert jobs["preflight_sft"] == len(yaml.safe_load(config.read_text())["sft"])
        assert jobs["preflight_grounding"] == 1
    assert jobs["chair"] >= runs + 1
    if name == "rlaif_v":
        assert jobs["download_preference_parquet"] == 1


def hf_family_config(tmp_path, family: str, losses: tuple[str, ...]) -> dict:
    """exercise.yaml on a tiny random checkpoint of ``family`` (built by mllm.family.tiny) and
    the local fixtures, each stage of the issue's chain run once and no more: greedy captions,
    LoRA SFT on yes/no records, grounding SFT scored on RefCOCO+ val, Task 3's pairs (base64 and
    image_path) for the preference runs of ``losses`` as exercise.yaml configures them, one β;
    every training run a few CPU steps."""
    config = fixture_config(tmp_path, "exercise")
    checkpoint = build_tiny_checkpoint(family, tmp_path / "fixtures" / family)
    config["model"].update(family=family, source=str(checkpoint))
    # the trained stages only: base is evaluated by the demo DAG and the other real-world tests
    config["stages"] = ["sft"]
    config["decoding"]["strategies"] = {"greedy": config["decoding"]["strategies"]["greedy"]}
    config["decoding"].update(batch_size=2, trained_stage_strategies=["greedy"])
    train, test = write_sft_data(tmp_path / "fixtures" / "sft", n_images=3)
    config["real"].update(sft_train=str(train), sft_test=str(test), sft_images=str(train.parent))
    del config["sft"]["sft_full"]
    tiny_training(config["sft"]["sft"]["training"])
    config["sft"]["sft"]["training"].pop("eval_steps", None)
    splits = config["grounding"]["splits"]
    config["grounding"]["splits"] = {"refcoco+": {"val": splits["refcoco+"]["val"]}}
    config["grounding"]["eval_stages"] = ["grounding"]
    annotations_zip, images_zip = write_grounding_fixtures(tmp_path / "fixtures", config)
    config["real"].update(rec_annotations=str(annotations_zip), rec_images=str(images_zip))
    config["grounding"]["eval"]["generation"]["max_new_tokens"] = 6
    tiny_training(config["grounding"]["training"])
    preference, preference_images = write_preference_fixture(tmp_path / "fixtures")
    config["real"].update(preference=str(preference), preference_images=str(preference_images))
    config["preference"]["losses"] = {loss: config["preference"]["losses"][loss] for loss in losses}
    config["preference"]["betas"] = [0.5]
    tiny_training(config["preference"]["training"])
    return config


# Families whose DAG CI has no time for; MLLM_EXTRA_FAMILY_DAGS=1 runs them too.
EXTRA_FAMILY_DAG = pytest.mark.skipif(
    os.environ.get("MLLM_EXTRA_FAMILY_DAGS") != "1",
    reason="CI time is full: set MLLM_EXTRA_FAMILY_DAGS=1 to run this family's whole DAG",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "losses"),
    [
        ("qwen2_5_vl", ("dpo",)),
        ("qwen3_vl", ("dpo", "nca")),
        ("internvl", ("dpo",)),
        pytest.param("idefics3", ("dpo",), marks=EXTRA_FAMILY_DAG),
    ],
    ids=["qwen2_5_vl-dpo", "qwen3_vl-dpo+nca", "internvl-dpo", "idefics3-dpo"],
)
def test_hf_families_run_every_stage_of_the_real_world_dag_to_the_report(tmp_path, family, losses):
    """Each HF family through every stage: decode → CHAIR, LoRA SFT → yes/no, grounding SFT →
    Acc@0.5, preflight → reference log-probs → DPO or NCA → CHAIR, report; the stages are the
    own family's, nothing family-specific in them. qwen3_vl runs exercise.yaml's Task 3 as
    configured: DPO on summed and NCA on mean log-probs, both from base, one cached reference."""
    workdir, _ = run_to_report(tmp_path, hf_family_config(tmp_path, family, losses))

    runs = [f"{loss}_beta0.5" for loss in losses]
    for stage in ("sft", "grounding", *runs):
        chair = json.loads((workdir / f"results/chair/{stage}/greedy.json").read_text())
        assert chair["n_captions"] == 3
    assert 0 <= json.loads((workdir / "results/yesno/sft.json").read_text())["accuracy"] <= 1
    metrics = json.loads((workdir / "results/grounding/grounding/refcoco+_val.json").read_text())
    assert metrics["n"] == 4 and metrics["acc_at_0_5"] >= 0
    for preflight in ("sft/sft", "grounding", "preference"):
        summary = json.loads((workdir / f"results/preflight/{preflight}.json").read_text())
        assert summary["family"] == family
    reference = json.loads((workdir / "results/preference/reference_logps.json").read_text())
    assert reference["pairs"] == 2  # scored once, shared by every run
    for run in runs:
        trained = json.loads((workdir / f"results/train/{run}/metrics.json").read_text())
        assert trained["global_step"] == 2  # trained from the cached reference
    page = (workdir / "results/report/index.html").read_text()
    assert "exercise bar" in page
    if "nca" in losses:
        assert "NCA, β 0.5, mean log-p, from base" in page
