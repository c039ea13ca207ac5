"""The HF-native families on tiny random-weight checkpoints built offline (mllm.family.tiny)."""

from __future__ import annotations

import filecmp
import math
import re

import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from mllm.data.errors import DataError
from mllm.data.preprocess import IGNORE_INDEX
from mllm.download.model import snapshot_model
from mllm.family import tiny
from mllm.family.hf import shipped_template
from mllm.family.preflight import BudgetSample, check_token_budget
from mllm.family.registry import FAMILIES
from mllm.preference.logps import get_batch_logps
from mllm.preference.reference_cache import loaded_model_cache_key
from mllm.workflow.plan import ConfigError

FAMILY_NAMES = sorted(tiny.BUILDERS)
QUESTION = "Is there a dog?"
# what a prompt ends with: ChatML's assistant turn, or the family's own turn format
GENERATION_PROMPTS = {"idefics3": "Assistant:", "smolvlm": "Assistant:"}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Family name -> a tiny checkpoint folder, built once per test session."""
    root = tmp_path_factory.mktemp("hf_families")
    return {name: tiny.build(name, root / name) for name in FAMILY_NAMES}


@pytest.fixture(scope="session")
def loaded_models(checkpoints):
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = FAMILIES[name]().load(checkpoints[name])
        return cache[name]

    return load


@pytest.fixture(params=FAMILY_NAMES)
def loaded(request, loaded_models):
    return loaded_models(request.param)


def images_of_two_sizes() -> list[Image.Image]:
    """Two images that take different numbers of tokens in every family."""
    generator = torch.Generator().manual_seed(0)
    sizes = [(56, 56), (128, 64)]
    return [
        Image.fromarray(
            torch.randint(
                0, 256, (height, width, 3), generator=generator, dtype=torch.uint8
            ).numpy()
        )
        for width, height in sizes
    ]


def conversation(answer: str) -> list[dict]:
    return [
        {"role": "user", "content": f"<image>\n{QUESTION}"},
        {"role": "assistant", "content": answer},
    ]


def logits_of(model, batch) -> torch.Tensor:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        return model(**inputs).logits  # [B, L, V]


def summed_logps(model, batch) -> torch.Tensor:
    """Summed response log-probs per row, accumulated in float64 (P9), [B]."""
    per_token = get_batch_logps(logits_of(model, batch), batch["labels"]).per_token
    return per_token.double().sum(dim=1)


# -- template and image tokens -------------------------------------------------------------------
def test_template_has_image_placeholder_and_generation_prompt(loaded):
    processor = loaded.processor
    image = images_of_two_sizes()[0]
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert processor.image_token in text
    assert text.endswith(GENERATION_PROMPTS.get(loaded.family.name, "<|im_start|>assistant\n"))
    tokenized = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    direct = processor(text=[text], images=[[image]], return_tensors="pt")
    assert torch.equal(tokenized["input_ids"], direct["input_ids"])


def test_image_tokens_equal_image_features(loaded):
    model = loaded.model
    inputs = loaded.family.generation_inputs(loaded, [QUESTION] * 2, images_of_two_sizes())
    image_keys = ("pixel_values", "image_grid_thw", "image_sizes", "pixel_attention_mask")
    image_inputs = {key: inputs[key] for key in image_keys if key in inputs}
    with torch.no_grad():
        features = model.get_image_features(**image_inputs).pooler_output
    rows = (
        sum(len(f) for f in features)
        if isinstance(features, (tuple, list))
        else math.prod(features.shape[:2])
    )
    image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1)  # [B]
    assert int(image_tokens.sum()) == rows
    assert image_tokens[0] != image_tokens[1]  # the two sizes really differ


def test_left_padded_batch_of_two_image_sizes(loaded):
    inputs = loaded.family.generation_inputs(loaded, [QUESTION] * 2, images_of_two_sizes())
    mask = inputs["attention_mask"]  # [2, L]
    assert mask[:, -1].all(), "left padding: every row ends with its last real token"
    short = int(mask.sum(dim=1).argmin())
    assert not mask[short, 0]
    pad_id = loaded.tokenizer.pad_token_id
    assert (inputs["input_ids"][mask == 0] == pad_id).all()
    if "mm_token_type_ids" in inputs:
        assert (inputs["mm_token_type_ids"][mask == 0] == 0).all()
    with torch.no_grad():
        loaded.model(**inputs)


# -- decoding batch-invariance ---------------------------------------------------------------------
def _generate(loaded, questions, images, **settings):
    inputs = loaded.family.generation_inputs(loaded, questions, images)
    tokenizer = loaded.tokenizer
    with torch.no_grad():
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=6,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=loaded.family.terminator_ids(loaded),
            return_dict_in_generate=True,
            output_scores=True,
            **settings,
        )
    return output.sequences[:, inputs["input_ids"].shape[1] :], output.scores


@pytest.mark.parametrize(
    "settings",
    [{"do_sample": False}, {"do_sample": False, "num_beams": 2}],
    ids=["greedy", "beam"],
)
def test_generation_batched_equals_one_by_one(loaded, settings):
    images = images_of_two_sizes()
    batched, _ = _generate(loaded, [QUESTION] * 2, images, **settings)
    for row, image in enumerate(images):
        alone, _ = _generate(loaded, [QUESTION], [image], **settings)
        answer = loaded.family.decode_answer(loaded, batched[row])
        assert answer == loaded.family.decode_answer(loaded, alone[0])


def test_sampling_first_scores_batched_equal_alone(loaded):
    images = images_of_two_sizes()
    settings = {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 1.0}
    torch.manual_seed(0)
    _, batched_scores = _generate(loaded, [QUESTION] * 2, images, **settings)
    for row, image in enumerate(images):
        _, alone_scores = _generate(loaded, [QUESTION], [image], **settings)
        torch.testing.assert_close(batched_scores[0][row], alone_scores[0][0], atol=1e-5, rtol=0)


# -- training tensors ------------------------------------------------------------------------------
def _samples(loaded):
    answers = ["Yes, a dog.", "No, there is a brown cat on the left of the image."]
    return [
        loaded.family.training_sample(
            loaded, conversation(answer), [image], max_length=512, sample_id=index
        )
        for index, (answer, image) in enumerate(zip(answers, images_of_two_sizes(), strict=True))
    ]


def test_labels_are_pre_shifted_assistant_tokens(loaded):
    sample = _samples(loaded)[0]
    input_ids, labels = sample["input_ids"], sample["labels"]
    supervised = torch.nonzero(labels != IGNORE_INDEX).flatten()
    assert torch.equal(labels[supervised], input_ids[supervised + 1])  # labels[t] = token t + 1
    answer = loaded.tokenizer.decode(labels[supervised], skip_special_tokens=True)
    assert answer.strip() == "Yes, a dog."  # Idefics3's "Assistant:" turn puts a space first
    assert labels[supervised[-1]] == loaded.tokenizer.eos_token_id  # the answer's end is learnt


def test_collate_right_pads_and_extends_mm_token_type_ids(loaded):
    samples = _samples(loaded)
    batch = loaded.family.collate(loaded, samples)
    lengths = [len(sample["input_ids"]) for sample in samples]
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    if "mm_token_type_ids" in batch:  # zeros after the real tokens (P3)
        assert (batch["mm_token_type_ids"][short, min(lengths) :] == 0).all()
        image_tokens = batch["input_ids"] == loaded.model.config.image_token_id
        assert torch.equal(batch["mm_token_type_ids"] == 1, image_tokens)


def test_summed_logps_batched_equal_one_by_one(loaded):
    samples = _samples(loaded)
    family, model = loaded.family, loaded.model
    batched = summed_logps(model, family.collate(loaded, samples))  # [2]
    alone = torch.cat([summed_logps(model, family.collate(loaded, [s])) for s in samples])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    # a deliberate off-by-one label shift moves the sums far beyond the tolerance
    shifted = family.collate(loaded, samples)
    shifted["labels"] = torch.roll(shifted["labels"], shifts=1, dims=1)
    assert (summed_logps(model, shifted) - batched).abs().min() > 1e-2


def second_image_position(loaded, input_ids: torch.Tensor) -> int:
    """Index of the second token of the (first) image's region in ``input_ids`` [L]."""
    region = torch.tensor(sorted(loaded.family.image_region_ids(loaded)))
    return int(torch.nonzero(torch.isin(input_ids, region))[1])


