"""LoRA sits only on the LLM's q/k/v projections and its adapter round-trips exactly."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from mllm.family.own import OwnFamily
from mllm.model.lora import LoraSettings, apply_lora, lora_target_names
from tests.conftest import tiny_model

OWN_REGEX = OwnFamily.lora_target_regex


def test_own_family_regex_selects_llm_attention_projections_only():
    names = lora_target_names(tiny_model(), OWN_REGEX)
    assert len(names) == 2 * 3  # two layers × q/k/v
    assert all(name.startswith("llm.model.layers.") for name in names)
    assert not any(name.startswith("vpm.") for name in names)  # vision q/k/v share the names


def test_regex_that_matches_nothing_fails_loudly():
    with pytest.raises(ValueError, match="matches no module"):
        apply_lora(
            tiny_model(), LoraSettings(target_regex=r"nothing\.here"), default_regex=OWN_REGEX
        )


def test_target_regex_none_takes_the_family_regex_and_a_set_one_overrides_it():
    default = apply_lora(tiny_model(), LoraSettings(r=2), default_regex=OWN_REGEX)
    adapted = {name for name, module in default.named_modules() if hasattr(module, "lora_A")}
    assert len(adapted) == 2 * 3 and all(".llm." in name for name in adapted)
    only_q = LoraSettings(r=2, target_regex=r"llm\..*layers\.\d+\.self_attn\.q_proj")
    overridden = apply_lora(tiny_model(), only_q, default_regex=OWN_REGEX)
    adapted = {name for name, module in overridden.named_modules() if hasattr(module, "lora_A")}
    assert len(adapted) == 2 and all(name.endswith("q_proj") for name in adapted)


def trained_looking_adapter(settings: LoraSettings) -> PeftModel:
    """LoRA B starts at zero (a no-op); move it so that a round trip is meaningful."""
    peft_model = apply_lora(tiny_model(), settings, default_regex=OWN_REGEX)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    return peft_model


def test_adapter_round_trip_gives_identical_logits(batch, tmp_path):
    settings = LoraSettings(r=4, alpha=8, dropout=0.0, modules_to_save=("resampler",))
    peft_model = trained_looking_adapter(settings)
    peft_model.eval()
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in name for name in trainable)
    assert any("resampler" in name and "modules_to_save" in name for name in trainable)
    assert not any(".vpm." in name for name in trainable)
    peft_model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path).eval()
    saved, loaded = peft_model.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)  # bit-exact weights
    with torch.no_grad():
        expected = peft_model(**batch).logits
        assert not torch.equal(expected, tiny_model()(**batch).logits)
        # The copied resampler's tensors live at other addresses; CPU kernels may then sum in
        # another order, so logits agree to float32 rounding rather than bit for bit.
        torch.testing.assert_close(reloaded(**batch).logits, expected, atol=1e-6, rtol=0)


def test_adapter_without_saved_modules_round_trips_bit_for_bit(batch, tmp_path):
    peft_model = trained_looking_adapter(LoraSettings(r=4, alpha=8, dropout=0.0))
    peft_model.eval().save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(peft_model(**batch).logits, reloaded(**batch).logits)
