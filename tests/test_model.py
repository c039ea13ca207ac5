"""The MLLM: fusion, loss on pre-shifted labels, generation, save/load, vision tower, checkpoint names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, LogitsProcessor

from mllm.model import MLLMConfig, MLLMModel
from mllm.model.vision import bucketed_position_ids, fractional_buckets
from tests.conftest import EOS, PAD, QUERY_NUM, multimodal_batch, strip, tiny_model

# A copy of shared/reference/exercise_checkpoint_manifest.json: state_dict() names and shapes of the
# exercise's MLLMModel, built on the meta device from its own code.
MANIFEST = Path(__file__).resolve().parent / "fixtures" / "exercise_checkpoint_manifest.json"


# -- fusion -------------------------------------------------------------------------------------


def test_image_features_land_exactly_at_the_bounds(model, batch):
    features = model.get_vision_features(batch["pixel_values"], batch["tgt_sizes"])
    fused = model.get_vllm_embedding(**batch)
    tokens = model.get_input_embeddings()(batch["input_ids"])
    for sample, bounds in enumerate(batch["image_bound"]):
        inside = torch.zeros(fused.shape[1], dtype=torch.bool)
        for piece, (start, end) in enumerate(bounds.tolist()):
            torch.testing.assert_close(fused[sample, start:end], features[sample][piece])
            inside[start:end] = True
        assert torch.equal(fused[sample, ~inside], tokens[sample, ~inside])


def test_gradient_flows_into_vision_tower_and_resampler(model, batch):
    model.train()
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    for name in (
        "vpm.embeddings.patch_embedding.weight",
        "vpm.encoder.layers.0.mlp.fc1.weight",
        "resampler.query",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_samples_without_images_and_text_only_batches(model, batch):
    mixed = dict(
        batch,
        pixel_values=[batch["pixel_values"][0], []],
        tgt_sizes=[batch["tgt_sizes"][0], torch.zeros(0, 2)],
    )
    mixed["image_bound"] = [batch["image_bound"][0], torch.zeros(0, 2, dtype=torch.long)]
    fused = model.get_vllm_embedding(**mixed)
    assert torch.equal(fused[1], model.get_input_embeddings()(batch["input_ids"])[1])
    text_only = model(input_ids=batch["input_ids"])
    assert text_only.logits.shape == (2, 20, model.config.vocab_size)


def test_bounds_that_do_not_span_query_num_are_rejected(model, batch):
    broken = dict(batch, image_bound=[torch.tensor([[2, 5], [9, 13]]), torch.tensor([[5, 9]])])
    with pytest.raises(ValueError, match="query_num"):
        model.get_vllm_embedding(**broken)
    missing = dict(batch, image_bound=[torch.tensor([[2, 6]]), torch.tensor([[5, 9]])])
    with pytest.raises(ValueError, match="sample 0: 1 image bounds but 2 image pieces"):
        model.get_vllm_embedding(**missing)


# -- loss ---------------------------------------------------------------------------------------


def test_loss_uses_pre_shifted_labels_without_a_second_shift(model, batch):
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 14:17] = batch["input_ids"][
        :, 15:18
    ]  # what preprocessing writes: labels[t] = ids[t+1]
    output = model(**batch, labels=labels)
    logits = output.logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, 14:17].reshape(-1, logits.shape[-1]), labels[:, 14:17].reshape(-1)
    )
    torch.testing.assert_close(output.loss, expected)


def test_loss_normalised_by_items_in_accumulated_batch(model, batch):
    labels = batch["input_ids"].clone()
    mean_loss = model(**batch, labels=labels).loss
    summed = model(**batch, labels=labels, num_items_in_batch=torch.tensor(labels.numel() * 2)).loss
    torch.testing.assert_close(summed * 2, mean_loss)


def test_gradient_checkpointing_gives_the_same_loss_and_grads(batch):
    reference, checkpointed = tiny_model(), tiny_model()
    checkpointed.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False}
    )
    for model in (reference, checkpointed):
        model.train()
        model(**batch, labels=batch["input_ids"]).loss.backward()
    for (name, a), (_, b) in zip(
        reference.named_parameters(), checkpointed.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


# -- generation ---------------------------------------------------------------------------------


def prompt_batch(lengths=(11, 8), seed=0):
    """Left-padded prompts, each with one 2×2-patch image right after its first token."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    input_ids = torch.full((len(lengths), width), PAD)
    attention_mask = torch.zeros(len(lengths), width, dtype=torch.long)
    bounds = []
    for row, length in enumerate(lengths):
        input_ids[row, width - length :] = torch.randint(5, 96, (length,), generator=generator)
        attention_mask[row, width - length :] = 1
        start = width - length + 1
        bounds.append(torch.tensor([[start, start + QUERY_NUM]]))
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=[[strip(2, 2, seed + row)] for row in range(len(lengths))],
        tgt_sizes=[torch.tensor([[2, 2]]) for _ in lengths],
        image_bound=bounds,
    )


