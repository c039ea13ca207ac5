"""``generate_world``: draw the demo world and write every dataset in the real formats.

Layout (paths inside files are relative to the world directory)::

    images/{train,val,test}/DEMO_{split}_{id:012d}.png
    annotations/{instances,captions}_{train,val,test}.json   COCO: CHAIR ground truth, warm-up boxes
    pretrain_captions.json      SFT-format captions carrying the planted co-occurrence prior
    objhal_bench.jsonl          detailed-description benchmark on val images
    sft/{train,test}.json       yes/no questions on train images / held-out test images
    grounding/REC_*.jsonl       Shikra REC: refcoco and refcoco+ unc val/testA/testB, refcocog umd
                                val/test (test images), REC_ref3_train (train images)
    preference_train.json       chosen/rejected detailed descriptions on train images
    manifest.json               files, counts, seed, config and measured statistics

``train`` images serve pre-training, vision warm-up, SFT, grounding and preference training;
``val`` images only the benchmark; ``test`` images only the SFT test and the grounding evals.
Every scene has its own random stream keyed by (seed, split, index), and every dataset its own
stream, so one dataset's size never changes another dataset's content.
"""

from __future__ import annotations

import base64
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mllm.atomic import atomic_directory
from mllm.data.grounding import SHIKRA_REC_FILES
from mllm.demo import captions as lang
from mllm.demo.categories import BACKGROUNDS, partner_map
from mllm.demo.config import DemoWorldConfig
from mllm.demo.referring import STYLES, refer
from mllm.demo.render import draw_scene
from mllm.demo.scene import Scene, place_boxes, sample_categories
from mllm.demo.writers import (
    coco_captions,
    coco_instances,
    json_bytes,
    jsonl_bytes,
    png_bytes,
    write_file,
)

SPLITS = ("train", "val", "test")
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
CHUNK = 500  # scenes per task of a drawing worker
ID_OFFSET = 100_000  # image id = (split code + 1) * ID_OFFSET + index + 1: unique across splits
SELECTION = 999  # stream key for choosing a dataset's images, apart from its content stream
STREAM = {
    "scene": 0,
    "captions": 1,
    "pretrain": 2,
    "bench": 3,
    "sft": 4,
    "grounding": 5,
    "preference": 6,
    "pretrain_vqa": 7,
}
PERSON = "person"
# Held-out grounding pools: (pool, flavours sharing its images, which objects are targets).
# As in RefCOCO, testA refers to people and testB to other objects.
GROUNDING_EVAL = (
    ("unc_val", ("refcoco", "refcoco+"), "any"),
    ("unc_testA", ("refcoco", "refcoco+"), "person"),
    ("unc_testB", ("refcoco", "refcoco+"), "other"),
    ("umd_val", ("refcocog",), "any"),
    ("umd_test", ("refcocog",), "any"),
)


@dataclass
class World:
    """Scenes and faithful captions shared by the dataset writers, and what they measured."""

    cfg: DemoWorldConfig
    root: Path
    scenes: dict[str, list[Scene]] = field(default_factory=dict)
    pools: dict[str, list[Scene]] = field(default_factory=dict)  # named slices of the test split
    mentions: dict[int, list[lang.Mention]] = field(default_factory=dict)
    styles: dict[int, list[lang.CaptionStyle]] = field(default_factory=dict)
    counts: dict[str, object] = field(default_factory=dict)
    stats: dict[str, object] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)  # manifest entries of everything written

    def write(self, relpath: str, data: bytes) -> None:
        self.files.append(write_file(self.root, relpath, data))

    def rng(self, purpose: str, *key: int) -> np.random.Generator:
        return stream(self.cfg.seed, purpose, *key)

    def caption(self, scene: Scene, k: int) -> str:
        return lang.render_caption(
            self.mentions[scene.image_id], self.styles[scene.image_id][k], scene.background
        )

    def sample(self, purpose: str, scenes: list[Scene], n: int) -> list[Scene]:
        """A random subset of ``n`` scenes (all if fewer), in split order; fixed per purpose."""
        order = self.rng(purpose, SELECTION).permutation(len(scenes))[: min(n, len(scenes))]
        return [scenes[i] for i in sorted(order)]


