"""Command line of the jobs that may run on several GPUs. Each job module ends with
``if __name__ == "__main__": main([its job functions])``, and a rule runs it as

    python -m MODULE JOB --threads N --spec JSON [NAME=PATH ...]
    python -m torch.distributed.run --standalone --nproc_per_node=G -m MODULE JOB ...

(MODULE: ``mllm.demo.base_model``, ``mllm.train.sft``, ``mllm.preference.jobs``; JOB: the name of
one of its job functions). torchrun's ranks are fresh processes that never see Snakemake's
``snakemake`` object, so these rules are ``shell:`` commands instead of ``script:`` adapters.
``--spec`` holds keyword arguments of the job function as one JSON object (the rule's
change-tracked ``params.spec``); ``NAME=PATH`` pairs add the rule's input and output paths. A key
left out takes the function's default. Values are converted by the function's annotations: a
settings dataclass (one with ``from_dict``) is built from its JSON object, None is accepted only
where the annotation allows it. The job's function handles ranks itself (only rank 0 writes
outputs); stdout/stderr go wherever the shell sends them.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from mllm.distributed import is_main_process
from mllm.runtime import start_job


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a value of ``annotation`` may have: the members of a union, or itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def convert_argument(job: str, name: str, value: Any, annotation: Any) -> Any:
    """``value`` (plain JSON) as the parameter ``name`` annotated ``annotation`` takes it."""
    members = _members(annotation)
    if value is None:
        if type(None) not in members:
            raise ValueError(f"{job}: {name} may not be null")
        return None
    for member in members:
        if dataclasses.is_dataclass(member) and hasattr(member, "from_dict"):
            return member.from_dict(value, where=f"{job}: {name}")
        if typing.get_origin(member) is typing.Literal and value not in typing.get_args(member):
            raise ValueError(f"{job}: {name} {value!r} is not one of {typing.get_args(member)}")
    return value


def job_arguments(job: Callable, spec: str, paths: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of ``job`` from the JSON ``spec`` and ``NAME=PATH`` pairs."""
    name = job.__name__
    arguments = json.loads(spec)
    if not isinstance(arguments, dict):
        raise ValueError(f"{name}: --spec must be a JSON object, not {type(arguments).__name__}")
    for pair in paths:
        key, separator, path = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"{name}: expected NAME=PATH, got {pair!r}")
        if key in arguments:
            raise ValueError(f"{name}: {key!r} is given both in --spec and as a path")
        arguments[key] = path
    parameters = inspect.signature(job).parameters
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {unknown}; known are {sorted(parameters)}")
    missing = [
        key
        for key, parameter in parameters.items()
        if parameter.default is parameter.empty and key not in arguments
    ]
    if missing:
        raise ValueError(f"{name}: missing argument(s) {missing}")
    hints = typing.get_type_hints(job)
    return {
        key: convert_argument(name, key, value, hints.get(key, Any))
        for key, value in arguments.items()
    }


def main(jobs: Sequence[Callable], argv: Sequence[str] | None = None) -> None:
    """Run one of ``jobs`` (chosen by its ``__name__``) with the command line's arguments; rank 0
    prints its result as JSON."""
    by_name = {job.__name__: job for job in jobs}
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", choices=sorted(by_name))
    parser.add_argument("--spec", required=True, help="JSON object: the function's arguments")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the whole job")
    parser.add_argument("paths", nargs="*", metavar="NAME=PATH")
    args = parser.parse_intermixed_args(argv)
    start_job(None, args.threads)
    job = by_name[args.job]
    result = job(**job_arguments(job, args.spec, args.paths))
    if is_main_process():
        print(json.dumps(result, default=str))