def manual_greedy(model, prompt, steps):
    """Argmax loop recomputing the whole sequence each step (no KV cache)."""
    embeddings = model.get_vllm_embedding(
        prompt["input_ids"], prompt["pixel_values"], prompt["tgt_sizes"], prompt["image_bound"]
    )
    tokens = []
    for _ in range(steps):
        logits = model.llm(inputs_embeds=embeddings, use_cache=False).logits
        token = logits[:, -1].argmax(-1)
        tokens.append(token)
        if token.item() == EOS:
            break
        embeddings = torch.cat([embeddings, model.get_input_embeddings()(token)[:, None]], dim=1)
    return torch.stack(tokens, dim=1)


def test_greedy_generate_equals_manual_argmax_loop_without_cache(model):
    prompt = prompt_batch(lengths=(11,))
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        expected = manual_greedy(model, prompt, 8)
    assert torch.equal(generated, expected)


def row_alone(batch: dict, row: int) -> dict:
    """Row ``row`` of a left-padded ``prompt_batch`` without its padding."""
    length = int(batch["attention_mask"][row].sum())
    pads = batch["input_ids"].shape[1] - length
    return {
        "input_ids": batch["input_ids"][row : row + 1, pads:],
        "attention_mask": batch["attention_mask"][row : row + 1, pads:],
        "pixel_values": batch["pixel_values"][row : row + 1],
        "tgt_sizes": batch["tgt_sizes"][row : row + 1],
        "image_bound": [batch["image_bound"][row] - pads],
    }


# Row 1 carries 10 pads, more than the 8 new tokens: HF would take them for prompt and leave all
# of that row's tokens unpenalised.
PADDED_LENGTHS, NEW_TOKENS = (16, 6), 8


@pytest.mark.parametrize(
    "strategy",
    [
        dict(do_sample=False),
        dict(do_sample=False, repetition_penalty=1.2),
        dict(num_beams=3, do_sample=False, repetition_penalty=1.2),
    ],
    ids=["greedy", "greedy-penalty", "beam3-penalty"],
)
def test_padded_batch_generates_like_one_by_one(model, strategy):
    batch = prompt_batch(lengths=PADDED_LENGTHS)
    together = model.generate(**batch, max_new_tokens=NEW_TOKENS, **strategy)
    for row in range(len(PADDED_LENGTHS)):
        one = model.generate(**row_alone(batch, row), max_new_tokens=NEW_TOKENS, **strategy)
        assert torch.equal(together[row, : one.shape[1]], one[0]), row


def test_a_row_with_more_pads_than_new_tokens_is_penalised(model):
    batch = prompt_batch(lengths=PADDED_LENGTHS)
    beam = dict(num_beams=3, do_sample=False, max_new_tokens=NEW_TOKENS)
    penalised = model.generate(**batch, **beam, repetition_penalty=1.2)
    plain = model.generate(**batch, **beam, repetition_penalty=1.0)
    assert not torch.equal(penalised[1], plain[1])


def test_a_row_alone_decodes_as_hf_generate_does(model):
    """For an unpadded row HF's own penalty (prompt_ignore_length 0) is what ``generate`` applies."""
    alone = row_alone(prompt_batch(lengths=PADDED_LENGTHS), 1)
    strategy = dict(num_beams=3, do_sample=False, repetition_penalty=1.2, max_new_tokens=NEW_TOKENS)
    with torch.no_grad():
        embeddings = model.get_vllm_embedding(
            alone["input_ids"], alone["pixel_values"], alone["tgt_sizes"], alone["image_bound"]
        )
        hf = model.llm.generate(
            inputs_embeds=embeddings,
            attention_mask=alone["attention_mask"],
            pad_token_id=PAD,
            eos_token_id=[EOS],
            **strategy,
        )
    assert torch.equal(model.generate(**alone, **strategy), hf)


