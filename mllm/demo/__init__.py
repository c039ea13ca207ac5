"""The synthetic demo world and its tiny base model: COCO-category glyph images and every dataset
the workflow needs, written in the real datasets' formats (see :mod:`mllm.demo.world`), the
tokenizer trained on them, the vision warm-up and the base model's caption pre-training."""
