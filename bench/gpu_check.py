"""Tokens/s, MFU and peak memory on a lent GPU: the own MLLM, HF's Qwen2 and Qwen2.5-VL-7B.

The one prepared script for a session that is lent a GPU (one command, ≤ 10 min). Run it on the
device machine from the repository root:

    PYTHONPATH=. python3 bench/gpu_check.py --out $OUT/GPU.md

and on this CPU, end to end in seconds with tiny float32 shapes (what the tests run):

    PYTHONPATH=. .venv/bin/python bench/gpu_check.py --smoke --out /tmp/GPU.md

Parts (``--parts``, default all three, in this order):

- ``own``: the project's ``MLLMModel`` at exercise size (MiniCPM-V 2.6: Qwen2-7B-class LLM,
  SigLIP-400M tower, 64 queries), random init, bf16, SDPA. Forward+backward of batch 4 × 1024
  tokens (one 448-px image = 64 query tokens per sample, loss on the text), and ``generate``
  (the decoding path's ``MLLMModel.generate``: fused image embeddings, in-place KV cache) of a
  fixed number of greedy new tokens at batch 1 and 32.
- ``hf_qwen2``: the same LLM shapes through HF's ``Qwen2ForCausalLM`` (text only, same token
  count), fwd+bwd and generate, so the own LLM has a reference (``own ÷ HF`` in the table).
- ``qwen2_5_vl``: ``Qwen2_5_VLForConditionalGeneration`` at the published 7B sizes, random
  init, bf16, SDPA: a LoRA SFT step (r 64 on the language model's q/k/v, the family's regex;
  fwd+bwd+AdamW on the adapters) and generate at batch 1 and 32.

Each measurement runs warm-up steps, then several timed steps between ``torch.cuda.synchronize``
calls; it records tokens/s, seconds per step, MFU and the peak memory allocated. MFU is model
FLOPs ÷ time ÷ the device's dense bf16 peak (``PEAK_TFLOPS`` by device name, or
``--peak-tflops``), counting 2·N FLOPs per token forward and 4·N backward (2·N where the weights
are frozen: LoRA), N being the matmul parameters a token passes through (embedding tables
excluded, the vision tower counted per image patch); attention's own FLOPs are left out, as is
usual. Generate tokens/s counts new tokens only, prefill included in the time.

Each measurement is wrapped: one that fails (OOM, a missing kernel) records its error and the
rest still run; ``--budget-s`` (default 480) skips what is left once exceeded. The table (+ the
same rows as JSON beside it) is rewritten after every measurement and progress lines are printed
with flush, so a run cut off at its limit still shows how far it got.

Expected GPU time on an H200: about 3–5 minutes of the command (imports and CUDA start ≈ 30 s;
per ~8B model ≈ 10–20 s to build it on the GPU, ≈ 5 s of fwd+bwd steps, ≈ 20–40 s of generate:
3 calls × 128 steps at ~25–35 ms per step for each batch size), plus the machine's start; run it
with ``timeout_s`` 600 so that one rerun still fits the session's 15 minutes. Peak memory
≈ 80–90 GB (bf16 weights 16 GB + gradients 16 GB + activations of 4 × 1024 tokens), each model
freed before the next part. The device's own ``python3`` is used (its torch and transformers
versions may differ from the project's venv; the table records them).
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers

from mllm.atomic import write_json, write_text

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by ``torch.cuda.get_device_name()`` prefix.
PEAK_TFLOPS = {
    "NVIDIA H200": 989.0,
    "NVIDIA H100": 989.0,
    "NVIDIA A100": 312.0,
    "NVIDIA L40S": 362.0,
}
PARTS = ("own", "hf_qwen2", "qwen2_5_vl")


@dataclass(frozen=True)
class Shapes:
    """Sizes of one run: the real ones on a GPU, tiny ones for ``--smoke``."""

    train_batch: int
    train_tokens: int  # per sample, image tokens included
    prompt_text_tokens: int  # text tokens of a generate prompt, besides the image's
    new_tokens: int
    generate_batches: tuple[int, ...]
    image_patches_side: int  # image side in patches (448 px / 14 = 32)
    warmup: int
    steps: int
    generate_steps: int
    own_overrides: dict = field(default_factory=dict)
    qwen2_5_vl_text: dict = field(default_factory=dict)
    qwen2_5_vl_vision: dict = field(default_factory=dict)


REAL = Shapes(
    train_batch=4,
    train_tokens=1024,
    prompt_text_tokens=64,
    new_tokens=128,
    generate_batches=(1, 32),
    image_patches_side=32,
    warmup=2,
    steps=5,
    generate_steps=2,
)
# Qwen2.5-VL-7B-Instruct's published config.json.
QWEN2_5_VL_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    bos_token_id=151643,
    eos_token_id=151645,
    pad_token_id=151643,
)
QWEN2_5_VL_7B_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    out_hidden_size=3584,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
    hidden_act="silu",
)
QWEN2_5_VL_7B_TOKENS = dict(
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652
)
SMOKE = Shapes(
    train_batch=2,
    train_tokens=48,
    prompt_text_tokens=8,
    new_tokens=4,
    generate_batches=(1, 2),
    image_patches_side=4,
    warmup=1,
    steps=2,
    generate_steps=1,
    own_overrides=dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        query_num=16,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        ),
    ),
    qwen2_5_vl_text=dict(
        QWEN2_5_VL_7B_TEXT,
        vocab_size=640,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 2, 2]},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    qwen2_5_vl_vision=dict(
        QWEN2_5_VL_7B_VISION,
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        window_size=56,
        fullatt_block_indexes=[1],
    ),
)
SMOKE_QWEN2_5_VL_TOKENS = dict(image_token_id=600, video_token_id=601, vision_start_token_id=602)


@dataclass
class Row:
    """One measurement of the table; ``error`` set (and numbers None) when it failed or was skipped."""

    part: str
    measurement: str
    shape: str
    tokens_per_s: float | None = None
    seconds_per_step: float | None = None
    mfu: float | None = None
    peak_memory_gb: float | None = None
    error: str | None = None


class Run:
    """The rows measured so far, the clock against ``--budget-s`` and the output files."""

    def __init__(self, args: argparse.Namespace, shapes: Shapes, device: torch.device):
        self.args, self.shapes, self.device = args, shapes, device
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.started = time.monotonic()
        self.rows: list[Row] = []
        self.peak_tflops = args.peak_tflops or peak_tflops(device)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.budget_s

    def record(self, row: Row) -> None:
        self.rows.append(row)
        numbers = (
            f"{row.tokens_per_s:.1f} tok/s, {row.seconds_per_step:.4f} s/step, MFU {fmt(row.mfu, '.3g')}, "
            f"peak {row.peak_memory_gb:.2f} GB"
            if row.error is None
            else f"ERROR {row.error}"
        )
        progress(f"{row.part} {row.measurement} [{row.shape}]: {numbers}")
        self.write()

    def mfu(self, flops_per_step: float, seconds: float) -> float | None:
        if not self.peak_tflops:
            return None
        return flops_per_step / seconds / (self.peak_tflops * 1e12)

    def write(self) -> None:
        out = Path(self.args.out)
        facts = environment(self)
        write_text(out, markdown(facts, self.rows))
        write_json(out.with_suffix(".json"), {**facts, "rows": [asdict(r) for r in self.rows]})


def progress(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for prefix, peak in PEAK_TFLOPS.items() if name.startswith(prefix)), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(run: Run) -> dict:
    return {
        "device": device_name(run.device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "dtype": str(run.dtype).removeprefix("torch."),
        "attention": "sdpa",
        "peak_tflops": run.peak_tflops,
        "shapes": {k: v for k, v in asdict(run.shapes).items() if not isinstance(v, dict)},
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "elapsed_s": round(run.elapsed(), 1),
    }


def markdown(facts: dict, rows: list[Row]) -> str:
    lines = [
        "# GPU check (bench/gpu_check.py)",
        "",
        *(f"- {key}: `{value}`" for key, value in facts.items()),
        "",
        "| part | measurement | shape | tokens/s | s/step | MFU | peak GB | error |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.part} | {row.measurement} | {row.shape} | {fmt(row.tokens_per_s, '.1f')} | "
            f"{fmt(row.seconds_per_step, '.4f')} | {fmt(row.mfu, '.3g')} | "
            f"{fmt(row.peak_memory_gb, '.2f')} | {(row.error or '').replace('|', '/')} |"
        )
    lines += ["", *ratio_lines(rows)]
    return "\n".join(lines) + "\n"


def ratio_lines(rows: list[Row]) -> list[str]:
    """Own ÷ HF Qwen2 tokens/s for each measurement both parts completed."""
    speeds = {(r.part, r.measurement): r.tokens_per_s for r in rows if r.error is None}
    lines = []
    for (part, measurement), own in speeds.items():
        reference = speeds.get(("hf_qwen2", measurement))
        if part == "own" and reference:
            lines.append(f"- own ÷ HF Qwen2, {measurement}: {own / reference:.2f}")
    return lines


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset; on CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(run: Run, step: Callable[[], None], steps: int, warmup: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    synchronize(run.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(run.device)
    return (time.perf_counter() - start) / steps


def measure(
    run: Run,
    part: str,
    measurement: str,
    shape: str,
    step: Callable[[], None],
    *,
    tokens: int,
    flops: float,
    generate: bool = False,
) -> None:
    """Time ``step`` (``tokens`` per call, ``flops`` model FLOPs per call) and record a row; an
    exception becomes the row's error, and the budget check skips the measurement."""
    if run.over_budget():
        run.record(
            Row(part, measurement, shape, error=f"skipped: budget {run.args.budget_s}s spent")
        )
        return
    progress(f"{part} {measurement} [{shape}] ...")
    shapes = run.shapes
    steps, warmup = (shapes.generate_steps, 1) if generate else (shapes.steps, shapes.warmup)
    try:
        reset_peak_memory(run.device)
        seconds = timed(run, step, steps, warmup)
        row = Row(
            part,
            measurement,
            shape,
            tokens_per_s=tokens / seconds,
            seconds_per_step=seconds,
            mfu=run.mfu(flops, seconds),
            peak_memory_gb=peak_memory_gb(run.device),
        )
    except Exception as error:  # noqa: BLE001 - OOM or a missing kernel must not stop the run
        traceback.print_exc()
        row = Row(part, measurement, shape, error=f"{type(error).__name__}: {error}"[:300])
    free_memory(run.device)
    run.record(row)


@contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_on_device(run: Run, factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Create the model straight on the device in the run's dtype: an 8B model's init on the GPU
    takes seconds, on CPU minutes (and float32 first would double the peak)."""
    start = time.perf_counter()
    with torch.device(run.device), default_dtype(run.dtype):
        model = factory()
    model.to(device=run.device, dtype=run.dtype)
    synchronize(run.device)
    parameters = sum(p.numel() for p in model.parameters())
    progress(
        f"built {type(model).__name__}: {parameters / 1e6:,.1f} M parameters in {time.perf_counter() - start:.1f} s"
    )
    return model


def matmul_parameters(module: torch.nn.Module) -> int:
    """Parameters a token multiplies through: all but embedding tables."""
    embeddings = {
        id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    return sum(p.numel() for p in module.parameters() if id(p) not in embeddings)


def train_flops(
    llm_params: int, tokens: int, vision_params: int = 0, patches: int = 0, *, frozen: bool = False
) -> float:
    """Forward 2·N per token plus backward 4·N (2·N for frozen weights: input gradients only)."""
    per_param = 4 if frozen else 6
    return per_param * (llm_params * tokens + vision_params * patches)


def generate_flops(
    llm_params: int, new_tokens: int, prompt_tokens: int, vision_params: int, patches: int
) -> float:
    return 2 * (llm_params * (new_tokens + prompt_tokens) + vision_params * patches)


# -- part 1: the own MLLM ------------------------------------------------------------------------


def own_config(shapes: Shapes):
    from mllm.model.config import MLLMConfig, MLLMVisionConfig

    overrides = dict(shapes.own_overrides)
    vision = MLLMVisionConfig(**overrides.pop("vision_config", {}))
    config = MLLMConfig(vision_config=vision, **overrides)
    config._attn_implementation = "sdpa"
    config.vision_config._attn_implementation = "sdpa"
    return config


def own_inputs(config, batch: int, length: int, side: int, device: torch.device, dtype) -> dict:
    """Random token ids with one image piece per sample whose ``query_num`` tokens start at 4."""
    patch = config.vision_config.patch_size
    query_num = config.query_num
    input_ids = torch.randint(10, config.vocab_size, (batch, length), device=device)
    labels = input_ids.clone()
    labels[:, : 4 + query_num] = -100  # the prompt and the image carry no loss
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        labels=labels,
        pixel_values=[
            [torch.randn(3, patch, side * side * patch, device=device, dtype=dtype)]
            for _ in range(batch)
        ],
        tgt_sizes=[torch.tensor([[side, side]], device=device) for _ in range(batch)],
        image_bound=[torch.tensor([[4, 4 + query_num]], device=device) for _ in range(batch)],
    )


def part_own(run: Run) -> None:
    from mllm.model.mllm import MLLMModel

    shapes = run.shapes
    config = own_config(shapes)
    torch.manual_seed(0)
    model = build_on_device(run, lambda: MLLMModel(config))
    llm_params = matmul_parameters(model.llm) + matmul_parameters(model.resampler)
    vision_params = matmul_parameters(model.vpm)
    patches_per_image = shapes.image_patches_side**2
    batch, length = shapes.train_batch, shapes.train_tokens
    inputs = own_inputs(config, batch, length, shapes.image_patches_side, run.device, run.dtype)

    def train_step() -> None:
        model(**{k: v for k, v in inputs.items() if k != "attention_mask"}).loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    measure(
        run,
        "own",
        "fwd+bwd",
        f"{batch}x{length} ({config.query_num} image tokens)",
        train_step,
        tokens=batch * length,
        flops=train_flops(llm_params, batch * length, vision_params, batch * patches_per_image),
    )
    model.eval()
    prompt = 4 + config.query_num + shapes.prompt_text_tokens
    for generate_batch in shapes.generate_batches:
        prompt_inputs = own_inputs(
            config, generate_batch, prompt, shapes.image_patches_side, run.device, run.dtype
        )
        prompt_inputs.pop("labels")

        generate_step = greedy_generate_step(
            model, prompt_inputs, shapes.new_tokens, prompt_in_output=False
        )
        measure(
            run,
            "own",
            f"generate b{generate_batch}",
            f"{generate_batch}x({prompt}+{shapes.new_tokens})",
            generate_step,
            tokens=generate_batch * shapes.new_tokens,
            flops=generate_batch
            * generate_flops(
                llm_params, shapes.new_tokens, prompt, vision_params, patches_per_image
            ),
            generate=True,
        )


def check_new_tokens(produced: int, wanted: int) -> None:
    if produced != wanted:
        raise RuntimeError(f"generate stopped after {produced} of {wanted} new tokens")


# -- part 2: HF Qwen2 at the own LLM's shapes --------------------------------------------------


def part_hf_qwen2(run: Run) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shapes = run.shapes
    own = own_config(shapes)
    config = Qwen2Config(
        vocab_size=own.vocab_size,
        hidden_size=own.hidden_size,
        intermediate_size=own.intermediate_size,
        num_hidden_layers=own.num_hidden_layers,
        num_attention_heads=own.num_attention_heads,
        num_key_value_heads=own.num_key_value_heads,
        max_position_embeddings=own.max_position_embeddings,
        rms_norm_eps=own.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": own.rope_theta},
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = build_on_device(run, lambda: Qwen2ForCausalLM(config))
    llm_params = matmul_parameters(model)
    batch, length = shapes.train_batch, shapes.train_tokens
    input_ids = torch.randint(10, config.vocab_size, (batch, length), device=run.device)
    labels = input_ids.clone()
    labels[:, : 4 + own.query_num] = -100

    def train_step() -> None:
        model(input_ids=input_ids, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    measure(
        run,
        "hf_qwen2",
        "fwd+bwd",
        f"{batch}x{length} (text only)",
        train_step,
        tokens=batch * length,
        flops=train_flops(llm_params, batch * length),
    )
    model.eval()
    prompt = 4 + own.query_num + shapes.prompt_text_tokens
    for generate_batch in shapes.generate_batches:
        prompt_ids = torch.randint(
            10, config.vocab_size, (generate_batch, prompt), device=run.device
        )
        generate_step = greedy_generate_step(
            model,
            dict(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids)),
            shapes.new_tokens,
        )
        measure(
            run,
            "hf_qwen2",
            f"generate b{generate_batch}",
            f"{generate_batch}x({prompt}+{shapes.new_tokens})",
            generate_step,
            tokens=generate_batch * shapes.new_tokens,
            flops=generate_batch * generate_flops(llm_params, shapes.new_tokens, prompt, 0, 0),
            generate=True,
        )


def greedy_generate_step(
    model, inputs: dict, new_tokens: int, *, prompt_in_output: bool = True
) -> Callable[[], None]:
    """A greedy ``generate`` of exactly ``new_tokens`` (no EOS stop) on ``inputs``; HF returns
    prompt + new tokens, ``MLLMModel.generate`` the new tokens only (``prompt_in_output`` False)."""
    prompt_length = inputs["input_ids"].shape[1] if prompt_in_output else 0

    @torch.inference_mode()
    def step() -> None:
        output = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )  # [B, P + T] or [B, T]
        check_new_tokens(output.shape[1] - prompt_length, new_tokens)

    return step


# -- part 3: Qwen2.5-VL-7B, LoRA SFT and generate ----------------------------------------------


def qwen2_5_vl_config(run: Run):
    from transformers import Qwen2_5_VLConfig

    shapes = run.shapes
    config = Qwen2_5_VLConfig(
        text_config=shapes.qwen2_5_vl_text or QWEN2_5_VL_7B_TEXT,
        vision_config=shapes.qwen2_5_vl_vision or QWEN2_5_VL_7B_VISION,
        **(SMOKE_QWEN2_5_VL_TOKENS if run.args.smoke else QWEN2_5_VL_7B_TOKENS),
    )
    config._attn_implementation = "sdpa"
    for sub in (config.text_config, config.vision_config):
        sub._attn_implementation = "sdpa"
    return config


def qwen2_5_vl_inputs(config, batch: int, length: int, side: int, device, dtype) -> dict:
    """Random ids with one side×side-patch image per sample (side²/4 image tokens from position 4)."""
    vision = config.vision_config
    image_tokens = side * side // vision.spatial_merge_size**2
    input_ids = torch.randint(10, config.image_token_id - 100, (batch, length), device=device)
    input_ids[:, 3] = config.vision_start_token_id
    input_ids[:, 4 : 4 + image_tokens] = config.image_token_id
    mm_token_type_ids = (input_ids == config.image_token_id).int()  # 1 = image token
    labels = input_ids.clone()
    labels[:, : 4 + image_tokens] = -100
    patch_values = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=mm_token_type_ids,
        labels=labels,
        pixel_values=torch.randn(batch * side * side, patch_values, device=device, dtype=dtype),
        image_grid_thw=torch.tensor([[1, side, side]] * batch, device=device),
    )


def part_qwen2_5_vl(run: Run) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration

    from mllm.family.hf import Qwen2_5_VLFamily
    from mllm.model.lora import LoraSettings, apply_lora

    shapes = run.shapes
    config = qwen2_5_vl_config(run)
    torch.manual_seed(0)
    model = build_on_device(run, lambda: Qwen2_5_VLForConditionalGeneration(config))
    side = shapes.image_patches_side
    llm_params = matmul_parameters(model.model.language_model) + matmul_parameters(model.lm_head)
    vision_params = matmul_parameters(model.model.visual)
    image_tokens = side * side // config.vision_config.spatial_merge_size**2
    model.eval()
    prompt = 4 + image_tokens + shapes.prompt_text_tokens
    for generate_batch in shapes.generate_batches:
        inputs = qwen2_5_vl_inputs(config, generate_batch, prompt, side, run.device, run.dtype)
        inputs.pop("labels")
        measure(
            run,
            "qwen2_5_vl",
            f"generate b{generate_batch}",
            f"{generate_batch}x({prompt}+{shapes.new_tokens}), {image_tokens} image tokens",
            greedy_generate_step(model, inputs, shapes.new_tokens),
            tokens=generate_batch * shapes.new_tokens,
            flops=generate_batch
            * generate_flops(llm_params, shapes.new_tokens, prompt, vision_params, side * side),
            generate=True,
        )
    model = apply_lora(
        model, LoraSettings(dropout=0.0), default_regex=Qwen2_5_VLFamily.lora_target_regex
    )
    model.to(run.dtype)
    adapters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(adapters, lr=1e-4)
    batch, length = shapes.train_batch, shapes.train_tokens
    inputs = qwen2_5_vl_inputs(config, batch, length, side, run.device, run.dtype)

    def lora_step() -> None:
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    measure(
        run,
        "qwen2_5_vl",
        "LoRA SFT step",
        f"{batch}x{length} ({image_tokens} image tokens), r 64 q/k/v, "
        f"{sum(p.numel() for p in adapters) / 1e6:.1f} M trainable",
        lora_step,
        tokens=batch * length,
        flops=train_flops(
            llm_params, batch * length, vision_params, batch * side * side, frozen=True
        ),
    )


PART_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "own": part_own,
    "hf_qwen2": part_hf_qwen2,
    "qwen2_5_vl": part_qwen2_5_vl,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="bench/GPU.md", help="markdown table; JSON beside it (.json)"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="skip what is left after this many seconds"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="override the device's bf16 peak"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny float32 shapes on CPU, seconds")
    args = parser.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on the lent GPU, or pass --smoke")
    run = Run(args, SMOKE if args.smoke else REAL, device)
    progress(
        f"device {device_name(device)}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    for part in parts:
        if run.over_budget():
            run.record(Row(part, "(part)", "", error=f"skipped: budget {args.budget_s}s spent"))
            continue
        progress(f"part {part} starts at {run.elapsed():.0f} s")
        try:
            PART_FUNCTIONS[part](run)
        except Exception as error:  # noqa: BLE001 - a failed build must not stop the other parts
            traceback.print_exc()
            run.record(Row(part, "(part)", "", error=f"{type(error).__name__}: {error}"[:300]))
        free_memory(device)
    run.write()
    progress(f"done in {run.elapsed():.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