def stream(seed: int, purpose: str, *key: int) -> np.random.Generator:
    """The random stream of one purpose (and e.g. one image), independent of all others."""
    return np.random.default_rng([seed, STREAM[purpose], *key])


def image_path(scene: Scene) -> str:
    return f"images/{scene.split}/{scene.file_name}"


def generate_world(out_dir: str | Path, cfg: DemoWorldConfig, workers: int = 1) -> dict:
    """Write the demo world to ``out_dir`` (replacing it atomically) and return its manifest.

    ``workers`` processes draw the images; the world is the same for any number of them.
    """
    with atomic_directory(Path(out_dir)) as root:
        world = World(cfg, root)
        _draw_scenes(world, workers)
        _write_annotations(world)
        _write_pretrain_captions(world)
        _write_bench(world)
        _write_yes_no(world)
        _write_grounding(world)
        _write_preference(world)
        manifest = {
            "seed": cfg.seed,
            "config": cfg.to_dict(),
            "paths": "relative to the world directory (the folder of this manifest)",
            "counts": world.counts,
            "stats": world.stats,
            "files": sorted(world.files, key=lambda f: f["path"]),
        }
        write_file(root, "manifest.json", json_bytes(manifest))
    return manifest


def _draw_scenes(world: World, workers: int) -> None:
    cfg = world.cfg
    person = PERSON if PERSON in cfg.categories else None
    constraint = {"any": (None, None), "person": (person, None), "other": (None, person)}
    pools = [("sft_test", cfg.sft_test_images, (None, None))]
    pools += [(name, cfg.ref_eval_images, constraint[target]) for name, _, target in GROUNDING_EVAL]
    plan = {
        "train": [(None, None)] * cfg.n_train,
        "val": [(None, None)] * cfg.n_val,
        "test": [rule for _, n, rule in pools for _ in range(n)],
    }
    chunks = []
    for split in SPLITS:
        jobs = [(index, *rule) for index, rule in enumerate(plan[split])]
        chunks += [
            (cfg, world.root, split, jobs[i : i + CHUNK]) for i in range(0, len(jobs), CHUNK)
        ]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            drawn = list(pool.map(_draw_chunk, chunks))
    else:
        drawn = [_draw_chunk(chunk) for chunk in chunks]
    for (_, _, split, _), (scenes, files, _) in zip(chunks, drawn, strict=True):
        world.scenes.setdefault(split, []).extend(scenes)
        world.files += files
    start = 0
    for name, n, _ in pools:
        world.pools[name] = world.scenes["test"][start : start + n]
        start += n
    train = world.scenes["train"]
    per_image = [len(s.objects) for s in train]
    sides = [o.box_area**0.5 for s in train for o in s.objects]
    world.stats["scenes"] = {
        "objects_per_image_mean": float(np.mean(per_image)),
        "objects_per_image_histogram": dict(sorted(Counter(per_image).items())),
        "object_box_side_px_mean": float(np.mean(sides)),
        "object_box_side_px_min_max": [float(min(sides)), float(max(sides))],
        "category_frequency": dict(
            Counter(o.category for s in train for o in s.objects).most_common()
        ),
        "dropped_objects": sum(dropped for _, _, dropped in drawn),
        "pair_cooccurrence": _pair_cooccurrence(train, cfg.pairs),
    }


def _draw_chunk(chunk) -> tuple[list[Scene], list[dict], int]:
    """Draw and save a run of scenes of one split; returns them, their files' manifest entries and
    how many objects found no room. Module-level so worker processes can run it."""
    cfg, root, split, jobs = chunk
    scenes, files, dropped = [], [], 0
    for index, require, exclude in jobs:
        rng = stream(cfg.seed, "scene", SPLIT_CODE[split], index)
        categories = sample_categories(rng, cfg, require, exclude)
        placed = place_boxes(rng, categories, cfg)
        background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        pixels, objects = draw_scene(rng, cfg.image_size, background, placed, cfg.background_noise)
        image_id = (SPLIT_CODE[split] + 1) * ID_OFFSET + index + 1
        scene = Scene(
            image_id, split, f"DEMO_{split}_{image_id:012d}.png", background, tuple(objects)
        )
        files.append(write_file(root, image_path(scene), png_bytes(pixels)))
        scenes.append(scene)
        dropped += len(categories) - len(objects)
    return scenes, files, dropped


