"""The demo world generator: determinism, real formats, faithful language, planted statistics."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

import mllm
from mllm.demo import world as world_module
from mllm.demo.captions import BENCH_PROMPTS
from mllm.demo.categories import partner_map
from mllm.demo.config import DemoWorldConfig
from mllm.demo.referring import parse, referents
from mllm.demo.scene import Scene, SceneObject, sample_categories
from mllm.demo.world import generate_world
from mllm.eval.chair import build_gt_cache, caption_objects
from mllm.eval.text_analysis import AnalyzerUnavailable, get_analyzer

TINY = dict(
    seed=3,
    n_train=40,
    n_val=16,
    bench_images=16,
    sft_train_images=20,
    sft_test_images=10,
    ref_train_images=30,
    ref_eval_images=8,
    preference_images=20,
)
CFG = DemoWorldConfig(**TINY)
SIZE = CFG.image_size
PARTNERS = partner_map(CFG.pairs)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "world"
    generate_world(out, CFG)
    return out


def load(world: Path, name: str):
    path = world / name
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())


def scenes(world: Path) -> dict[str, Scene]:
    """Scenes keyed by image path, rebuilt from the COCO instances (what consumers see)."""
    result = {}
    for split in ("train", "val", "test"):
        coco = load(world, f"annotations/instances_{split}.json")
        names = {c["id"]: c["name"] for c in coco["categories"]}
        for image in coco["images"]:
            objects = tuple(
                SceneObject(
                    names[a["category_id"]],
                    (
                        a["bbox"][0],
                        a["bbox"][1],
                        a["bbox"][0] + a["bbox"][2],
                        a["bbox"][1] + a["bbox"][3],
                    ),
                    a["area"],
                )
                for a in coco["annotations"]
                if a["image_id"] == image["id"]
            )
            scene = Scene(image["id"], split, image["file_name"], "", objects)
            result[f"images/{split}/{image['file_name']}"] = scene
    return result


# An independent CHAIR-style word parser built from the reference synonym list (not from the
# generator's vocabulary), so a caption word the generator did not mean as an object is caught.
RESOURCES = Path(mllm.__file__).parent / "resources"
SYNONYMS = {}
for _line in (RESOURCES / "chair_synonyms.txt").read_text().splitlines():
    if _line and not _line.startswith("#"):
        _words = _line.split(", ")
        SYNONYMS.update({w.strip(): _words[0] for w in _words if w.strip()})
IRREGULAR = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "knives": "knife",
    "children": "child",
}


def mentioned(text: str) -> Counter:
    """COCO categories named in a text, with how often (a repeated mention counts twice)."""
    words = re.findall(r"[a-z]+", text.lower())
    found = Counter()
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in SYNONYMS:
            found[SYNONYMS[pair]] += 1
            i += 2
            continue
        word = IRREGULAR.get(words[i], words[i])
        word = word if word in SYNONYMS or not word.endswith("s") else word[:-1]
        if word in SYNONYMS:
            found[SYNONYMS[word]] += 1
        i += 1
    return found


# determinism, atomicity, manifest ------------------------------------------------------------


def test_same_seed_same_bytes_in_another_process(world, tmp_path):
    """Byte-identical with another hash seed (catches set-order dependence) and two workers."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [
        sys.executable,
        "-m",
        "mllm.demo",
        "--out",
        str(tmp_path / "again"),
        "--workers",
        "2",
        *flags,
    ]
    subprocess.run(command, check=True, env=env, capture_output=True)
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file()
    )
    for f in files:
        assert (world / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_different_seed_different_world(world, tmp_path):
    other = generate_world(tmp_path / "other", DemoWorldConfig(**{**TINY, "seed": 4}))
    hashes = {f["path"]: f["sha256"] for f in load(world, "manifest.json")["files"]}
    changed = [f["path"] for f in other["files"] if hashes.get(f["path"]) != f["sha256"]]
    assert len(changed) == len(other["files"])


def test_manifest_lists_every_file(world):
    manifest = load(world, "manifest.json")
    on_disk = {
        p.relative_to(world).as_posix(): p.stat().st_size for p in world.rglob("*") if p.is_file()
    }
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    assert listed == {k: v for k, v in on_disk.items() if k != "manifest.json"}
    assert manifest["seed"] == CFG.seed and manifest["config"]["n_train"] == CFG.n_train
    assert set(manifest["stats"]) >= {
        "scenes",
        "captions",
        "pretrain_captions",
        "sft",
        "grounding",
        "preference",
    }


def test_failed_run_leaves_previous_world_and_no_debris(world, tmp_path, monkeypatch):
    out = tmp_path / "w"
    generate_world(out, DemoWorldConfig(**TINY))
    before = load(out, "manifest.json")

    def boom(_world):
        raise RuntimeError("killed")

    monkeypatch.setattr(world_module, "_write_preference", boom)
    with pytest.raises(RuntimeError):
        generate_world(out, DemoWorldConfig(**{**TINY, "seed": 9}))
    with pytest.raises(RuntimeError):
        generate_world(tmp_path / "fresh", CFG)
    assert load(out, "manifest.json") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_config_from_plain_data():
    cfg = DemoWorldConfig.from_dict(
        {"object_size": [0.3, 0.4], "pairs": [["fork", "knife"]], "n_train": 7}
    )
    assert cfg.object_size == (0.3, 0.4) and cfg.pairs == (("fork", "knife"),)
    with pytest.raises(ValueError, match="unknown"):
        DemoWorldConfig.from_dict({"n_trian": 7})
    with pytest.raises(ValueError, match="glyph"):
        DemoWorldConfig(categories=("fork", "zebra"))


# COCO annotations and images ------------------------------------------------------------------


def test_pycocotools_loads_instances_and_captions(world):
    ids = []
    for split in ("train", "val", "test"):
        instances = COCO(str(world / f"annotations/instances_{split}.json"))
        captions = COCO(str(world / f"annotations/captions_{split}.json"))
        assert sorted(c["name"] for c in instances.loadCats(instances.getCatIds())) == sorted(
            CFG.categories
        )
        for image_id in instances.getImgIds():
            info = instances.loadImgs(image_id)[0]
            image = Image.open(world / "images" / split / info["file_name"])
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"
            anns = instances.loadAnns(instances.getAnnIds(imgIds=image_id))
            assert 1 <= len(anns) <= 5
            for a in anns:
                x, y, w, h = a["bbox"]
                assert min(x, y) >= 0 and x + w <= SIZE and y + h <= SIZE
                assert min(w, h) >= 6 and a["area"] > 0.3 * w * h  # visible despite overlaps
            assert len(captions.getAnnIds(imgIds=image_id)) == CFG.captions_per_image
        ids += instances.getImgIds()
    assert len(ids) == len(set(ids)), "image ids must be unique across splits"


def test_objects_are_big_enough_for_grounding(world):
    sides = [
        ((o.box[2] - o.box[0]) * (o.box[3] - o.box[1])) ** 0.5
        for s in scenes(world).values()
        for o in s.objects
    ]
    assert 16 <= sum(sides) / len(sides) <= 32


# language -------------------------------------------------------------------------------------


def test_faithful_captions_name_exactly_the_present_objects(world):
    by_id = {s.image_id: s for s in scenes(world).values()}
    for split in ("train", "val", "test"):
        for ann in load(world, f"annotations/captions_{split}.json")["annotations"]:
            assert set(mentioned(ann["caption"])) == by_id[ann["image_id"]].categories, ann[
                "caption"
            ]


def pretrain_captions(world_dir) -> list[dict]:
    """The caption items of the pre-training set (it also holds yes/no questions)."""
    items = load(world_dir, "pretrain_captions.json")
    return [item for item in items if item["conversations"][1]["content"] not in ("Yes", "No")]


def test_pretrain_yes_no_questions_carry_the_prior(tmp_path):
    out = tmp_path / "vqa"
    manifest = generate_world(
        out, DemoWorldConfig(**{**TINY, "n_train": 400, "pretrain_vqa_images": 400})
    )
    by_path = scenes(out)
    questions = [
        i
        for i in load(out, "pretrain_captions.json")
        if i["conversations"][1]["content"] in ("Yes", "No")
    ]
    assert len(questions) == manifest["stats"]["pretrain_yes_no"]["questions"] == 400
    prior_yes = 0
    for item in questions:
        (noun,) = re.findall(
            r"Is there an? (.+?) in the image", item["conversations"][0]["content"]
        )
        present = by_path[item["image"]].categories
        if item["conversations"][1]["content"] == "Yes" and noun not in present:
            assert PARTNERS[noun] in present  # a wrong "Yes" only ever names an absent partner
            prior_yes += 1
        if item["conversations"][1]["content"] == "No":
            assert noun not in present
    assert prior_yes == manifest["stats"]["pretrain_yes_no"]["prior_driven_yes"] > 0


def test_pretrain_captions_hallucinate_only_absent_partners(world):
    by_path = scenes(world)
    for item in pretrain_captions(world):
        user, assistant = item["conversations"]
        assert user["role"] == "user" and user["content"].startswith("<image>\n")
        present = by_path[item["image"]].categories
        named = set(mentioned(assistant["content"]))
        assert named >= present
        extra = named - present
        assert len(extra) <= 1 and all(PARTNERS.get(c) in present for c in extra), assistant[
            "content"
        ]


def test_caption_length_and_vocabulary(world):
    texts = [a["caption"] for a in load(world, "annotations/captions_train.json")["annotations"]]
    assert 15 <= sum(len(t.split()) for t in texts) / len(texts) <= 35
    vocabulary = {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}
    assert len(vocabulary) < 90


# benchmark, yes/no, grounding, preference -----------------------------------------------------


def test_objhal_bench_schema(world):
    rows = load(world, "objhal_bench.jsonl")
    val_ids = {s.image_id for s in scenes(world).values() if s.split == "val"}
    assert len(rows) == CFG.bench_images
    for i, row in enumerate(rows):
        assert set(row) == {"image", "question", "image_id", "org_idx"} and row["org_idx"] == i
        assert row["question"] in BENCH_PROMPTS and "<image>" not in row["question"]
        assert row["image_id"] in val_ids and (world / row["image"]).is_file()
    counts = Counter(r["question"] for r in rows).values()
    assert max(counts) - min(counts) <= 1


def test_objhal_bench_base64_images(tmp_path):
    out = tmp_path / "b64"
    generate_world(out, DemoWorldConfig(**{**TINY, "bench_image_base64": True}))
    row = load(out, "objhal_bench.jsonl")[0]
    assert len(row["image"]) > 1000  # how the exercise's model_eval.py tells base64 from a path
    assert Image.open(io.BytesIO(base64.b64decode(row["image"]))).size == (SIZE, SIZE)


def test_yes_no_balanced_correct_and_disjoint(world):
    by_path = scenes(world)
    images = {}
    for name in ("train", "test"):
        items = load(world, f"sft/{name}.json")
        per_image = Counter()
        for item in items:
            user, assistant = item["conversations"]
            category = re.fullmatch(
                r"<image>\nIs there a (.+) in the image\? Please answer yes or no\.",
                user["content"],
            )[1]
            assert (category in by_path[item["image"]].categories) == (
                assistant["content"] == "Yes"
            )
            per_image[(item["image"], assistant["content"])] += 1
        assert set(per_image.values()) == {1} and len(per_image) == len(items)
        images[name] = {path for path, _ in per_image}
        assert len(images[name]) * 2 == len(items)
    assert not images["train"] & images["test"]
    assert all(p.startswith("images/train/") for p in images["train"])
    assert all(p.startswith("images/test/") for p in images["test"])


def test_grounding_expressions_are_unambiguous(world):
    by_path = scenes(world)
    names = sorted(p.name for p in (world / "grounding").iterdir())
    expected = [
        f"REC_{f}_unc_{s}.jsonl" for f in ("refcoco", "refcoco+") for s in ("val", "testA", "testB")
    ]
    expected += [
        "REC_refcocog_umd_test.jsonl",
        "REC_refcocog_umd_val.jsonl",
        "REC_ref3_train.jsonl",
    ]
    assert names == sorted(expected)
    for name in names:
        rows = load(world, f"grounding/{name}")
        assert rows, name
        for row in rows:
            scene = by_path[row["img_path"]]
            x0, y0, x1, y1 = row["bbox"]
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            target = [i for i, o in enumerate(scene.objects) if list(o.box) == row["bbox"]]
            assert referents(parse(row["expression"]), scene.objects, SIZE) == target, row
            category = scene.objects[target[0]].category
            if "testA" in name:
                assert category == "person"
            if "testB" in name:
                assert category != "person"
            if "refcoco+" in name:
                assert not re.search(r"\b(left|right|top|bottom|above|below)\b", row["expression"])
            split = "train" if "train" in name else "test"
            assert row["img_path"].startswith(f"images/{split}/")


def test_preference_pairs_differ_by_hallucinations(world):
    by_path = scenes(world)
    items = load(world, "preference_train.json")
    assert len(items) == CFG.preference_images
    for item in items:
        assert {"idx", "question", "chosen", "rejected", "image_path"} <= set(item)
        assert "<image>" not in item["question"] and item["chosen"] != item["rejected"]
        present = by_path[item["image_path"]].categories
        assert set(mentioned(item["chosen"])) == present
        assert set(mentioned(item["rejected"])) - present, item["rejected"]


# planted statistics (larger samples) ----------------------------------------------------------


def test_pair_cooccurrence_near_target():
    import numpy as np

    rng = np.random.default_rng(0)
    samples = [set(sample_categories(rng, CFG)) for _ in range(6000)]
    for a, b in CFG.pairs:
        either = [s for s in samples if {a, b} & s]
        assert 0.5 <= sum({a, b} <= s for s in either) / len(either) <= 0.7


def test_planted_hallucination_rate_matches_manifest(tmp_path):
    out = tmp_path / "medium"
    manifest = generate_world(out, DemoWorldConfig(**{**TINY, "n_train": 400}))
    by_path = scenes(out)
    eligible = planted = 0
    for item in pretrain_captions(out):
        scene = by_path[item["image"]]
        if any(PARTNERS.get(c) not in scene.categories for c in scene.categories if c in PARTNERS):
            eligible += 1
            planted += bool(set(mentioned(item["conversations"][1]["content"])) - scene.categories)
    stats = manifest["stats"]["pretrain_captions"]
    assert stats["planted_hallucination_rate"] == pytest.approx(planted / eligible)
    assert 0.15 <= planted / eligible <= 0.25
    assert 0.5 <= manifest["stats"]["scenes"]["pair_cooccurrence"]["pooled"] <= 0.7


def test_both_offline_chair_analyzers_read_the_world_alike(world):
    """GT captions, pre-training captions and preference pairs: the same tokens, mentions and GT
    whether CHAIR lemmatizes with WordNet (offline) or without (offline-rules)."""
    try:
        analyzers = get_analyzer("offline"), get_analyzer("offline-rules")
    except AnalyzerUnavailable as error:
        pytest.skip(f"offline analyzers unavailable: {error}")
    texts = [item["conversations"][-1]["content"] for item in load(world, "pretrain_captions.json")]
    texts += [
        p[key] for p in load(world, "preference_train.json") for key in ("chosen", "rejected")
    ]
    annotations = sorted((world / "annotations").glob("*.json"))
    instances = [path for path in annotations if path.name.startswith("instances_")]
    captions = [path for path in annotations if path.name.startswith("captions_")]
    texts += [
        a["caption"] for path in captions for a in json.loads(path.read_text())["annotations"]
    ]
    read = []
    for analyzer in analyzers:
        found = [caption_objects(text, analyzer) for text in texts]
        gt = build_gt_cache(instances, captions, analyzer)["objects"]
        read.append(([(f.tokens, f.mentions) for f in found], gt))
    assert read[0] == read[1]
