"""Command line of the jobs that may run on several GPUs:

    python -m mllm.launch JOB --threads N --spec JSON [NAME=PATH ...]
    python -m torch.distributed.run --standalone --nproc_per_node=G -m mllm.launch JOB ...

torchrun's ranks are fresh processes that never see Snakemake's ``snakemake`` object, so these
rules are ``shell:`` commands instead of ``script:`` adapters. ``--spec`` holds the keyword
arguments of the job's library function as one JSON object (the rule's change-tracked
``params.spec``); ``NAME=PATH`` pairs add the rule's input and output paths. The job's function
handles ranks itself (only rank 0 writes outputs); stdout/stderr go wherever the shell sends them.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from mllm.distributed import is_main_process
from mllm.runtime import start_job

# job -> the library function it calls, "module:function" (imported only for that job).
JOBS = {
    "build_base_model": "mllm.train.pretrain:build_base_model",
    "train_sft": "mllm.train.sft:train_sft",
    "reference_logps": "mllm.train.align:build_reference_logps",
    "train_preference": "mllm.train.align:train_preference",
}


def _train_settings(values, job):
    from mllm.train.settings import TrainSettings

    return TrainSettings.from_dict(values, where=f"{job}: settings")


def _preference_settings(values, job):
    from mllm.train.preference import PreferenceSettings

    return PreferenceSettings.from_dict(values)


# Arguments that the library takes as typed objects rather than plain JSON values.
CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "settings": _train_settings,
    "preference": _preference_settings,
}


def job_arguments(job: str, spec: str, paths: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of ``job``'s function from the JSON ``spec`` and ``NAME=PATH`` pairs."""
    arguments = json.loads(spec)
    if not isinstance(arguments, dict):
        raise ValueError(f"{job}: --spec must be a JSON object, not {type(arguments).__name__}")
    for pair in paths:
        name, separator, path = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"{job}: expected NAME=PATH, got {pair!r}")
        if name in arguments:
            raise ValueError(f"{job}: {name!r} is given both in --spec and as a path")
        arguments[name] = path
    for name, convert in CONVERTERS.items():
        if name in arguments:
            arguments[name] = convert(arguments[name], job)
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mllm.launch", description=__doc__)
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--spec", required=True, help="JSON object: the function's arguments")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the whole job")
    parser.add_argument("paths", nargs="*", metavar="NAME=PATH")
    args = parser.parse_intermixed_args(argv)
    start_job(None, args.threads)
    module, function = JOBS[args.job].split(":")
    call = getattr(importlib.import_module(module), function)
    result = call(**job_arguments(args.job, args.spec, args.paths))
    if is_main_process():
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