def _pair_cooccurrence(scenes: list[Scene], pairs) -> dict:
    """P(both members | at least one) per pair and pooled: the visual co-occurrence prior."""
    result, both_total, either_total = {}, 0, 0
    for a, b in pairs:
        either = [s for s in scenes if {a, b} & s.categories]
        both = sum({a, b} <= s.categories for s in either)
        result[f"{a}+{b}"] = both / max(1, len(either))
        both_total, either_total = both_total + both, either_total + len(either)
    result["pooled"] = both_total / max(1, either_total)
    return result


def _write_annotations(world: World) -> None:
    cfg = world.cfg
    first_instance = first_caption = 1
    words = []
    for split in SPLITS:
        scenes = world.scenes[split]
        for scene in scenes:
            rng = world.rng("captions", scene.image_id)
            world.mentions[scene.image_id] = lang.describe(scene, cfg.image_size)
            world.styles[scene.image_id] = lang.caption_styles(rng, cfg, cfg.captions_per_image)
        captions = {
            s.image_id: [world.caption(s, k) for k in range(cfg.captions_per_image)] for s in scenes
        }
        words += [len(c.split()) for texts in captions.values() for c in texts]
        instances = coco_instances(scenes, cfg.categories, cfg.image_size, first_instance)
        caption_file = coco_captions(scenes, captions, cfg.image_size, first_caption)
        first_instance += len(instances["annotations"])
        first_caption += len(caption_file["annotations"])
        world.write(f"annotations/instances_{split}.json", json_bytes(instances))
        world.write(f"annotations/captions_{split}.json", json_bytes(caption_file))
        world.counts[f"images_{split}"] = len(scenes)
        world.counts[f"instances_{split}"] = len(instances["annotations"])
        world.counts[f"captions_{split}"] = len(caption_file["annotations"])
    world.stats["captions"] = {
        "words_mean": float(np.mean(words)),
        "words_min_max": [min(words), max(words)],
    }


def _conversation(item_id: int, image: str, question: str, answer: str) -> dict:
    return {
        "id": item_id,
        "image": image,
        "conversations": [
            {"role": "user", "content": f"<image>\n{question}"},
            {"role": "assistant", "content": answer},
        ],
    }


def _absent_partners(scene: Scene, partners: dict[str, str]) -> list[str]:
    """Partners of present pair members that are not in the image: the prior's favourite errors."""
    present = scene.categories
    return sorted({partners[c] for c in present if c in partners and partners[c] not in present})


def _write_pretrain_captions(world: World) -> None:
    """Faithful captions, except that a caption of an image holding one pair member names the
    absent partner with ``hallucination_prob``, as web captions do."""
    cfg = world.cfg
    partners = partner_map(cfg.pairs)
    rng = world.rng("pretrain")
    items, eligible, planted, mentions_total, words = [], 0, 0, 0, []
    for scene in world.scenes["train"]:
        absent = _absent_partners(scene, partners)
        for k in range(cfg.pretrain_captions_per_image):
            mentions = world.mentions[scene.image_id]
            if absent:
                eligible += 1
                if rng.random() < cfg.hallucination_prob:
                    planted += 1
                    fake = absent[rng.integers(len(absent))]
                    mentions = lang.insert_mention(rng, mentions, fake, cfg.image_size)
            caption = lang.render_caption(
                mentions, world.styles[scene.image_id][k], scene.background
            )
            prompts = (
                lang.BENCH_PROMPTS
                if rng.random() < cfg.long_prompt_fraction
                else lang.SHORT_CAPTION_PROMPTS
            )
            prompt = prompts[rng.integers(len(prompts))]
            items.append(_conversation(len(items), image_path(scene), prompt, caption))
            mentions_total += len(mentions)
            words.append(len(caption.split()))
    items += _pretrain_yes_no(world, first_id=len(items))
    world.write("pretrain_captions.json", json_bytes(items))
    world.counts["pretrain_captions"] = len(items)
    world.stats["pretrain_captions"] = {
        "eligible_fraction": eligible / max(1, len(items)),  # captions of images missing a partner
        "planted_hallucination_rate": planted / max(1, eligible),
        "hallucinated_caption_fraction": planted
        / max(1, len(items)),  # CHAIRs of the training text
        "hallucinated_mention_fraction": planted
        / max(1, mentions_total),  # CHAIRi of the training text
        "words_mean": float(np.mean(words)),
    }


