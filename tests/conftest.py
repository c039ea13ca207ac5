"""Shared fixtures: a random tiny MLLM and matching inputs (CPU, milliseconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mllm.demo.base_model import base_model_config
from mllm.demo.tokenizer import build_tokenizer
from mllm.model import MLLMConfig, MLLMModel
from mllm.model.io import save_model

VOCAB = 96
EOS = 3
PAD = 0
QUERY_NUM = 4
PATCH = 8


def tower(hidden: int, *, layers: int, heads: int, **rest) -> dict:
    """A tiny transformer's sizes (its MLP twice as wide as its hidden size), plus ``rest``."""
    return dict(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        **rest,
    )


def tiny_config(**overrides) -> MLLMConfig:
    settings = dict(
        vocab_size=VOCAB,
        **tower(64, layers=2, heads=4, num_key_value_heads=2),
        query_num=QUERY_NUM,
        pad_token_id=PAD,
        eos_token_id=[EOS],
        vision_config=tower(32, layers=2, heads=2, image_size=64, patch_size=PATCH),
    )
    settings.update(overrides)
    return MLLMConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> MLLMModel:
    torch.manual_seed(seed)
    return MLLMModel(tiny_config(**overrides)).eval()


def strip(height: int, width: int, seed: int) -> torch.Tensor:
    """A random image piece of height×width patches as a patch strip [3, p, h*w*p]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(3, PATCH, height * width * PATCH, generator=generator)


def multimodal_batch(seed: int = 0) -> dict:
    """Two samples: the first with two image pieces (4×4 and 2×3 patches), the second with one (3×2)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (2, 20), generator=generator)
    return dict(
        input_ids=input_ids,
        pixel_values=[[strip(4, 4, seed), strip(2, 3, seed + 1)], [strip(3, 2, seed + 2)]],
        tgt_sizes=[torch.tensor([[4, 4], [2, 3]]), torch.tensor([[3, 2]])],
        image_bound=[torch.tensor([[2, 6], [9, 13]]), torch.tensor([[5, 9]])],
    )


@pytest.fixture
def model() -> MLLMModel:
    return tiny_model()


@pytest.fixture
def batch() -> dict:
    return multimodal_batch()


def write_tiny_checkpoint(directory):
    """A random tiny MLLM with a demo tokenizer, saved like any stage's model directory."""
    tokenizer = build_tokenizer(
        ["a dog and a cup on a table.", "a person with a dog."] * 20, vocab_size=1300
    )
    config = base_model_config(
        tokenizer,
        dict(
            **tower(32, layers=1, heads=2, num_key_value_heads=1),
            query_num=4,
            vision=tower(32, layers=1, heads=2, patch_size=16, image_size=64),
        ),
        dict(patch_size=16, scale_resolution=64, slice_mode=False, max_slice_nums=1),
    )
    assert isinstance(config, MLLMConfig)
    torch.manual_seed(0)
    save_model(MLLMModel(config), tokenizer, directory)
    return directory


# What a workflow copy needs: the Snakefile and everything it reads (rules, adapters, library).
WORKFLOW_SOURCES = ("Snakefile", "rules", "workflow_scripts", "mllm", "config", "envs", "report")


def copy_workflow(destination: Path) -> Path:
    """A copy of the workflow's sources (no caches); returns its Snakefile. Tests that edit the
    library to watch what reruns edit this copy, never the repository."""
    repo = Path(__file__).resolve().parents[1]
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_SOURCES:
        source = repo / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / name)
    return destination / "Snakefile"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """The whole default DAG on the tiny config (tests/workflow/config.yaml), run once per session
    and shared: the workflow tests and the report's browser and native-report tests read it.
    It runs the copy of the workflow in ``<workdir>/workflow`` (its code inputs point there), so
    a test may edit that copy's library to see what reruns. Returns (working directory, config)."""
    repo = Path(__file__).resolve().parents[1]
    workdir = tmp_path_factory.mktemp("tiny-run")
    config = workdir / "config.yaml"
    shutil.copy(repo / "tests" / "workflow" / "config.yaml", config)
    snakefile = copy_workflow(workdir / "workflow")
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir)]
    command += ["--cores", "2", "report", "--configfile", str(config)]
    # The jobs (`python -m mllm...`) import the copy's library, not whichever tree the
    # environment's (editable) install points at.
    environment = {**os.environ, "PYTHONPATH": str(snakefile.parent)}
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=workdir, timeout=1800, env=environment
    )
    assert result.returncode == 0, f"tiny run failed:\n{result.stdout}\n{result.stderr}"
    return workdir, config
