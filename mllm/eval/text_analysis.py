"""Text analysis for CHAIR: tokenize, POS-tag and lemmatize a caption.

CHAIR's numbers depend on these three steps, so every metrics file names the analyzer
(``TextAnalyzer.info``). Analyzers, best first (``get_analyzer("auto")`` picks the first
available):

* ``nltk`` — the exercise's chair.py exactly: ``word_tokenize``, ``pos_tag``,
  ``WordNetLemmatizer``. Needs punkt_tab, averaged_perceptron_tagger_eng and wordnet, which
  only a connected machine can fetch (``python -m mllm.eval.nltk_data download``).
* ``offline`` — needs no download: what ``word_tokenize`` does minus the trained sentence
  splitter (untrained Punkt, then the same NLTKWordTokenizer), textblob's PatternTagger
  (Penn tags from the lexicon textblob ships) and nltk's own WordNetLemmatizer over Debian's
  WordNet 3.0 (``python -m mllm.eval.nltk_data install-offline``). Only tagging differs
  from the reference, and tags only matter where they switch the lemmatizer's POS.
* ``offline-rules`` — as ``offline`` but WordNet's morphology applied with the CHAIR
  vocabulary standing in for the WordNet index (``RuleLemmatizer``): for machines
  without WordNet. Gives every CHAIR number and mention of ``offline``: for every string,
  both lemmatizers return the same CHAIR word or none (tested over every string either can
  turn into one), and CHAIR looks at nothing else.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cache
from typing import Any

from mllm.eval.chair_lexicon import default_lexicon
from mllm.eval.nltk_data import missing_reference_resources, wordnet_available

ANALYZER_NAMES = ("nltk", "offline", "offline-rules")


class AnalyzerUnavailable(RuntimeError):
    """The requested analyzer's data or packages are missing; the message says what to install."""


def wordnet_pos(penn_tag: str) -> str:
    """chair.py's POS map: J→adjective, V→verb, R→adverb, anything else → noun."""
    return {"J": "a", "V": "v", "R": "r"}.get(penn_tag[:1], "n")


class TextAnalyzer:
    """Lowercases, tokenizes, tags and lemmatizes a caption as chair.py does."""

    def __init__(
        self,
        name: str,
        *,
        tokenize: Callable[[str], list[str]],
        tag: Callable[[list[str]], list[str]],
        lemmatize: Callable[[str, str], str],
        components: Mapping[str, str],
        packages: Sequence[str],
    ):
        self.name = name
        self._tokenize, self._tag, self._lemmatize = tokenize, tag, lemmatize
        self._components = dict(components)
        self._packages = tuple(packages)

    def analyze(self, caption: str) -> list[tuple[str, str]]:
        """(token, lemma) pairs of the lowercased caption, punctuation included."""
        tokens = self._tokenize(caption.lower())
        tags = self._tag(tokens)
        return [
            (token, self._lemmatize(token, wordnet_pos(tag)))
            for token, tag in zip(tokens, tags, strict=True)
        ]

    @property
    def info(self) -> dict[str, Any]:
        """Name, components and package versions: recorded with every CHAIR result."""
        versions = {pkg: importlib.metadata.version(pkg) for pkg in self._packages}
        return {"name": self.name, **self._components, "versions": versions}


# --- tokenizers ----------------------------------------------------------------------------


def _offline_tokenizer() -> Callable[[str], list[str]]:
    """``nltk.word_tokenize`` with an untrained Punkt sentence splitter.

    Sentences must be split first: NLTKWordTokenizer only detaches a string-final period,
    so 'a dog. a cat.' would otherwise yield 'dog.'.
    """
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    sentences, words = PunktSentenceTokenizer(), NLTKWordTokenizer()
    return lambda text: [
        token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)
    ]


# --- taggers -------------------------------------------------------------------------------


def _nltk_tag(tokens: list[str]) -> list[str]:
    import nltk

    return [tag for _, tag in nltk.pos_tag(tokens)]


def _pattern_tag(tokens: list[str]) -> list[str]:
    try:
        from textblob.en import parser
    except ImportError as error:
        raise AnalyzerUnavailable("the offline analyzers need `pip install textblob`") from error
    return [tag for _, tag in parser.find_tags(tokens)] if tokens else []


# --- lemmatizers ---------------------------------------------------------------------------


def _words(table: str) -> frozenset[str]:
    return frozenset(table.split())


