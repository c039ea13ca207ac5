"""Configuration of the MLLM: a Qwen2-style decoder at the top level, a SigLIP-style vision tower
under ``vision_config`` and the resampler that bridges them.

The LLM fields sit at the top level (as in MiniCPM-V 2.6 and the exercise's ``MLLMConfig``, which
subclass ``Qwen2Config``), so the exercise checkpoint's ``config.json`` loads unchanged.
"""

from __future__ import annotations

import math

from transformers import PreTrainedConfig


class MLLMVisionConfig(PreTrainedConfig):
    """SigLIP NaViT vision tower (``vpm``)."""

    model_type = "mllm_vision"
    base_config_key = "vision_config"

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    num_channels: int = 3
    # The position grid has (image_size // patch_size)**2 buckets; any image size maps onto it.
    image_size: int = 980
    patch_size: int = 14
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0


class MLLMConfig(PreTrainedConfig):
    """Whole-model configuration. Defaults are the exercise checkpoint's (MiniCPM-V 2.6 sizes)."""

    model_type = "mllm"
    sub_configs_defaults = {"vision_config": MLLMVisionConfig}
    keys_to_ignore_at_inference = ["cache"]

    # Decoder LLM (Qwen2).
    vocab_size: int = 151666
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    # Vision tower and resampler.
    vision_config: dict | PreTrainedConfig | None = None
    query_num: int = 64
    resampler_num_heads: int | None = None
    # None: every query attends to the whole piece (MiniCPM-V). A width σ (in grid cells) ties
    # query j to cell j of a √Q×√Q grid over the piece with a Gaussian attention prior, so each
    # LLM image token keeps its region's features; see Resampler.locality_bias.
    resampler_locality: float | None = None
    drop_vision_last_layer: bool = False
    vision_batch_size: int = 16

    # Image preprocessing, stored with the weights so inference reproduces training.
    image_size: int = 448
    patch_size: int = 14
    slice_mode: bool = True
    max_slice_nums: int = 9

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.resampler_num_heads is None:
            self.resampler_num_heads = max(1, self.hidden_size // 128)
        super().__post_init__(**kwargs)
        if self.resampler_locality is not None:
            if self.resampler_locality <= 0:
                raise ValueError(f"resampler_locality must be > 0, not {self.resampler_locality}")
            if math.isqrt(self.query_num) ** 2 != self.query_num:
                raise ValueError(
                    f"resampler_locality needs a square query_num (a grid of queries), not {self.query_num}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads
