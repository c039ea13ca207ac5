"""What model and dataset downloads share, kept free of torch and transformers so that a dataset
download job starts in a fraction of a second: telling a Hub repo id from a path, and mirroring a
local folder (or Hub snapshot) without copying its files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from huggingface_hub.utils import filter_repo_objects

HUB_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def link_tree(source_dir: Path, target_dir: Path, allow_patterns: str | list[str] | None) -> None:
    """Mirror the selected files of ``source_dir``, hard-linked where the file system allows: a
    16 GB checkpoint then costs neither space nor time, and checkpoints are replaced, never edited
    in place, so sharing inodes is safe."""
    relative = [
        path.relative_to(source_dir).as_posix()
        for path in sorted(source_dir.rglob("*"))
        if path.is_file()
    ]
    for name in filter_repo_objects(relative, allow_patterns=allow_patterns):
        target = target_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # resolved first: a Hub cache snapshot holds symlinks, and Linux links the link itself
            os.link((source_dir / name).resolve(), target)
        except OSError:
            shutil.copy2(source_dir / name, target)
