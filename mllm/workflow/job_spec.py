"""The rules' ``params: spec=``: a job module's keyword arguments as one JSON object, which
``mllm.launch`` turns back into the job function's arguments (``--spec JSON``).

Snakemake tracks a param by its text, so changing one hyperparameter reruns exactly the jobs
whose spec holds it. Input and output paths are not in it; the shell command passes them as
NAME=PATH. Only the standard library: the rules import this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping


def job_spec(**arguments: object) -> Callable[[Mapping[str, str]], str]:
    """The param function of ``arguments``: constants, strings with ``{wildcard}``s or functions
    of the wildcards (like any param). Values that are None (a config key left out) are left out
    too, so the job function's default applies."""

    def spec(wildcards: Mapping[str, str]) -> str:
        values = {}
        for name, value in arguments.items():
            if callable(value):
                value = value(wildcards)
            elif isinstance(value, str):
                value = value.format(**wildcards)
            if value is not None:
                values[name] = value
        return json.dumps(values, sort_keys=True)

    return spec