def test_cut_inside_image_tokens_names_the_sample(loaded):
    ids = _samples(loaded)[0]["input_ids"]
    inside = second_image_position(loaded, ids)
    with pytest.raises(DataError, match="sample 7: .*inside image tokens"):
        loaded.family.training_sample(
            loaded, conversation("Yes."), images_of_two_sizes()[:1], max_length=inside, sample_id=7
        )
    cut = loaded.family.training_sample(
        loaded,
        conversation("Yes, a dog."),
        images_of_two_sizes()[:1],
        max_length=len(ids) - 3,
        sample_id=7,
    )
    assert cut["truncated"] and len(cut["input_ids"]) == len(ids) - 3


# -- LoRA ------------------------------------------------------------------------------------------
def test_lora_touches_no_vision_module_trains_and_round_trips(loaded, checkpoints, tmp_path):
    family = loaded.family
    model = get_peft_model(
        family.load(checkpoints[family.name]).model,  # a copy: PEFT wraps modules in place
        LoraConfig(
            r=4, lora_alpha=8, target_modules=family.lora_target_regex, init_lora_weights=False
        ),
    )
    adapted = [
        name
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "lora_A" not in name
    ]
    assert adapted and all(f"{family.llm_path}.layers." in name for name in adapted)
    vision_before = {
        n: p.clone()
        for n, p in model.named_parameters()
        if "lora" not in n and ("visual" in n or "vision" in n)
    }
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = family.collate(loaded, _samples(loaded))
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    loss = (
        -get_batch_logps(logits, batch["labels"]).per_token.sum()
        / (batch["labels"] != IGNORE_INDEX).sum()
    )
    loss.backward()
    optimizer.step()
    model.eval()
    assert all(
        torch.equal(p, vision_before[n]) for n, p in model.named_parameters() if n in vision_before
    )
    family.save(loaded, model, tmp_path / "merged")
    reloaded = family.load(tmp_path / "merged")
    torch.testing.assert_close(
        logits_of(reloaded.model, batch), logits_of(model, batch), atol=1e-5, rtol=0
    )