class ScoreRecorder(LogitsProcessor):
    """Records the scores it is handed (after HF's penalty, before the sampling warpers, which
    act row by row); with ``forced`` [B, T] it makes step t pick forced[:, t]."""

    def __init__(self, forced: torch.Tensor | None = None):
        self.scores: list[torch.Tensor] = []
        self.forced = forced

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores.clone())
        if self.forced is None:
            return scores
        step = len(self.scores) - 1
        only = torch.full_like(scores, float("-inf"))
        return only.scatter(1, self.forced[:, step : step + 1], 0.0)


def test_sampling_scores_of_a_padded_row_equal_the_row_alone(model):
    sampling = dict(do_sample=True, top_p=0.8, top_k=100, temperature=0.7, repetition_penalty=1.05)
    batch = prompt_batch(lengths=PADDED_LENGTHS)
    together = ScoreRecorder()
    torch.manual_seed(0)
    tokens = model.generate(
        **batch, max_new_tokens=NEW_TOKENS, logits_processor=[together], **sampling
    )
    for row in range(len(PADDED_LENGTHS)):
        steps = next((t + 1 for t, token in enumerate(tokens[row].tolist()) if token == EOS), None)
        steps = steps or tokens.shape[1]
        alone = ScoreRecorder(forced=tokens[row : row + 1, :steps])
        replay = model.generate(
            **row_alone(batch, row), max_new_tokens=steps, logits_processor=[alone], **sampling
        )
        assert torch.equal(replay[0], tokens[row, :steps]), row
        for step in range(steps):
            torch.testing.assert_close(
                together.scores[step][row], alone.scores[step][0], atol=1e-5, rtol=1e-5
            )


def eos_loving_model():
    """A model whose LM head prefers EOS by a wide margin: every decoder stops after one token."""
    model = tiny_model()
    with torch.no_grad():
        model.llm.lm_head.weight.zero_()
        model.llm.model.norm.weight.fill_(1.0)
        model.llm.lm_head.weight[EOS] = 50.0 * torch.sign(torch.randn(model.config.hidden_size))
    return model


@pytest.mark.parametrize(
    "strategy",
    [
        dict(do_sample=False),
        dict(num_beams=3, do_sample=False, repetition_penalty=1.2),
        dict(do_sample=True, top_p=0.8, top_k=100, temperature=0.7, repetition_penalty=1.05),
    ],
    ids=["greedy", "beam3", "sampling"],
)
def test_every_strategy_runs_and_returns_only_new_tokens(model, strategy):
    prompt = prompt_batch()
    torch.manual_seed(0)
    first = model.generate(**prompt, max_new_tokens=5, **strategy)
    torch.manual_seed(0)
    second = model.generate(**prompt, max_new_tokens=5, **strategy)
    assert first.shape[0] == 2 and 1 <= first.shape[1] <= 5
    assert torch.equal(first, second)  # seeded → reproducible, sampling included


def test_generation_stops_at_the_end_token():
    model = eos_loving_model()
    for strategy in (dict(do_sample=False), dict(num_beams=3), dict(do_sample=True, top_k=100)):
        torch.manual_seed(0)
        output = model.generate(**prompt_batch(), max_new_tokens=10, **strategy)
        assert output.shape[1] < 10, strategy  # every row finished long before the budget
        for row in output.tolist():
            assert EOS in row, strategy
            assert set(row[row.index(EOS) + 1 :]) <= {PAD, EOS}, strategy  # nothing after the end


# -- persistence --------------------------------------------------------------------------------


def test_save_and_load_round_trip_gives_identical_logits(model, batch, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MLLMModel)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "mllm"
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


def test_exercise_checkpoint_names_and_shapes():
    manifest = json.loads(MANIFEST.read_text())
    settings = manifest["config"]
    config = MLLMConfig(
        **settings["llm"], vision_config=settings["vision_config"], query_num=settings["query_num"]
    )
    with torch.device("meta"):
        model = MLLMModel(config)
    state = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    assert len(state) == 789
    assert state == manifest["tensors"]
    assert (
        sum(t.numel() for t in model.state_dict().values())
        == manifest["total_params"]
        == 8_099_175_152
    )