def _pairs(table: str) -> dict[str, list[str]]:
    words = table.split()
    forms: dict[str, list[str]] = {}
    for form, lemma in zip(words[::2], words[1::2], strict=True):
        forms.setdefault(form, []).append(lemma)
    return forms


# WordNet's detachment rules (nltk's WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS).
MORPHY_RULES = {
    "n": (
        ("s", ""),
        ("ses", "s"),
        ("ves", "f"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ),
    "v": (
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}

# The entries of WordNet 3.0's {noun,verb,adj}.exc whose lemma is a CHAIR word ("form lemma").
WORDNET_EXCEPTIONS = {
    "n": "buffaloes buffalo busses bus calves calf children child flamingoes flamingo "
    "geese goose grandchildren grandchild knives knife men man mice mouse oxen ox "
    "pocketknives pocketknife taxies taxi thieves thief",
    "v": "babied baby batted bat batting bat bed bed bedded bed bedding bed bore bear "
    "born bear borne bear bulldogging bulldog catted cat catting cat copped cop "
    "copping cop cubbed cub cubbing cub cupped cup cupping cup dogged dog dogging dog "
    "ferried ferry jetted jet jetting jet kidded kid kidding kid lit light manned man "
    "manning man pugged pug pugging pug pupped pup pupping pup rammed ram ramming ram "
    "sank sink shipped ship shipping ship signalled signal signalling signal ski'd ski "
    "stopped stop stopping stop subbed sub subbing sub sunk sink sunken sink "
    "taxying taxi topped top topping top trafficked traffic trafficking traffic tying tie",
    "a": "camper camper foreigner foreigner hotter hot hottest hot huskier husky huskiest husky "
    "player player pottier potty pottiest potty teenager teenager",
    "r": "",
}

# Which CHAIR words WordNet 3.0 knows in each part of speech: WordNetLemmatizer only returns
# lemmas of the requested POS, so 'zebras' tagged as a verb stays 'zebras'.
CHAIR_WORDS_NOT_WORDNET_NOUNS = _words(
    "biker bluejay brindle children coworker firetruck glas hairdryer hot iPhone knive lenovo "
    "longboard macbook netbook paddleboat pitbull potted riverboat sailboard shortboard "
    "skimboard skis smartphone solider sports stovetop teddybear televison"
)
CHAIR_WORDS_WORDNET_VERBS = _words(
    "air automobile baby backpack ball barge bat bear bed bench bicycle bike bird boat book "
    "bottle bow bowl buffalo bull bulldog bus cab cake canoe case cat chair clock cocker cop "
    "couch cow crow cub cup cycle doctor dog duck falcon father ferry fire foal fork fowl "
    "glass goose groom gull guy home horse hound jet kayak kid kite kitten knife lamb light "
    "man meter microwave monitor mother motor motorbike motorboat motorcycle mouse officer "
    "parrot people phone plane plant plate pup purse quail racket ram raven sandwich seaplane "
    "seat ship sign signal sink skateboard ski snowboard soldier spoon stool stop sub suit "
    "surfboard swan table taxi telephone tie top track traffic train truck unicycle wine "
    "yacht"
)
CHAIR_WORDS_WORDNET_ADJECTIVES = _words(
    "adult animal brindle caller canine equine feline female home hot husky jet light "
    "locomotive male mobile motor orange patient plane potted potty remote sign signal tabby "
    "top umbrella"
)
CHAIR_WORDS_WORDNET_ADVERBS = frozenset({"home", "light"})

# WordNet's own answer where a competing WordNet lemma outside the CHAIR words wins the
# shortest-form choice ('vases' → 'vas', 'planes'/v → 'plan') or ties first ('men' → 'men').
# Found by comparing RuleLemmatizer with WordNetLemmatizer on every candidate form.
WORDNET_OVERRIDES = {
    "n": "men men sports sport vases vas",
    "v": "bore bore dining din kited kit kites kit kiting kit moped mop parking park planed "
    "plan planes plan planing plan plated plat plates plat plating plat potted pot "
    "scissors scissor skies sky sports sport stove stave taxis taxis wined win wines win "
    "wining win",
    "a": "drier dry homer homer planer planer signaler signaler signer signer solider solid "
    "toper toper",
    "r": "",
}


class RuleLemmatizer:
    """WordNet's morphy with the CHAIR words standing in for the WordNet index.

    Like ``WordNetLemmatizer``: the exception forms, else the detachment rules; keep the
    candidates (the word included) that are lemmas of the requested POS; return the
    shortest, or the word itself. Only CHAIR words matter to CHAIR, so knowing which CHAIR
    words WordNet holds per POS (plus ``WORDNET_OVERRIDES``) reproduces WordNet on them
    without WordNet; tests check this against WordNet on every string either lemmatizer
    can turn into a CHAIR word.
    """

    def __init__(self, chair_words: Collection[str]):
        words = frozenset(chair_words)
        self._lemmas = {
            "n": words - CHAIR_WORDS_NOT_WORDNET_NOUNS,
            "v": words & CHAIR_WORDS_WORDNET_VERBS,
            "a": words & CHAIR_WORDS_WORDNET_ADJECTIVES,
            "r": words & CHAIR_WORDS_WORDNET_ADVERBS,
        }
        self._exceptions = {pos: _pairs(table) for pos, table in WORDNET_EXCEPTIONS.items()}
        self._overrides = {pos: _pairs(table) for pos, table in WORDNET_OVERRIDES.items()}

    def lemmatize(self, word: str, pos: str = "n") -> str:
        if word in self._overrides[pos]:
            return self._overrides[pos][word][0]
        forms = self._exceptions[pos].get(word) or [
            word[: -len(old)] + new for old, new in MORPHY_RULES[pos] if word.endswith(old)
        ]
        known = [form for form in (word, *forms) if form in self._lemmas[pos]]
        return min(known, key=len) if known else word


# --- analyzers -----------------------------------------------------------------------------


def _wordnet_lemmatizer() -> Callable[[str, str], str]:
    if not wordnet_available():
        raise AnalyzerUnavailable(
            "WordNet not found by nltk: run `apt-get install --no-install-recommends "
            "wordnet-base wordnet-sense-index && python -m mllm.eval.nltk_data install-offline`"
        )
    from nltk.stem import WordNetLemmatizer

    return WordNetLemmatizer().lemmatize


def _build(name: str) -> TextAnalyzer:
    if name == "nltk":
        missing = missing_reference_resources()
        if missing:
            raise AnalyzerUnavailable(
                f"nltk data missing: {', '.join(missing)} (`python -m mllm.eval.nltk_data download`)"
            )
        import nltk

        return TextAnalyzer(
            name,
            tokenize=nltk.word_tokenize,
            tag=_nltk_tag,
            lemmatize=_wordnet_lemmatizer(),
            packages=["nltk"],
            components={
                "tokenizer": "nltk.word_tokenize (punkt_tab)",
                "tagger": "nltk.pos_tag (averaged_perceptron_tagger_eng)",
                "lemmatizer": "nltk WordNetLemmatizer (WordNet 3.0)",
            },
        )
    _pattern_tag([])  # fail now, not on the first caption, if textblob is missing
    if name == "offline":
        lemmatize, lemmatizer = _wordnet_lemmatizer(), "nltk WordNetLemmatizer (WordNet 3.0)"
    elif name == "offline-rules":
        lemmatize = RuleLemmatizer(default_lexicon().words()).lemmatize
        lemmatizer = "RuleLemmatizer (WordNet morphy over the CHAIR vocabulary)"
    else:
        raise ValueError(f"unknown analyzer {name!r}; choose auto or one of {ANALYZER_NAMES}")
    return TextAnalyzer(
        name,
        tokenize=_offline_tokenizer(),
        tag=_pattern_tag,
        lemmatize=lemmatize,
        packages=["nltk", "textblob"],
        components={
            "tokenizer": "untrained Punkt + NLTKWordTokenizer",
            "tagger": "textblob PatternTagger",
            "lemmatizer": lemmatizer,
        },
    )


@cache
def get_analyzer(name: str = "auto") -> TextAnalyzer:
    """The named analyzer, or for ``auto`` the first available of ``ANALYZER_NAMES``.

    Raises ``AnalyzerUnavailable`` (saying what to install) when a named one cannot run.
    """
    if name != "auto":
        return _build(name)
    reasons = []
    for candidate in ANALYZER_NAMES:
        try:
            return _build(candidate)
        except AnalyzerUnavailable as error:
            reasons.append(f"{candidate}: {error}")
    raise AnalyzerUnavailable("no text analyzer available; " + "; ".join(reasons))
