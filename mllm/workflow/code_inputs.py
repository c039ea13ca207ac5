"""The library files a job runs, derived from its entry point's imports.

Snakemake does not track imported code, so each rule declares the library modules its job runs
as inputs: a change to one of them reruns the job (content checksums, so a mere touch does not).
Listing them by hand drifts; here they are the transitive closure of the ``mllm`` imports of the
entry point (a ``script:`` adapter or a ``python -m`` job module), read with ``ast`` and never
executed. Every import statement counts, also one inside a function or under ``TYPE_CHECKING``,
and importing ``mllm.a.b`` also runs the packages' ``__init__.py`` files on the way.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

PACKAGE = "mllm"


def code_inputs(entry: str, repository: str | os.PathLike) -> list[str]:
    """Sorted library files behind ``entry``: a script path relative to ``repository`` (e.g.
    ``workflow_scripts/decode.py``) or a module name (``mllm.train.sft``)."""
    root = Path(repository).resolve()
    if entry.endswith(".py"):
        start = root / entry
        if not start.is_file():
            raise FileNotFoundError(f"entry point {entry!r}: no such file under {root}")
        files = set(_closure(start, root, None))
    else:
        module = _module_file(entry, root)
        if module is None:
            raise ModuleNotFoundError(f"entry point {entry!r}: no such module under {root}")
        files = set(_closure(module, root, entry)) | _packages_of(entry, root)
    return sorted(str(path) for path in files)


@cache
def _closure(path: Path, root: Path, module: str | None) -> frozenset[Path]:
    """``path`` (when a library module) and every library file it imports, transitively."""
    seen: set[Path] = set()
    pending = [(path, module)]
    while pending:
        file, name = pending.pop()
        if file in seen:
            continue
        seen.add(file)
        for imported in _imports(file, name):
            target = _module_file(imported, root)
            if target is None:
                continue
            seen |= _packages_of(imported, root)
            pending.append((target, imported))
    return frozenset(file for file in seen if file.is_relative_to(root / PACKAGE))


@cache
def _imports(file: Path, module: str | None) -> tuple[str, ...]:
    """Names of the ``mllm`` modules ``file`` imports. ``from a import b`` yields ``a.b`` too, as
    ``b`` may be a submodule; names that are not modules are dropped by the caller."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    package = _package_of(file, module)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            if base is None:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(name for name in names if name == PACKAGE or name.startswith(PACKAGE + "."))


def _package_of(file: Path, module: str | None) -> str | None:
    """The package relative imports in ``file`` start from (None outside the library)."""
    if module is None:
        return None
    return module if file.name == "__init__.py" else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str | None) -> str | None:
    if node.level == 0:
        return node.module
    if package is None:
        return None
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: -(node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages_of(name: str, root: Path) -> set[Path]:
    """The ``__init__.py`` of every package importing ``name`` runs."""
    parts = name.split(".")
    packages = (root.joinpath(*parts[:depth], "__init__.py") for depth in range(1, len(parts)))
    return {path for path in packages if path.is_file()}