# -- vision tower -------------------------------------------------------------------------------


def test_bucketed_positions_span_the_grid_for_any_aspect_ratio():
    ids = bucketed_position_ids(
        torch.tensor([[2, 2], [1, 4]]), num_patches_per_side=4, max_patches=4
    )
    assert ids.tolist() == [[0, 2, 8, 10], [0, 1, 2, 3]]


def minicpm_v_position_ids(tgt_sizes, num_patches_per_side, max_patches):
    """MiniCPM-V 2.6's SiglipVisionEmbeddings position ids (modeling_navit_siglip.py), transcribed."""
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    position_ids = torch.full(size=(len(tgt_sizes), max_patches), fill_value=0)
    for batch_idx in range(len(tgt_sizes)):
        nb_patches_h, nb_patches_w = tgt_sizes[batch_idx][0], tgt_sizes[batch_idx][1]
        fractional_coords_h = torch.arange(0, 1 - 1e-6, 1 / nb_patches_h)
        fractional_coords_w = torch.arange(0, 1 - 1e-6, 1 / nb_patches_w)
        bucket_coords_h = torch.bucketize(fractional_coords_h, boundaries, right=True)
        bucket_coords_w = torch.bucketize(fractional_coords_w, boundaries, right=True)
        pos_ids = (bucket_coords_h[:, None] * num_patches_per_side + bucket_coords_w).flatten()
        position_ids[batch_idx][: len(pos_ids)] = pos_ids
    return position_ids


def sides_off_the_exact_buckets(grid: int, sides=range(1, 201)) -> list[int]:
    """Sides whose MiniCPM-V buckets differ from floor(i·grid/side)."""
    boundaries = torch.arange(1 / grid, 1.0, 1 / grid)
    return [
        side
        for side in sides
        if fractional_buckets(torch.tensor(side), boundaries).tolist()
        != [i * grid // side for i in range(side)]
    ]


def test_bucketed_positions_are_minicpm_v_s():
    sizes = torch.tensor([[h, w] for h in (1, 7, 25, 32, 49, 50, 55, 58, 70) for w in (3, 25, 58)])
    for grid in (8, 70):
        ids = bucketed_position_ids(sizes, grid, max_patches=58 * 70)
        assert torch.equal(ids, minicpm_v_position_ids(sizes, grid, 58 * 70)), grid


def test_patch_buckets_differ_from_exact_fractions_on_these_sides():
    # The exercise's 70-patch grid: 5 sides up to 70, 22 more up to 200.
    assert sides_off_the_exact_buckets(70) == [
        25, 49, 50, 55, 58, 77, 82, 86, 94, 98, 100, 110, 115, 135,
        147, 154, 155, 164, 165, 166, 172, 175, 188, 189, 194, 196, 200,
    ]  # fmt: skip
    # The demo's (8-patch grid, 8-patch images) and the tests' (4 and 8) sides are unaffected.
    for grid in (4, 8):
        assert sides_off_the_exact_buckets(grid, range(1, 58)) == [], grid


def test_a_piece_encodes_the_same_alone_and_padded_next_to_a_longer_one(model):
    small = multimodal_batch()
    alone = model.get_vision_features([[small["pixel_values"][1][0]]], [torch.tensor([[3, 2]])])[0]
    together = model.get_vision_features(
        [[small["pixel_values"][0][0], small["pixel_values"][1][0]]],
        [torch.tensor([[4, 4], [3, 2]])],
    )[0][1:]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_training_loss_with_sparse_lm_head_equals_full_logits_loss(batch):
    model = tiny_model()
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, 14:18] = batch["input_ids"][0, 15:19]
    labels[1, 10:12] = batch["input_ids"][1, 11:13]
    full = model(**batch, labels=labels)  # eval mode: full logits
    model.train()
    sparse = model(**batch, labels=labels)
    assert sparse.logits is None
    torch.testing.assert_close(sparse.loss, full.loss)
    sparse.loss.backward()
    assert model.llm.lm_head.weight.grad.abs().sum() > 0