def test_save_load_round_trip_equal_logits(loaded, tmp_path):
    batch = loaded.family.collate(loaded, _samples(loaded))
    loaded.family.save(loaded, loaded.model, tmp_path / "saved")
    reloaded = loaded.family.load(tmp_path / "saved")
    assert torch.equal(logits_of(reloaded.model, batch), logits_of(loaded.model, batch))
    assert loaded.family.cache_identity(reloaded) == loaded.family.cache_identity(loaded)


# -- boxes -----------------------------------------------------------------------------------------
def test_box_round_trip_and_edges(loaded):
    family = loaded.family
    image = Image.new("RGB", (200, 100))
    answer = family.box_answer(loaded, "the dog", (20.0, 10.0, 150.0, 90.0), image)
    parsed = family.parse_box(loaded, answer, image)
    assert parsed == pytest.approx((20.0, 10.0, 150.0, 90.0), abs=1.0)
    whole = family.parse_box(loaded, family.box_answer(loaded, "x", (0, 0, 200, 100), image), image)
    assert whole == pytest.approx((0, 0, 200, 100))
    beyond = family.parse_box(
        loaded, family.box_answer(loaded, "x", (-5, -5, 260, 130), image), image
    )
    assert beyond == pytest.approx((0, 0, 200, 100))
    assert family.parse_box(loaded, "no box here", image) is None


