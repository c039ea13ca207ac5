"""The ``mllm`` command (mllm.cli) on a tiny random own-family model built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from PIL import Image

from mllm import cli
from mllm.family import tiny
from mllm.family.registry import load_model
from tests.conftest import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (200, 200, 200)).save(path)
    return path


def test_the_console_script_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mllm"] == "mllm.cli:main"


@pytest.mark.parametrize("command", [["caption"], ["ask", "Is there a dog?"]])
def test_caption_and_ask_print_the_model_answer_and_repeat(model_dir, image_path, capsys, command):
    argv = ["--model", str(model_dir), "--max-new-tokens", "6", command[0], str(image_path)]
    argv += command[1:]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert first.strip()  # a random model still writes tokens
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == first  # greedy: the same answer


def test_ground_without_a_box_in_the_answer_fails_and_writes_nothing(
    model_dir, image_path, tmp_path, capsys
):
    out = tmp_path / "boxed.png"
    argv = ["--model", str(model_dir), "--max-new-tokens", "4"]
    argv += ["ground", str(image_path), "the red car", "--out", str(out)]
    assert cli.main(argv) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["box"] is None and not out.exists()


def test_ground_reads_the_box_in_the_family_convention_and_draws_it(
    model_dir, image_path, tmp_path, capsys, monkeypatch
):
    """The model's answer is stubbed (a random model writes no box); the question, the family's
    parse and the drawing are the real ones."""
    asked = []

    def answer(loaded, questions, images, settings, *, desc):
        asked.extend(questions)
        return ["<ref>the red car</ref><box>(0,0),(499,999)</box>"]

    monkeypatch.setattr(cli, "answer_questions", answer)
    out = tmp_path / "boxed.png"
    argv = ["--model", str(model_dir), "ground", str(image_path), "the red car", "--out", str(out)]
    assert cli.main(argv) == 0
    assert asked == [cli.grounding_eval_question("the red car")]
    box = json.loads(capsys.readouterr().out)["box"]
    assert box == [0.0, 0.0, round(499 / 999 * 64, 1), 48.0]  # Qwen-VL's /999 grid, in pixels
    with Image.open(out) as boxed:
        assert boxed.size == (64, 48)
        assert boxed.getpixel((0, 20)) == cli.BOX_COLOUR  # the left edge
        assert boxed.getpixel((50, 20)) == (200, 200, 200)  # outside the box: untouched


HF_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "internvl")


@pytest.fixture(scope="module")
def hf_model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_hf")
    return {family: tiny.build(family, root / family) for family in HF_FAMILIES}


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_caption_and_ask_run_on_an_hf_family_checkpoint(hf_model_dirs, image_path, capsys, family):
    model = str(hf_model_dirs[family])
    for command in (["caption", str(image_path)], ["ask", str(image_path), "Is there a dog?"]):
        argv = ["--model", model, "--max-new-tokens", "6", *command]
        assert cli.main(argv) == 0
        first = capsys.readouterr().out
        assert cli.main(argv) == 0
        assert capsys.readouterr().out == first  # greedy: the same answer


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_ground_parses_an_hf_familys_own_box_text_back_to_pixels(
    hf_model_dirs, image_path, tmp_path, capsys, monkeypatch, family
):
    """The stubbed answer is the family's own encoding of a known box (``box_answer``); the CLI
    must read it back with the same family's convention, whatever that convention is."""
    loaded = load_model(hf_model_dirs[family])
    box = (8.0, 4.0, 40.0, 36.0)
    with Image.open(image_path) as image:
        text = loaded.family.box_answer(loaded, "the red car", box, image.convert("RGB"))
    monkeypatch.setattr(cli, "answer_questions", lambda *args, **kwargs: [text])
    out = tmp_path / "boxed.png"
    argv = ["--model", str(hf_model_dirs[family]), "ground", str(image_path), "the red car"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)["box"]
    # grid conventions (0-999 / 0-1000) round to about a pixel of a 64-pixel image
    assert printed == pytest.approx(box, abs=1.0)
    assert out.is_file()