def _write_bench(world: World) -> None:
    """The objhal_bench stand-in: each of the 8 questions on an equal share of the val images."""
    cfg = world.cfg
    scenes = world.scenes["val"][: cfg.bench_images]
    rng = world.rng("bench")
    questions = [lang.BENCH_PROMPTS[i % len(lang.BENCH_PROMPTS)] for i in range(len(scenes))]
    rows = []
    for org_idx, (scene, question) in enumerate(
        zip(scenes, rng.permutation(questions), strict=True)
    ):
        image = image_path(scene)
        if cfg.bench_image_base64:
            image = base64.b64encode((world.root / image).read_bytes()).decode("ascii")
        rows.append(
            {
                "image": image,
                "question": str(question),
                "image_id": scene.image_id,
                "org_idx": org_idx,
            }
        )
    world.write("objhal_bench.jsonl", jsonl_bytes(rows))
    world.counts["bench"] = len(rows)


def _pretrain_yes_no(world: World, first_id: int) -> list[dict]:
    """Web-style yes/no questions for pre-training, so the base model knows the answer format (the
    exercise's base model answers yes/no at ~70 %). Like the captions they carry the prior: asked
    about the absent partner of a present object, the answer is "Yes" with ``vqa_prior_yes_prob``.
    """
    cfg = world.cfg
    partners = partner_map(cfg.pairs)
    rng = world.rng("pretrain_vqa")
    items, prior_yes = [], 0
    for scene in world.sample("pretrain_vqa", world.scenes["train"], cfg.pretrain_vqa_images):
        present = sorted(scene.categories)
        absent_partners = _absent_partners(scene, partners)
        if rng.random() < 0.5:
            category, answer = present[rng.integers(len(present))], "Yes"
        elif absent_partners:
            category = absent_partners[rng.integers(len(absent_partners))]
            answer = "Yes" if rng.random() < cfg.vqa_prior_yes_prob else "No"
            prior_yes += answer == "Yes"
        else:
            others = [c for c in cfg.categories if c not in scene.categories]
            category, answer = others[rng.integers(len(others))], "No"
        question = lang.YES_NO_QUESTION.format(noun=category)
        items.append(_conversation(first_id + len(items), image_path(scene), question, answer))
    world.stats["pretrain_yes_no"] = {"questions": len(items), "prior_driven_yes": prior_yes}
    return items


def _write_yes_no(world: World) -> None:
    """One Yes and one No question per image; the No object is the absent partner when there is
    one (a hard negative the co-occurrence prior gets wrong), else a random absent category."""
    cfg = world.cfg
    partners = partner_map(cfg.pairs)
    rng = world.rng("sft")
    hard = yes = n_images = 0
    splits = {
        "train": world.sample("sft", world.scenes["train"], cfg.sft_train_images),
        "test": world.pools["sft_test"],
    }
    for name, scenes in splits.items():
        items = []
        for scene in scenes:
            present = sorted(scene.categories)
            absent = _absent_partners(scene, partners)
            hard += bool(absent)
            n_images += 1
            absent = absent or [c for c in cfg.categories if c not in scene.categories]
            qa = [
                (present[rng.integers(len(present))], "Yes"),
                (absent[rng.integers(len(absent))], "No"),
            ]
            for category, answer in qa if rng.random() < 0.5 else qa[::-1]:
                question = lang.YES_NO_QUESTION.format(noun=category)
                items.append(_conversation(len(items), image_path(scene), question, answer))
                yes += answer == "Yes"
        world.write(f"sft/{name}.json", json_bytes(items))
        world.counts[f"sft_{name}"] = len(items)
    world.stats["sft"] = {
        "yes_fraction": yes / max(1, 2 * n_images),
        "hard_negative_fraction": hard / max(1, n_images),
    }