def test_box_answer_survives_tokenize_and_decode(loaded):
    image = Image.new("RGB", (200, 100))
    answer = loaded.family.box_answer(loaded, "the dog", (20.0, 10.0, 150.0, 90.0), image)
    tokens = loaded.tokenizer(answer + "<|im_end|>", return_tensors="pt")["input_ids"][0]
    decoded = loaded.family.decode_answer(loaded, tokens)
    assert decoded == answer  # tags kept where they are special tokens (P5)


def test_qwen2_5_vl_boxes_are_pixels_of_the_resized_image(loaded_models):
    loaded = loaded_models("qwen2_5_vl")
    image = images_of_two_sizes()[1]
    grid = loaded.processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][
        0
    ]
    patch = loaded.processor.image_processor.patch_size
    resized = (int(grid[2]) * patch, int(grid[1]) * patch)
    assert loaded.family.resized_size(loaded, image) == resized
    answer = loaded.family.box_answer(loaded, "x", (0, 0, *image.size), image)
    assert f"[0, 0, {resized[0]}, {resized[1]}]" in answer


@pytest.mark.parametrize("name", ["qwen3_vl", "internvl", "idefics3", "smolvlm"])
def test_grid_families_answer_on_0_to_1000(loaded_models, name):
    loaded = loaded_models(name)
    image = Image.new("RGB", (640, 480))
    answer = loaded.family.box_answer(loaded, "x", (0, 0, 640, 480), image)
    assert "[0, 0, 1000, 1000]" in answer
    assert "[320, 240, 640, 480]" in loaded.family.box_answer(
        loaded, "x", (204.8, 115.2, 409.6, 230.4), image
    )


def test_internvl_parses_the_stripped_form(loaded_models):
    loaded = loaded_models("internvl")
    image = Image.new("RGB", (1000, 500))
    assert loaded.family.parse_box(loaded, "dog[[100, 200, 300, 400]]", image) == pytest.approx(
        (100, 100, 300, 200)
    )


# -- processor identity, preflight, fixture ---------------------------------------------------------
def test_cache_identity_covers_backend_limits_and_template(loaded_models, checkpoints, tmp_path):
    loaded = loaded_models("qwen2_5_vl")
    identity = loaded.family.cache_identity(loaded)
    assert identity["image_backend"] == "pil"
    assert identity["chat_template_source"] == "shipped:qwen2_5_vl.jinja"
    changed = FAMILIES["qwen2_5_vl"]().load(checkpoints["qwen2_5_vl"])
    changed.processor.image_processor.size["longest_edge"] //= 2
    assert loaded.family.cache_identity(changed)["pixel_limits"] != identity["pixel_limits"]
    changed.processor.chat_template = shipped_template("qwen3_vl.jinja")
    other = loaded.family.cache_identity(changed)
    assert other["chat_template_source"] == "checkpoint"
    assert other["chat_template_sha256"] != identity["chat_template_sha256"]


def test_checkpoint_without_template_gets_the_shipped_one(checkpoints, tmp_path):
    import shutil

    folder = tmp_path / "no_template"
    shutil.copytree(checkpoints["qwen3_vl"], folder)
    (folder / "chat_template.jinja").unlink()
    loaded = FAMILIES["qwen3_vl"]().load(folder)
    assert loaded.processor.chat_template == shipped_template("qwen3_vl.jinja")


