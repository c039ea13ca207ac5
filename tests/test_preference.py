"""Preference alignment: log-probs, DPO/NCA against TRL, the reference cache, data checks, a step."""

from __future__ import annotations

import base64
import json
import logging
import math
import os
from collections import defaultdict
from functools import partial
from io import BytesIO
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from trl import DPOTrainer

from mllm.data.errors import DataError
from mllm.data.images import ImageProcessor
from mllm.data.special_tokens import IM_END
from mllm.demo.tokenizer import build_tokenizer
from mllm.family.own import OwnFamily
from mllm.model.io import image_processor_for, save_model
from mllm.preference import train as preference_train
from mllm.preference.dataset import PreferenceDataset, collate_preference_pairs
from mllm.preference.logps import get_batch_logps, mean_token_nll
from mllm.preference.losses import preference_loss
from mllm.preference.reference import build_reference_logps
from mllm.preference.reference_cache import (
    load_reference_logps,
    merge_reference_logps,
    reference_cache_key,
    save_reference_logps,
    score_reference,
)
from mllm.preference.settings import PreferenceSettings
from mllm.preference.trainer import PreferenceTrainer
from mllm.train.settings import TrainSettings
from mllm.train.trainer import train
from tests.conftest import QUERY_NUM, tiny_model
from tests.test_sft import SETTINGS

MAX_LENGTH = SETTINGS["max_length"]
CAPTIONS = ["A red cup on a dining table.", "A dog next to a person.", "A fork and a knife."]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CAPTIONS + ["Describe the image in detail."] * 3, vocab_size=1400)


def model_for(tokenizer, seed: int = 0):
    """A tiny MLLM over ``tokenizer`` that takes 16×16 images as 2×2 patches of 8 px."""
    return tiny_model(
        seed,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END)],
        patch_size=8,
        image_size=16,
        slice_mode=False,
    )


def loaded_for(tokenizer, model=None):
    """``model`` (default: ``model_for(tokenizer)``) as the own family loads it."""
    return OwnFamily().wrap(model if model is not None else model_for(tokenizer), tokenizer)


