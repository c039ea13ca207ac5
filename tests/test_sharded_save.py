"""Sharded training saves whole models (mllm.train.sharded_save): ZeRO-3 and FSDP2 checks before
training, the gathered state dict written as one `from_pretrained` folder (LoRA merged).

What runs where (Accelerate decides): FSDP2 through the Trainer shards only on GPUs, and
DeepSpeed through the Trainer runs on CPU with one rank only (with two, Accelerate sees no
distributed CPU backend). So on CPU the tests run: ZeRO-3 training end to end on one rank (the
weights are partitioned even then, so the final save must gather them), and FSDP2's saving path
on two gloo ranks with `fully_shard` applied by hand, as Accelerate applies it on GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mllm.family.own import OwnFamily
from mllm.family.registry import load_model
from mllm.model.lora import LoraSettings, apply_lora
from mllm.train.sharded_save import check_sharding, unsharded_copy
from tests.conftest import tiny_model, write_tiny_checkpoint
from tests.test_deepspeed import free_port
from tests.test_sft import SETTINGS, write_sft_data

REPO = Path(__file__).resolve().parents[1]
ZERO3 = REPO / "config" / "deepspeed" / "zero3.json"
FSDP2 = REPO / "config" / "fsdp" / "fsdp2.json"
LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


def test_zero3_without_the_gather_on_save_is_refused_before_training(tmp_path):
    partial = tmp_path / "zero3.json"
    partial.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(ValueError, match="stage3_gather_16bit_weights_on_model_save: true"):
        check_sharding(str(partial), None)
    check_sharding(str(ZERO3), None)  # the shipped config gathers
    check_sharding(str(REPO / "config/deepspeed/zero2.json"), None)
    check_sharding(None, None)


def test_deepspeed_and_fsdp_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        check_sharding(str(ZERO3), str(FSDP2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_fsdp_on_cpu_ranks_is_refused_rather_than_silently_ddp():
    with pytest.raises(ValueError, match="needs GPUs"):
        check_sharding(None, str(FSDP2))


def test_fsdp2_config_is_a_full_state_dict_fsdp2_config():
    config = json.loads(FSDP2.read_text())
    assert config["version"] == 2 and config["state_dict_type"] == "FULL_STATE_DICT"
    assert config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"  # the model's _no_split_modules


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_an_unsharded_copy_of_a_gathered_state_dict_is_the_trained_model(lora):
    trained = tiny_model(seed=1)
    if lora is not None:
        trained = apply_lora(trained, lora, default_regex=OwnFamily.lora_target_regex)
        for name, parameter in trained.named_parameters():  # adapters that change the output
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.1)
    state = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    copy = unsharded_copy(trained, state, lora, lora_target_regex=OwnFamily.lora_target_regex)
    reference = trained.merge_and_unload() if lora is not None else trained
    assert set(copy.state_dict()) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(copy.state_dict()[name], tensor, msg=name)


def run_sft_process(tmp_path: Path, **settings) -> dict:
    """One SFT job in a single process (one rank: RANK/WORLD_SIZE set, as DeepSpeed wants)."""
    write_tiny_checkpoint(tmp_path / "base")
    train, test = write_sft_data(tmp_path / "data")
    spec = {
        "train_file": str(train),
        "eval_file": str(test),
        "image_folder": str(train.parent),
        "settings": {**SETTINGS, "max_steps": 4, "save_steps": 0, **settings},
        "checkpoint_dir": str(tmp_path / "checkpoints"),
    }
    paths = [f"{name}={tmp_path / name}" for name in ("model_dir", "state_path", "metrics_path")]
    env = dict(os.environ, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "mllm.train.sft", "train_sft", "--threads", "1"]
        + ["--spec", json.dumps(spec), f"start_model_dir={tmp_path / 'base'}", *paths],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((tmp_path / "metrics_path").read_text())


@pytest.mark.slow
def test_zero3_training_saves_the_whole_model_of_an_unsharded_run(tmp_path):
    plain = run_sft_process(tmp_path / "plain")
    zero3 = run_sft_process(tmp_path / "zero3", deepspeed=str(ZERO3))
    assert zero3["global_step"] == plain["global_step"] == 4
    assert zero3["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)
    # Under ZeRO-3 the module's own parameters are empty placeholders: only the gather writes
    # full tensors, and they are the unsharded run's weights.
    expected = load_model(tmp_path / "plain" / "model_dir").model.state_dict()
    written = load_model(tmp_path / "zero3" / "model_dir").model.state_dict()
    assert set(written) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(written[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


FSDP2_SAVE = """
import gc, os, sys, types, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from mllm.family.registry import load_model
from mllm.model.lora import LoraSettings, apply_lora
from mllm.train.sharded_save import is_fsdp2_sharded, save_whole_model