def test_preflight_reports_lengths_and_refuses_cuts(loaded):
    images = images_of_two_sizes()
    samples = [
        BudgetSample(index, conversation("Yes, a dog."), [image])
        for index, image in enumerate(images)
    ]
    lengths = [len(s["input_ids"]) for s in _samples_of(loaded, samples)]
    report = check_token_budget(loaded, samples, max_length=max(lengths))
    assert report["sequence_length"]["max"] == max(lengths)
    assert report["sequence_length"]["min"] == min(lengths)
    assert report["image_tokens"]["max"] > report["image_tokens"]["min"]
    longest = lengths.index(max(lengths))  # not always the larger image (LLaVA-OV's anyres)
    with pytest.raises(DataError, match=f"sample {longest}: .* exceed max_length"):
        check_token_budget(loaded, samples, max_length=max(lengths) - 1)
    relaxed = check_token_budget(
        loaded, samples, max_length=max(lengths) - 1, refuse_over_length=False
    )
    assert relaxed["over_max_length"] == [longest]
    inside = second_image_position(loaded, _samples_of(loaded, samples[1:])[0]["input_ids"])
    with pytest.raises(DataError, match="sample 1: .*inside image tokens"):
        check_token_budget(loaded, samples[1:], max_length=inside, refuse_over_length=False)


def _samples_of(loaded, samples):
    return [
        loaded.family.training_sample(
            loaded, s.conversations, s.images, max_length=10_000, sample_id=s.sample_id
        )
        for s in samples
    ]


@pytest.mark.slow
def test_tiny_builds_are_byte_identical(checkpoints, tmp_path):
    for name in FAMILY_NAMES:
        rebuilt = tiny.build(name, tmp_path / name)
        files = sorted(p.name for p in checkpoints[name].iterdir())
        assert files == sorted(p.name for p in rebuilt.iterdir())
        _, mismatch, errors = filecmp.cmpfiles(checkpoints[name], rebuilt, files, shallow=False)
        assert not mismatch and not errors, f"{name}: {mismatch or errors}"


def test_qwen_positions_need_mm_token_type_ids(loaded_models):
    """Without ``mm_token_type_ids`` Qwen2.5-VL silently falls back to 1-D positions (P3)."""
    loaded = loaded_models("qwen2_5_vl")
    batch = loaded.family.collate(loaded, _samples(loaded))
    dropped = {key: value for key, value in batch.items() if key != "mm_token_type_ids"}
    assert not torch.allclose(logits_of(loaded.model, dropped), logits_of(loaded.model, batch))


@pytest.mark.parametrize("name", ["internvl", "idefics3", "smolvlm"])
def test_bare_projection_names_would_adapt_the_vision_tower(loaded_models, name):
    """Why each family carries a regex: the bare q/k/v list hits InternVL's and Idefics3's
    vision towers (P4); the family's regex hits none of them."""
    loaded = loaded_models(name)
    vision = f"{loaded.family.vision_path}."
    bare = [
        name
        for name, _ in loaded.model.named_modules()
        if name.endswith(("q_proj", "k_proj", "v_proj"))
    ]
    assert any(name.startswith(vision) for name in bare)
    regex = re.compile(loaded.family.lora_target_regex)
    assert not any(regex.fullmatch(name) for name in bare if name.startswith(vision))


def test_model_parts_cover_every_parameter_and_freeze_apart(loaded, checkpoints):
    model = loaded.family.load(checkpoints[loaded.family.name]).model  # a copy to freeze
    parts = loaded.family.model_parts(model)
    covered = {id(p) for _, module in parts.values() for p in module.parameters()}
    assert covered == {id(p) for p in model.parameters()}
    for role in ("vision", "projector", "llm"):  # the trainer's order
        parts[role][1].requires_grad_(role == "projector")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in parts["projector"][1].parameters()}


def test_tiny_cli_writes_a_checkpoint_the_registry_loads(tmp_path, capsys):
    from mllm.family.registry import family_of

    out = tmp_path / "qwen3_vl"
    tiny.main(["qwen3_vl", str(out)])  # what ``python -m mllm.family.tiny`` runs
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
    assert family_of(out).name == "qwen3_vl"


