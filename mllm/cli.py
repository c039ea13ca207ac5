"""The ``mllm`` command: one image through any stage's model, by hand.

    mllm caption IMAGE
    mllm ask IMAGE "Is there a dog?"
    mllm ground IMAGE "the red car" --out boxed.png

``--model`` is any model folder (a stage's output, a downloaded checkpoint; default the base
model); its family comes from its ``config.json``. Answers are greedy unless ``--sample``. ``ground``
asks the grounding question the grounding stage trains and evaluates with, reads the box in the
family's convention and prints it in pixels; ``--out`` draws it on the image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from PIL import Image, ImageDraw

from mllm.data.grounding import grounding_eval_question
from mllm.data.images import load_image
from mllm.eval.decoding import DecodeSettings, answer_questions
from mllm.family.registry import load_model
from mllm.workflow.world import BASE_MODEL

CAPTION_QUESTION = "Describe this image in detail."  # one of the demo pre-training prompts
BOX_COLOUR = (255, 0, 0)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mllm", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BASE_MODEL, help=f"model folder (default {BASE_MODEL})")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--sample", action="store_true", help="sample (top-p 0.8) instead of greedy"
    )
    parser.add_argument("--seed", type=int, default=0)
    commands = parser.add_subparsers(dest="command", required=True)
    caption = commands.add_parser("caption", help="describe the image")
    caption.add_argument("image")
    ask = commands.add_parser("ask", help="answer a question about the image")
    ask.add_argument("image")
    ask.add_argument("question")
    ground = commands.add_parser("ground", help="box the region an expression refers to")
    ground.add_argument("image")
    ground.add_argument("expression")
    ground.add_argument("--out", help="write the image with the box drawn here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; prints the answer (``ground``: a JSON line with answer and pixel box).
    Exit status 1 when ``ground`` finds no box in the answer."""
    args = parser().parse_args(argv)
    image = load_image(args.image, source=args.image)
    question = {
        "caption": lambda: CAPTION_QUESTION,
        "ask": lambda: args.question,
        "ground": lambda: grounding_eval_question(args.expression),
    }[args.command]()
    generation = {"do_sample": args.sample, "max_new_tokens": args.max_new_tokens}
    if args.sample:
        generation["top_p"] = 0.8
    loaded = load_model(args.model)
    [answer] = answer_questions(
        loaded, [question], [image], DecodeSettings(generation, 1, args.seed), desc=args.command
    )
    if args.command != "ground":
        print(answer)
        return 0
    box = loaded.family.parse_box(loaded, answer, image)
    print(
        json.dumps({"answer": answer, "box": None if box is None else [round(v, 1) for v in box]})
    )
    if box is None:
        print("no box in the answer", file=sys.stderr)
        return 1
    if args.out:
        draw_box(image, box).save(args.out)
    return 0


def draw_box(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """A copy of ``image`` with ``box`` (pixels, x0 y0 x1 y1) outlined."""
    boxed = image.copy()
    width = max(1, round(min(image.size) / 100))
    ImageDraw.Draw(boxed).rectangle(list(box), outline=BOX_COLOUR, width=width)
    return boxed


if __name__ == "__main__":
    sys.exit(main())
