"""Locate and install the nltk data CHAIR needs, without ever downloading at run time.

Two setups exist (see ``mllm.eval.text_analysis``):

* reference (connected machines): ``python -m mllm.eval.nltk_data download`` fetches
  punkt_tab, averaged_perceptron_tagger_eng and wordnet, as the exercise's chair.py uses.
* offline (CI, clusters without internet): ``apt-get install --no-install-recommends
  wordnet-base wordnet-sense-index`` then ``python -m mllm.eval.nltk_data install-offline``
  copies Debian's WordNet 3.0 into an nltk data dir. nltk needs a ``lexnames`` file that
  Debian does not ship (it is rebuilt below from ``man 5 lexnames``) and rejects symlinks
  leaving its root, hence a copy. nltk reads ``index.sense`` when it opens WordNet, hence
  the sense-index package.

The default target is ``<sys.prefix>/nltk_data``, which nltk searches inside a venv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from mllm.atomic import atomic_directory

DEBIAN_WORDNET = Path("/usr/share/wordnet")
WORDNET_FILES = tuple(
    f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")
) + ("noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev", "index.sense")

# WordNet 3.0 lexicographer files in file-number order (wninput(5WN) / lexnames(5WN)).
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# nltk resource → the path nltk.data.find looks up (nltk >= 3.9 names).
REFERENCE_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
    "wordnet": "corpora/wordnet",
}


class NltkDataError(RuntimeError):
    """nltk data is missing or cannot be installed; the message says how to fix it."""


def default_data_dir() -> Path:
    """``$NLTK_DATA`` (first entry) if set, else ``<sys.prefix>/nltk_data``."""
    env = os.environ.get("NLTK_DATA")
    return Path(env.split(os.pathsep)[0]) if env else Path(sys.prefix) / "nltk_data"


def _found(resource_path: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource_path)
    except LookupError:
        return False
    return True


def missing_reference_resources() -> list[str]:
    """Names of the reference resources nltk cannot find (empty: reference setup complete)."""
    return [name for name, path in REFERENCE_RESOURCES.items() if not _found(path)]


def wordnet_available() -> bool:
    return _found(REFERENCE_RESOURCES["wordnet"])


def lexnames_text() -> str:
    """The 45-line ``lexnames`` file: ``NN<TAB>name<TAB>syntactic category``."""
    return "".join(
        f"{number:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n"
        for number, name in enumerate(LEXNAMES)
    )


def install_offline_wordnet(target_dir: Path | None = None, source: Path = DEBIAN_WORDNET) -> Path:
    """Copy Debian's WordNet into ``<target_dir>/corpora/wordnet``; return that directory.

    Idempotent: an existing complete install is left alone. The copy is assembled in a
    temporary sibling and renamed into place, so an interrupted run leaves nothing half-made.
    """
    wordnet_dir = (target_dir or default_data_dir()) / "corpora" / "wordnet"
    if all((wordnet_dir / name).is_file() for name in (*WORDNET_FILES, "lexnames")):
        return wordnet_dir
    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise NltkDataError(
            f"Debian WordNet not found in {source} (missing {', '.join(missing)}); run "
            "`apt-get install --no-install-recommends wordnet-base wordnet-sense-index`"
        )
    with atomic_directory(wordnet_dir) as staging:
        for name in WORDNET_FILES:
            shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    return wordnet_dir


def use_nltk_data(directories: list[str] | tuple[str, ...]) -> None:
    """Search these nltk data directories first (e.g. what the fetch_nltk_data rule wrote)."""
    import nltk

    for directory in reversed(list(directories)):
        if directory not in nltk.data.path:
            nltk.data.path.insert(0, str(directory))


def download_reference(target_dir: Path | None = None) -> Path:
    """Fetch the reference resources (needs network): the `fetch_nltk_data` rule, or by hand."""
    import nltk

    target = target_dir or default_data_dir()
    for name in REFERENCE_RESOURCES:
        if not nltk.download(name, download_dir=str(target), quiet=True, raise_on_error=True):
            raise NltkDataError(f"nltk.download({name!r}) failed")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mllm.eval.nltk_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    offline = commands.add_parser("install-offline", help="copy Debian WordNet into nltk data")
    offline.add_argument(
        "--dir", type=Path, help="nltk data dir (default: %(default)s)", default=default_data_dir()
    )
    offline.add_argument("--source", type=Path, default=DEBIAN_WORDNET)
    download = commands.add_parser("download", help="fetch the reference data (network)")
    download.add_argument("--dir", type=Path, default=default_data_dir())
    commands.add_parser("status", help="say which text analyzer CHAIR would use")
    args = parser.parse_args(argv)

    if args.command == "install-offline":
        print(install_offline_wordnet(args.dir, args.source))
    elif args.command == "download":
        print(download_reference(args.dir))
    else:
        from mllm.eval.text_analysis import get_analyzer

        print(f"missing reference resources: {missing_reference_resources() or 'none'}")
        print(f"active analyzer: {get_analyzer('auto').info}")


if __name__ == "__main__":
    try:
        main()
    except NltkDataError as error:
        sys.exit(f"error: {error}")