def noise_png(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def pair_record(idx: int, **overrides) -> dict:
    record = {
        "idx": idx,
        "question": "Describe the image in detail.",
        "chosen": CAPTIONS[idx % 3],
        "rejected": CAPTIONS[(idx + 1) % 3],
        "image_path": f"{idx}.png",
    }
    record.update(overrides)
    return record


@pytest.fixture
def world(tmp_path):
    """Four pairs on image files plus one with a base64 image; their JSON file and image folder."""
    images = tmp_path / "images"
    images.mkdir()
    for idx in range(4):
        (images / f"{idx}.png").write_bytes(noise_png(idx))
    embedded = base64.b64encode(noise_png(9, size=48)).decode()  # > 1000 chars: base64
    records = [pair_record(idx) for idx in range(4)]
    records.append(pair_record(4, image=embedded, image_path=None))
    data = tmp_path / "preference_train.json"
    data.write_text(json.dumps(records))
    return SimpleNamespace(data=data, images=images, records=records)


def dataset_for(tokenizer, records, images, **kwargs) -> PreferenceDataset:
    return PreferenceDataset(
        records,
        loaded_for(tokenizer),
        max_length=MAX_LENGTH,
        image_folder=str(images),
        **kwargs,
    )


# -- log-probs --------------------------------------------------------------------------------


def test_get_batch_logps_on_pre_shifted_labels_by_hand():
    # Distributions: p = (1/4, 1/2, 1/4) from logits log(1, 2, 1); uniform 1/3 from zeros.
    skewed = torch.log(torch.tensor([1.0, 2.0, 1.0]))
    uniform = torch.zeros(3)
    logits = torch.stack(
        [
            torch.stack([skewed, skewed, uniform, uniform]),
            torch.stack([uniform, uniform, skewed, skewed]),
        ]
    )  # [2, 4, 3]
    labels = torch.tensor([[1, 0, -100, -100], [-100, 2, 1, -100]])  # row 0 right-padded
    per_token, total, average = get_batch_logps(logits, labels)
    expected = torch.tensor(
        [
            [math.log(1 / 2), math.log(1 / 4), 0.0, 0.0],
            [0.0, math.log(1 / 3), math.log(1 / 2), 0.0],
        ]
    )
    torch.testing.assert_close(per_token, expected)
    sums = torch.tensor([math.log(1 / 8), math.log(1 / 6)], dtype=torch.float64)
    torch.testing.assert_close(total, sums)
    torch.testing.assert_close(average, sums / 2)
    torch.testing.assert_close(mean_token_nll(per_token, labels), -expected.sum() / 4)


def test_summed_logps_do_not_depend_on_the_padding_side():
    """Float64 sums (MODEL_FAMILIES.md P9): the same response right- or left-padded gives the
    same sum to the bit, on tokens where a float32 sum depends on the order."""
    generator = torch.Generator().manual_seed(0)
    tokens, pads, vocab = 400, 7, 50
    logits = torch.randn(1, tokens, vocab, generator=generator) * 4  # [1, T, V]
    labels = torch.randint(0, vocab, (1, tokens), generator=generator)  # [1, T]
    padding = torch.zeros(1, pads, vocab)
    ignored = torch.full((1, pads), -100)
    right = get_batch_logps(torch.cat([logits, padding], 1), torch.cat([labels, ignored], 1))
    left = get_batch_logps(torch.cat([padding, logits], 1), torch.cat([ignored, labels], 1))
    assert right.sum.dtype == torch.float64
    assert torch.equal(right.sum, left.sum)
    per_token = right.per_token[0, :tokens]  # float32
    assert per_token.sum() != per_token.flip(0).sum()  # float32 summation order matters here


# -- losses against TRL -----------------------------------------------------------------------


def trl_compute_loss(loss_types, loss_weights, beta, per_token, mask, ref_chosen, ref_rejected):
    """Run TRL 1.x ``DPOTrainer._compute_loss`` on given per-token log-probs [2B, T].

    A stub ``self`` carries only what that method reads, and a stub model returns ``per_token``
    as its fused LM head's ``log_probs`` (TRL's shifted completion mask is ``mask``).
    """
    rows, length = per_token.shape
    zeros = torch.zeros(rows, length)
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(
            device="cpu", gather=lambda t: t, gather_for_metrics=lambda t: t
        ),
        model=SimpleNamespace(training=True),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=loss_types,
        loss_weights=loss_weights,
        beta=beta,
        use_weighting=False,
        label_smoothing=0.0,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    outputs = SimpleNamespace(
        log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
    )
    completion_mask = torch.cat([torch.zeros(rows, 1, dtype=torch.long), mask.long()], dim=1)
    inputs = {
        "input_ids": torch.ones(rows, length + 1, dtype=torch.long),
        "attention_mask": torch.ones(rows, length + 1, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    loss = DPOTrainer._compute_loss(trainer, lambda **_: outputs, inputs, return_outputs=False)
    return loss, {name: values[-1] for name, values in trainer._metrics["train"].items()}


def random_pairs(pairs: int, length: int = 6, seed: int = 0):
    """Per-token log-probs [2B, T] (0 off the response), their mask, reference chosen and
    rejected sums [B]."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (2 * pairs,), generator=generator)
    mask = torch.arange(length) < lengths[:, None]  # [2B, T]
    per_token = -torch.rand(2 * pairs, length, generator=generator, dtype=torch.float64) * mask
    reference = per_token.sum(1) + torch.randn(2 * pairs, generator=generator, dtype=torch.float64)
    return per_token, mask, reference[:pairs], reference[pairs:]


@pytest.mark.parametrize(("ours", "theirs"), [("dpo", "sigmoid"), ("nca", "nca_pair")])
def test_losses_and_rewards_equal_trl_per_pair(ours, theirs):
    per_token, mask, ref_chosen, ref_rejected = random_pairs(pairs=6)
    policy = per_token.sum(1)
    result = preference_loss(policy[:6], policy[6:], ref_chosen, ref_rejected, 0.5, ours)
    for pair in range(6):
        rows = [pair, 6 + pair]
        trl_loss, trl_metrics = trl_compute_loss(
            [theirs],
            [1.0],
            0.5,
            per_token[rows],
            mask[rows],
            ref_chosen[pair : pair + 1],
            ref_rejected[pair : pair + 1],
        )
        assert result.losses[pair].item() == pytest.approx(trl_loss.item(), abs=1e-6)
        assert result.chosen_rewards[pair].item() == pytest.approx(
            trl_metrics["rewards/chosen"], abs=1e-6
        )
        assert result.rejected_rewards[pair].item() == pytest.approx(
            trl_metrics["rewards/rejected"], abs=1e-6
        )


def test_dpo_plus_nll_equals_trl_sigmoid_plus_sft_term():
    per_token, mask, ref_chosen, ref_rejected = random_pairs(pairs=4, seed=1)
    policy = per_token.sum(1)
    labels = torch.where(mask, 1, -100)  # any token id: only the mask matters
    ours = preference_loss(policy[:4], policy[4:], ref_chosen, ref_rejected, 0.1, "dpo")
    ours = ours.losses.mean() + 0.7 * mean_token_nll(per_token[:4], labels[:4])
    theirs, _ = trl_compute_loss(
        ["sigmoid", "sft"], [1.0, 0.7], 0.1, per_token, mask, ref_chosen, ref_rejected
    )
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


@pytest.mark.parametrize("loss_type", ["dpo", "nca"])
def test_gradient_pushes_the_right_way(loss_type):
    # The policy already prefers the chosen response a little; both losses must still push on.
    chosen, rejected = (
        torch.tensor([-4.0], requires_grad=True),
        torch.tensor([-5.0], requires_grad=True),
    )
    loss = preference_loss(
        chosen, rejected, torch.tensor([-4.5]), torch.tensor([-5.0]), 0.5, loss_type
    )
    loss.losses.sum().backward()
    if loss_type == "nca":  # gradient descent raises the chosen log-prob itself
        assert chosen.grad.item() < 0
    else:  # DPO raises the margin: chosen up, rejected down, equally
        assert chosen.grad.item() < 0 < rejected.grad.item()
        assert chosen.grad.item() == pytest.approx(-rejected.grad.item())


# -- data -------------------------------------------------------------------------------------


def test_dataset_builds_two_samples_per_pair_with_the_same_prompt(tokenizer, world):
    dataset = dataset_for(tokenizer, world.records, world.images)
    assert len(dataset) == 5 and dataset.skipped == []
    item = dataset[4]  # the base64 image
    assert item["pair_index"] == 4
    chosen, rejected = item["chosen"], item["rejected"]
    prompt = int((chosen["labels"] != -100).nonzero()[0])  # last prompt position
    assert torch.equal(chosen["input_ids"][: prompt + 1], rejected["input_ids"][: prompt + 1])
    assert torch.equal(chosen["image_bound"], rejected["image_bound"])
    assert tokenizer.decode(chosen["input_ids"][prompt + 1 :]) == f"\n{CAPTIONS[1]}{IM_END}"
    assert tokenizer.decode(rejected["input_ids"][prompt + 1 :]) == f"\n{CAPTIONS[2]}{IM_END}"
    assert "</image>\nDescribe the image in detail." in tokenizer.decode(chosen["input_ids"])
    rebuilt = dataset_for(tokenizer, world.records, world.images, cache=False)[4]
    assert torch.equal(rebuilt["rejected"]["labels"], rejected["labels"])


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"rejected": CAPTIONS[2] + " "}, "chosen and rejected responses are identical"),
        ({"chosen": "  "}, "the chosen response is empty"),
        ({"image_path": None}, "no image"),
        ({"image_path": "absent.png"}, "cannot decode image file"),
        ({"rejected": None}, "'rejected' must be a string"),
    ],
)
def test_bad_record_raises_naming_idx_or_is_counted_when_skipped(
    tokenizer, world, caplog, overrides, problem
):
    records = world.records[:2] + [pair_record(2, **overrides)]
    with pytest.raises(DataError, match=rf"record 2 \(idx 2\).*{problem}"):
        dataset_for(tokenizer, records, world.images)
    with caplog.at_level(logging.WARNING):
        dataset = dataset_for(tokenizer, records, world.images, on_bad_record="skip")
    assert len(dataset) == 2 and len(dataset.skipped) == 1
    assert problem in dataset.skipped[0]
    assert "skipped 1 of 3 records" in caplog.text


def test_response_cut_away_by_max_length_is_a_bad_record(tokenizer, world):
    with pytest.raises(DataError, match=r"idx 0.*chosen response: too long"):
        PreferenceDataset(
            world.records[:1],
            loaded_for(tokenizer),
            max_length=24,
            image_folder=str(world.images),
        )


def test_all_records_skipped_is_an_error(tokenizer, world):
    with pytest.raises(DataError, match="no usable preference pairs"):
        dataset_for(tokenizer, [pair_record(0, chosen="")], world.images, on_bad_record="skip")


# -- reference cache --------------------------------------------------------------------------


def key_for(model_dir, world, tokenizer, processor=None, **overrides):
    arguments = dict(
        model_dir=model_dir,
        data_path=world.data,
        tokenizer=tokenizer,
        processing={
            **vars(processor or ImageProcessor(patch_size=8, scale_resolution=16)),
            "query_num": QUERY_NUM,
        },
        max_length=MAX_LENGTH,
        image_folder=world.images,
    )
    arguments.update(overrides)
    return reference_cache_key(**arguments)


def test_cache_key_follows_content_only(tokenizer, world, tmp_path):
    model = model_for(tokenizer)
    save_model(model, tokenizer, tmp_path / "ref")
    base = key_for(tmp_path / "ref", world, tokenizer)

    # Same content: a copy of the model elsewhere, a touched or identically rewritten data file.
    save_model(model, tokenizer, tmp_path / "ref_copy")
    os.utime(world.data, (1, 1))
    world.data.write_bytes(world.data.read_bytes())
    assert key_for(tmp_path / "ref_copy", world, tokenizer).digest == base.digest

    with torch.no_grad():
        model.llm.lm_head.weight[0, 0] += 1.0
    save_model(model, tokenizer, tmp_path / "ref_changed")
    changed = {
        "reference_model": key_for(tmp_path / "ref_changed", world, tokenizer),
        "image_config": key_for(
            tmp_path / "ref", world, tokenizer, ImageProcessor(patch_size=8, scale_resolution=24)
        ),
        "template": key_for(tmp_path / "ref", world, tokenizer, system_prompt="Be brief."),
    }
    retemplated = build_tokenizer(CAPTIONS + ["Describe the image in detail."] * 3, 1400)
    retemplated.chat_template = retemplated.chat_template.replace("system", "System")
    changed["tokenizer"] = key_for(tmp_path / "ref", world, retemplated)
    for name, key in changed.items():
        assert base.differing(key) == [name], name

    (world.images / "1.png").write_bytes(noise_png(11))  # an image the data names
    assert base.differing(key_for(tmp_path / "ref", world, tokenizer)) == ["data"]
    world.data.write_text(json.dumps(world.records[:3]))
    assert base.differing(key_for(tmp_path / "ref", world, tokenizer)) == ["data"]


def test_cache_key_hashes_images_named_in_the_image_field(tokenizer, world, tmp_path):
    """PreferenceDataset reads ``image`` before ``image_path``: an image file named there is an
    input of the log-probs like one named in ``image_path``."""
    model = model_for(tokenizer)
    save_model(model, tokenizer, tmp_path / "ref")
    records = [pair_record(0, image="0.png", image_path=None), pair_record(1)]
    world.data.write_text(json.dumps(records))
    dataset_for(tokenizer, records, world.images)  # both records resolve to an image
    base = key_for(tmp_path / "ref", world, tokenizer)
    (world.images / "0.png").write_bytes(noise_png(12))
    assert base.differing(key_for(tmp_path / "ref", world, tokenizer)) == ["data"]


def test_cache_round_trip_is_exact_and_a_stale_cache_is_refused(tokenizer, world, tmp_path):
    model = model_for(tokenizer)
    save_model(model, tokenizer, tmp_path / "ref")
    dataset = dataset_for(tokenizer, world.records, world.images)
    scored = score_reference(loaded_for(tokenizer, model), dataset, batch_size=2)
    key = key_for(tmp_path / "ref", world, tokenizer)
    path = tmp_path / "reference_logps.safetensors"
    save_reference_logps(path, scored, key)

    loaded = load_reference_logps(path, key)
    for name, tensor in scored.tensors().items():
        assert torch.equal(getattr(loaded, name), tensor), name
    assert loaded.pair_indices.tolist() == list(range(5))
    lengths = loaded.chosen_token_lengths
    torch.testing.assert_close(loaded.chosen_token_logps.double().sum(1), loaded.chosen_logps)
    torch.testing.assert_close(loaded.chosen_avg_logps, loaded.chosen_logps / lengths)
    chosen, rejected = loaded.lookup(torch.tensor([3, 1]), average=True)
    assert torch.equal(chosen, scored.chosen_avg_logps[[3, 1]])
    assert torch.equal(rejected, scored.rejected_avg_logps[[3, 1]])

    stale = key_for(tmp_path / "ref", world, tokenizer, system_prompt="Be brief.")
    with pytest.raises(
        ValueError, match=r"stale reference log-probs: computed from a different template \(cache"
    ):
        load_reference_logps(path, stale)


def test_shards_merge_into_the_single_process_result(tokenizer, world):
    model = model_for(tokenizer)
    dataset = dataset_for(tokenizer, world.records, world.images)
    loaded = loaded_for(tokenizer, model)
    whole = score_reference(loaded, dataset, batch_size=1)
    shards = [score_reference(loaded, dataset, 1, shard_index=i, num_shards=2) for i in (1, 0)]
    assert [s.pair_indices.tolist() for s in shards] == [[1, 3], [0, 2, 4]]
    merged = merge_reference_logps(shards)
    for name, tensor in whole.tensors().items():
        torch.testing.assert_close(getattr(merged, name), tensor, msg=name)
    with pytest.raises(ValueError, match="exactly once"):
        merge_reference_logps(shards[:1])


# -- settings and trainer ---------------------------------------------------------------------


def test_preference_settings_reject_unknown_keys_and_bad_values():
    settings = PreferenceSettings.from_dict({"loss_type": "nca", "beta": 0.5, "nll_weight": 1})
    assert (settings.loss_type, settings.beta, settings.nll_weight) == ("nca", 0.5, 1)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rpo_alpha'\]"):
        PreferenceSettings.from_dict({"rpo_alpha": 1.0})
    with pytest.raises(ValueError, match="loss_type 'ipo'"):
        PreferenceSettings(loss_type="ipo")


def test_one_preference_step_logs_rewards_without_a_reference_forward(tokenizer, world, tmp_path):
    model = model_for(tokenizer)
    assert image_processor_for(model.config).scale_resolution == 16
    dataset = dataset_for(tokenizer, world.records[:4], world.images)
    reference = score_reference(loaded_for(tokenizer, model), dataset, batch_size=4)

    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    settings = TrainSettings.from_dict(
        {
            **SETTINGS,
            "learning_rate": 1e-2,
            "lr_scheduler_type": "constant",
            "warmup_ratio": 0.0,
            "max_steps": 2,
            "save_steps": 0,
        }
    )
    loaded = loaded_for(tokenizer, model)
    train(
        loaded,
        dataset,
        None,
        settings,
        model_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        state_path=tmp_path / "trainer_state.json",
        metrics_path=tmp_path / "metrics.json",
        job="mllm.preference.train",
        collate=partial(collate_preference_pairs, collate=partial(OwnFamily().collate, loaded)),
        trainer_class=PreferenceTrainer,
        trainer_kwargs={
            "reference_logps": reference,
            "preference": PreferenceSettings(loss_type="dpo", beta=0.1, nll_weight=1.0),
        },
    )
    assert len(forwards) == 2  # one policy forward per step, no reference forward

    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in history if "rewards/margins" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for name in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "logps/ref_chosen",
        "logps/ref_rejected",
        "nll",
    ):
        assert all(math.isfinite(entry[name]) for entry in steps), name
    # Step 1 runs the initial policy, which *is* the reference: same forward, zero rewards.
    assert steps[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert steps[0]["logps/chosen"] == pytest.approx(steps[0]["logps/ref_chosen"], abs=1e-4)
    assert steps[1]["rewards/margins"] != pytest.approx(0.0, abs=1e-6)


def test_trainer_refuses_a_cache_of_another_size(tokenizer, world, tmp_path):
    model = model_for(tokenizer)
    dataset = dataset_for(tokenizer, world.records, world.images)
    reference = score_reference(
        loaded_for(tokenizer, model), dataset_for(tokenizer, world.records[:2], world.images), 2
    )
    with pytest.raises(ValueError, match="cover 2 pairs but the training set has 5"):
        PreferenceTrainer(
            model=model,
            train_dataset=dataset,
            data_collator=collate_preference_pairs,
            reference_logps=reference,
            preference=PreferenceSettings(),
        )


def test_a_preference_run_keys_its_resume_on_the_loss_settings_and_the_reference(
    tokenizer, world, tmp_path, monkeypatch
):
    save_model(model_for(tokenizer), tokenizer, tmp_path / "start")
    build_reference_logps(
        model_dir=tmp_path / "start",
        data_file=world.data,
        image_folder=world.images,
        max_length=MAX_LENGTH,
        output_path=tmp_path / "reference.safetensors",
        summary_path=tmp_path / "reference.json",
    )
    calls = []
    monkeypatch.setattr(preference_train, "train", lambda *args, **kwargs: calls.append(kwargs))
    preference = PreferenceSettings(loss_type="nca", use_average_logp=True, nll_weight=0.5)
    preference_train.train_preference(
        start_model_dir=tmp_path / "start",
        reference_path=tmp_path / "reference.safetensors",
        data_file=world.data,
        image_folder=world.images,
        preference=preference,
        settings=TrainSettings.from_dict(SETTINGS),
        model_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        state_path=tmp_path / "state.json",
        metrics_path=tmp_path / "metrics.json",
    )
    [call] = calls
    assert call["job"] == "mllm.preference.train"  # its code: the loss's import closure
    key = json.loads((tmp_path / "reference.json").read_text())["content_key"]
    assert call["job_inputs"] == {"preference": preference, "reference_logps": key}
