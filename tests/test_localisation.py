"""What lets the tiny demo model localise: the resampler's locality prior (each query pools its own
cell of the piece) and number tokens whose embeddings are ordered by value."""

from __future__ import annotations

import pytest
import torch

from mllm.model.config import MLLMConfig
from mllm.model.resampler import Resampler
from tests.conftest import tiny_config


def resampler(locality, num_queries=16, width=8):
    torch.manual_seed(0)
    module = Resampler(num_queries, width, num_heads=2, kv_dim=width, locality=locality)
    with torch.no_grad():
        module.query.normal_()
        module.proj.copy_(torch.eye(width))
    return module.eval()


def test_bias_peaks_in_each_querys_own_cell_for_any_piece_shape():
    module = resampler(0.5)
    sizes = torch.tensor([[8, 8], [4, 6]])
    bias = module.locality_bias(sizes, max_patches=64)  # [2, 16, 64]
    assert bias.shape == (2, 16, 64)
    for query in range(16):
        row, col = divmod(int(bias[0, query].argmax()), 8)
        assert (row // 2, col // 2) == divmod(query, 4)  # an 8×8 piece: 2×2 patches per cell
    assert torch.all(bias[1, :, 24:] == 0)  # padding columns are left to the mask
    assert torch.all(bias <= 0) and bias[0].max(dim=1).values.max() > -0.5


def test_sharp_prior_makes_each_token_its_cells_average():
    module = resampler(0.05)
    features = torch.randn(1, 64, 8)
    # Attention that ignores content (zero keys and queries) leaves only the prior.
    with torch.no_grad():
        module.attn.in_proj_weight[:16].zero_()
        module.attn.in_proj_bias[:16].zero_()
    out = module.attn  # the value path: compare against pooling the values by hand
    values = torch.nn.functional.linear(
        module.ln_kv(features), module.attn.in_proj_weight[16:], module.attn.in_proj_bias[16:]
    )  # [1, 64, 8]
    cells = values.view(1, 4, 2, 4, 2, 8).mean((2, 4)).reshape(1, 16, 8)
    expected = module.ln_post(out.out_proj(cells)) @ module.proj
    actual = module(features, torch.tensor([[8, 8]]), torch.ones(1, 64, dtype=torch.bool))
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_a_pieces_tokens():
    module = resampler(0.5)
    small, large = torch.randn(1, 24, 8), torch.randn(1, 64, 8)
    alone = module(small, torch.tensor([[4, 6]]), torch.ones(1, 24, dtype=torch.bool))
    padded = torch.cat([torch.nn.functional.pad(small, (0, 0, 0, 40)), large])
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[0, :24] = True
    mask[1] = True
    batched = module(padded, torch.tensor([[4, 6], [8, 8]]), mask)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_locality_is_off_by_default_and_validated():
    assert MLLMConfig().resampler_locality is None
    with pytest.raises(ValueError, match="square query_num"):
        tiny_config(query_num=6, resampler_locality=0.5)
    with pytest.raises(ValueError, match="must be > 0"):
        tiny_config(query_num=4, resampler_locality=0.0)


def test_ordinal_number_rows_are_smooth_in_the_value_and_touch_nothing_else():
    from mllm.demo.base_model import init_ordinal_number_rows
    from mllm.demo.tokenizer import NUMBER_TOKENS, build_tokenizer
    from tests.conftest import tiny_model

    tokenizer = build_tokenizer(["a cup on a table."] * 10, vocab_size=1300)
    model = tiny_model(vocab_size=len(tokenizer))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    init_ordinal_number_rows(model, tokenizer, seed=0)
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(NUMBER_TOKENS)))
    for weight in (model.llm.get_input_embeddings().weight, model.llm.lm_head.weight):
        rows = torch.nn.functional.normalize(weight[ids].detach(), dim=1)  # [1000, D]
        similarity = rows @ rows[400]
        assert similarity[401] > similarity[420] > similarity[700]
    others = torch.ones(len(tokenizer), dtype=torch.bool)
    others[ids] = False
    for name, parameter in model.named_parameters():
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            assert torch.equal(parameter[others], before[name][others])
        else:
            assert torch.equal(parameter, before[name])