base, out, use_lora = sys.argv[1], sys.argv[2], sys.argv[3] == "lora"
dist.init_process_group("gloo")
loaded = load_model(base, device="cpu")
model = loaded.model.train()
lora = LoraSettings(r=4, alpha=8, dropout=0.0) if use_lora else None
if lora is not None:
    model = apply_lora(model, lora, default_regex=loaded.family.lora_target_regex)
    for name, parameter in model.named_parameters():
        if "lora_" in name:  # the same on both ranks and in the test: seeded by name
            torch.manual_seed(len(name))
            torch.nn.init.normal_(parameter, std=0.1)
# What Accelerate's TRANSFORMER_BASED_WRAP does: each _no_split_modules layer, then the root.
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
layers = [m for m in model.modules() if type(m).__name__ in ("LLMDecoderLayer", "VisionEncoderLayer")]
for layer in layers:
    fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
assert layers and is_fsdp2_sharded(model)
local = next(p for p in model.parameters()).to_local().numel()
trainer = types.SimpleNamespace(
    model=model,
    is_deepspeed_enabled=False,
    is_world_process_zero=lambda: dist.get_rank() == 0,
    accelerator=types.SimpleNamespace(wait_for_everyone=dist.barrier),
)
save_whole_model(trainer, model, loaded, out, lora)
print(f"rank {dist.get_rank()} local {local}", flush=True)
# Teardown in step. The mesh and FSDP2's state (reference cycles through the hooks) hold the gloo
# group, so destroy_process_group alone leaves it alive until interpreter finalization, where
# its worker threads can abort the process ("terminate called without an active exception",
# seen in CI after a good save; pytorch/pytorch#179291). So: drop and collect what holds
# the group, let no rank close its connections while the other may still use them, destroy it,
# and end without the finalization this test does not check.
del trainer, model, loaded, layers, mesh
gc.collect()
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp2_sharded_model_is_saved_whole_by_rank_0(tmp_path, lora):
    write_tiny_checkpoint(tmp_path / "base")
    script = tmp_path / "fsdp2_save.py"
    script.write_text(FSDP2_SAVE)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + [str(script), str(tmp_path / "base"), str(tmp_path / "saved")]
        + ["lora" if lora else "full"],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.count("local") == 2  # both ranks held shards
    written = load_model(tmp_path / "saved").model
    assert not any("lora" in name for name, _ in written.named_parameters())
    reference = load_model(tmp_path / "base").model
    if lora:  # the same adapters, merged on one process
        reference = apply_lora(reference, LORA, default_regex=OwnFamily.lora_target_regex)
        for name, parameter in reference.named_parameters():
            if "lora_" in name:
                torch.manual_seed(len(name))
                torch.nn.init.normal_(parameter, std=0.1)
        reference = reference.merge_and_unload()
    expected = reference.state_dict()
    assert set(written.state_dict()) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(written.state_dict()[name], tensor, msg=name)
    if lora:  # the merge changed weights: the adapters were not lost on the way
        base = load_model(tmp_path / "base").model.state_dict()
        assert any(not torch.equal(base[n], t) for n, t in written.state_dict().items())