# the config's model.max_pixels, per family: small enough to shrink the 128×64 test image
SMALL_MAX_PIXELS = {
    "qwen2_5_vl": 4 * 28 * 28,
    "qwen3_vl": 4 * 32 * 32,
    "internvl": 1,
    "idefics3": 16 * 16,  # one 16-px tile: no split, the global view only
    "smolvlm": 16 * 16,
}


@pytest.mark.parametrize("name", sorted(SMALL_MAX_PIXELS))
def test_configured_pixel_limits_change_image_tokens_preflight_and_cache_key(
    checkpoints, tmp_path, name
):
    """model.max_pixels, written into the downloaded checkpoint: fewer image tokens, another
    processor identity in the preflight report and another reference-logps cache key; the
    source checkpoint (hard-linked into the download) is left as it was."""
    source = checkpoints[name]
    before = {path.name: path.read_bytes() for path in source.iterdir() if path.is_file()}
    plain = snapshot_model(str(source), tmp_path / "plain", family=name)
    limited = snapshot_model(
        str(source), tmp_path / "limited", family=name, max_pixels=SMALL_MAX_PIXELS[name]
    )
    assert plain["pixel_limits"] is None and limited["pixel_limits"]
    assert {path.name: path.read_bytes() for path in source.iterdir() if path.is_file()} == before

    image = images_of_two_sizes()[1]  # 128×64
    sample = [BudgetSample(0, conversation("Yes, a dog."), [image])]
    pairs = tmp_path / "pairs.json"
    pairs.write_text("[]")
    keys, reports = [], []
    for folder in ("plain", "limited"):
        loaded = FAMILIES[name]().load(tmp_path / folder)
        reports.append(check_token_budget(loaded, sample, max_length=10_000))
        keys.append(
            loaded_model_cache_key(
                loaded,
                model_dir=tmp_path / "plain",  # the same weights: only the processor differs
                data_path=pairs,
                image_folder=None,
                max_length=64,
            )
        )
    assert reports[1]["image_tokens"]["max"] < reports[0]["image_tokens"]["max"]
    assert reports[1]["processor"]["pixel_limits"] != reports[0]["processor"]["pixel_limits"]
    assert keys[1] != keys[0]


def test_pixel_limits_a_family_cannot_take_are_refused_before_any_output(checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="'llava_onevision' has no pixel limits"):
        snapshot_model(
            str(checkpoints["llava_onevision"]),
            tmp_path / "llava",
            family="llava_onevision",
            max_pixels=10_000,
        )
    with pytest.raises(ConfigError, match="min_pixels 5000 exceeds max_pixels 4000"):
        snapshot_model(
            str(checkpoints["qwen2_5_vl"]),
            tmp_path / "qwen",
            family="qwen2_5_vl",
            min_pixels=5000,
            max_pixels=4000,
        )
    assert not (tmp_path / "llava").exists() and not (tmp_path / "qwen").exists()


def test_idefics3_max_pixels_is_a_longest_edge_in_whole_tiles_and_min_pixels_is_refused(
    checkpoints, tmp_path
):
    """Idefics3 resizes every image's longest edge to ``size.longest_edge``: max_pixels bounds
    it in whole tiles (so no image exceeds it); min_pixels has nothing to set and is refused."""
    family = FAMILIES["idefics3"]()
    image_processor = family.load(checkpoints["idefics3"]).processor.image_processor
    tile = image_processor.max_image_size["longest_edge"]
    settings = family.pixel_limit_settings(image_processor, None, 3 * tile * 3 * tile - 1)
    assert settings == {"size": {"longest_edge": 2 * tile}}
    assert family.pixel_limit_settings(image_processor, None, 1) == {"size": {"longest_edge": tile}}
    with pytest.raises(ConfigError, match="'idefics3' has no min_pixels"):
        snapshot_model(
            str(checkpoints["idefics3"]), tmp_path / "idefics3", family="idefics3", min_pixels=64
        )
    assert not (tmp_path / "idefics3").exists()
