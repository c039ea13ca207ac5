"""The MLLM architecture (one for every size) and its registration with transformers' Auto classes."""

from transformers import AutoConfig, AutoModel

from .config import MLLMConfig, MLLMVisionConfig
from .llm import LLMForCausalLM
from .mllm import MLLMModel

AutoConfig.register(MLLMConfig.model_type, MLLMConfig, exist_ok=True)
AutoConfig.register(MLLMVisionConfig.model_type, MLLMVisionConfig, exist_ok=True)
AutoModel.register(MLLMConfig, MLLMModel, exist_ok=True)

__all__ = ["LLMForCausalLM", "MLLMConfig", "MLLMModel", "MLLMVisionConfig"]
