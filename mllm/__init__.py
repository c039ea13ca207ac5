"""mllm: the library behind mllm-workflow (model, data, training, evaluation, demo world, report)."""

__version__ = "0.1.0"
