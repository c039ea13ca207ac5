"""DeepSpeed ZeRO configs ship without a scheduler block, so the Trainer's configured schedule is
the one that runs — the exercise's zero2 json silently replaced cosine by a constant LR."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config" / "deepspeed").glob("*.json"))

TRAIN_SCRIPT = """
import json, sys, torch
from mllm.train.settings import TrainSettings
from mllm.train.trainer import training_arguments
from mllm.data.collators import pad_rows, sft_collate
from transformers import Trainer
from functools import partial
from tests.conftest import tiny_model

class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(5, 96, (12,), generator=g)
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(12),
                "image_bound": torch.zeros(0, 2, dtype=torch.long), "pixel_values": [], "tgt_sizes": torch.zeros(0, 2, dtype=torch.long)}

deepspeed = sys.argv[1] or None
if deepspeed:
    from deepspeed import ops as deepspeed_ops
    # DeepSpeed's CPU collectives would first JIT-compile their shared-memory kernel (a minute of
    # CPU on a fresh machine); gloo's collectives reduce the same, and the schedule under test
    # does not depend on how. ZeRO-2's engine still wraps the Trainer's optimizer and scheduler.
    deepspeed_ops.__compatible_ops__["deepspeed_shm_comm"] = False
settings = TrainSettings(learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.0, max_steps=8,
                         per_device_batch_size=4, logging_steps=1, save_steps=0, deepspeed=deepspeed)
trainer = Trainer(model=tiny_model().train(), args=training_arguments(settings, sys.argv[2], evaluate=False),
                  train_dataset=Rows(), data_collator=partial(sft_collate, collate=partial(pad_rows, pad_token_id=0), max_length=64))
trainer.train()
print("LR=" + json.dumps([e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def learning_rates(tmp_path: Path, deepspeed: str) -> list[float]:
    env = dict(
        os.environ,
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, deepspeed, str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("LR="))
    return json.loads(line[3:])


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_configs_have_auto_values_and_no_scheduler_or_optimizer_block(config):
    settings = json.loads(config.read_text())
    assert "scheduler" not in settings  # it would override the Trainer's lr_scheduler_type
    assert "optimizer" not in settings  # the Trainer's AdamW (and its hyperparameters) is used
    assert settings["train_micro_batch_size_per_gpu"] == "auto"
    assert settings["gradient_accumulation_steps"] == "auto"


@pytest.mark.slow
def test_zero2_keeps_the_configured_cosine_schedule(tmp_path):
    plain = learning_rates(tmp_path / "plain", "")
    zero2 = learning_rates(tmp_path / "zero2", str(REPO / "config" / "deepspeed" / "zero2.json"))
    assert len(zero2) == len(plain) == 8
    assert zero2 == pytest.approx(plain, rel=1e-6)
    assert all(
        a > b for a, b in zip(zero2, zero2[1:], strict=False)
    )  # cosine decays, constant would not
