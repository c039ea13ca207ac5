"""CLI: ``python -m mllm.demo --out DIR --seed N [--n-train 5000 ...] [--config knobs.yaml]``.

Every :class:`DemoWorldConfig` field is a flag (tuples as JSON, e.g.
``--categories '["cup", "fork"]'``); ``--config`` reads a YAML/JSON mapping of fields, which
flags override.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import yaml

from mllm.demo.config import DemoWorldConfig
from mllm.demo.world import generate_world


def parse_args(argv: list[str] | None = None) -> tuple[Path, DemoWorldConfig, int]:
    parser = argparse.ArgumentParser(
        prog="python -m mllm.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="world directory (replaced atomically)"
    )
    parser.add_argument("--config", type=Path, help="YAML/JSON mapping of DemoWorldConfig fields")
    parser.add_argument(
        "--workers", type=int, default=1, help="drawing processes (same world for any number)"
    )
    for f in dataclasses.fields(DemoWorldConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None
            )
        elif isinstance(f.default, tuple):
            parser.add_argument(flag, dest=f.name, type=json.loads, default=None, help="JSON list")
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=None)
    args = vars(parser.parse_args(argv))
    out, config_file, workers = args.pop("out"), args.pop("config"), args.pop("workers")
    values = (yaml.safe_load(config_file.read_text()) if config_file else None) or {}
    values.update({key: value for key, value in args.items() if value is not None})
    return out, DemoWorldConfig.from_dict(values), workers


def main(argv: list[str] | None = None) -> None:
    out, cfg, workers = parse_args(argv)
    start = time.perf_counter()
    manifest = generate_world(out, cfg, workers)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "out": str(out),
                "seconds": round(seconds, 2),
                "counts": manifest["counts"],
                "stats": manifest["stats"],
            },
            indent=1,
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