def _expressions(
    world: World, rng: np.random.Generator, scenes: list[Scene], styles, targets: str
) -> list[dict]:
    """Up to ``expressions_per_image`` unambiguous expressions per image, in Shikra REC rows."""
    size = world.cfg.image_size
    rows = []
    for scene in scenes:
        order = rng.permutation(len(scene.objects))
        found = 0
        for index in order:
            is_person = scene.objects[index].category == PERSON
            if (targets == "person" and not is_person) or (targets == "other" and is_person):
                continue
            style = styles[rng.integers(len(styles))]
            expression = refer(rng, int(index), scene, style, size)
            if expression is None:
                continue
            rows.append(
                {
                    "img_path": image_path(scene),
                    "expression": expression,
                    "bbox": list(scene.objects[index].box),
                    "dataset_name": style,
                    "height": size,
                    "width": size,
                }
            )
            found += 1
            if found == world.cfg.expressions_per_image:
                break
    return rows


def _write_grounding(world: World) -> None:
    cfg = world.cfg
    files = {}
    for k, (pool, flavours, targets) in enumerate(GROUNDING_EVAL):
        scheme, split = pool.split("_")
        for flavour in flavours:
            rng = world.rng("grounding", k, STYLES.index(flavour))
            files[SHIKRA_REC_FILES[flavour, split]] = _expressions(
                world, rng, world.pools[pool], (flavour,), targets
            )
    train_scenes = world.sample("grounding", world.scenes["train"], cfg.ref_train_images)
    files["REC_ref3_train.jsonl"] = _expressions(
        world, world.rng("grounding", 99), train_scenes, STYLES, "any"
    )
    for name, rows in files.items():
        world.write(f"grounding/{name}", jsonl_bytes(rows))
    world.counts["grounding"] = {name: len(rows) for name, rows in files.items()}
    sides = [
        ((r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1])) ** 0.5
        for rows in files.values()
        for r in rows
    ]
    world.stats["grounding"] = {"box_side_px_mean": float(np.mean(sides)) if sides else 0.0}


def _write_preference(world: World) -> None:
    """Chosen: a faithful detailed description. Rejected: the same words with a fine-grained
    object error, half the time a present object swapped for its absent partner, otherwise one or
    two absent objects (partners first) inserted."""
    cfg = world.cfg
    partners = partner_map(cfg.pairs)
    rng = world.rng("preference")
    items, edits = [], Counter()
    for scene in world.sample("preference", world.scenes["train"], cfg.preference_images):
        mentions = world.mentions[scene.image_id]
        style = world.styles[scene.image_id][rng.integers(cfg.captions_per_image)]
        absent_partners = _absent_partners(scene, partners)
        if absent_partners and rng.random() < 0.5:
            fake = absent_partners[rng.integers(len(absent_partners))]
            rejected_mentions = lang.swap_mention(mentions, partners[fake], fake)
            edit = "swap"
        else:
            others = [
                c for c in cfg.categories if c not in scene.categories and c not in absent_partners
            ]
            pool = absent_partners + list(rng.permutation(others))
            n_fake = min(len(pool), 1 + int(rng.random() < 0.5))
            rejected_mentions = mentions
            for fake in pool[:n_fake]:
                rejected_mentions = lang.insert_mention(
                    rng, rejected_mentions, str(fake), cfg.image_size
                )
            edit = f"insert_{n_fake}"
        edits[edit] += 1
        items.append(
            {
                "idx": len(items),
                "question": lang.BENCH_PROMPTS[rng.integers(len(lang.BENCH_PROMPTS))],
                "chosen": lang.render_caption(mentions, style, scene.background),
                "rejected": lang.render_caption(rejected_mentions, style, scene.background),
                "image_path": image_path(scene),
                "metainfos": {"image_id": scene.image_id, "edit": edit},
            }
        )
    world.write("preference_train.json", json_bytes(items))
    world.counts["preference_pairs"] = len(items)
    world.stats["preference"] = {"edits": dict(sorted(edits.items()))}
