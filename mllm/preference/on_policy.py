"""On-policy preference pairs (RLHF-V / RLAIF-V style): the starting model's own hallucinations.

For every prompt (an image and a question) the starting model samples K answers with the same
decoding preset as the benchmark; each answer's object mentions are checked against the image's
ground-truth objects with the CHAIR machinery (``mllm.eval.chair``). A pair contrasts

* ``rejected``: a sampled answer that mentions an object the image does not hold, and
* ``chosen``: a faithful answer, in the configured order of preference either another sample
  with no hallucination that names at least as many of the image's objects as the rejected one
  (``sample``), or the rejected answer itself with the clauses (or sentences) that carry the
  hallucinated mentions removed (``edit``, a fine-grained correction as in RLHF-V).

The chosen answer never recalls fewer ground-truth objects than the rejected one (an edit keeps
them all; a sample must match them), so "say less" is not what the pairs teach. The pairs are
written in the exercise's ``preference_train.json`` format, so reference log-probs and DPO/NCA
training read them like any other preference file. Records and sampled answers that cannot make
a pair are counted in the summary, never dropped silently; a bad prompt (no image, no ground
truth) raises a ``DataError`` naming its ``idx`` or, with ``on_bad_record="skip"``, is counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mllm.atomic import write_json, write_jsonl
from mllm.data.errors import BadRecordPolicy, DataError, build_each, check_bad_record_policy
from mllm.data.images import load_image
from mllm.eval.chair import CaptionObjects, _image_id, build_gt_cache, caption_objects
from mllm.eval.chair_lexicon import ChairLexicon, default_lexicon
from mllm.eval.text_analysis import TextAnalyzer, get_analyzer
from mllm.settings import Settings, check_choice
from mllm.train.datasets import read_json_records

log = logging.getLogger(__name__)

CHOSEN_SOURCES = ("sample", "edit")
EDIT_GRANULARITIES = ("clause", "sentence")
PAIR_SOURCES = ("world", "on_policy")  # config preference.pairs


@dataclass(frozen=True)
class OnPolicySettings(Settings):
    """How pairs are sampled and selected: config ``preference.on_policy``, less ``strategy`` (the
    decoding preset, which the workflow resolves into ``generation``).

    ``samples_per_image`` answers are sampled per prompt (the first ``max_images`` prompts, all
    when None); each prompt yields at most ``max_pairs_per_image`` pairs, one per distinct
    hallucinated answer. ``chosen`` lists where a faithful answer may come from, in order of
    preference. A chosen sample must recall at least ``min_chosen_recall`` (a fraction) of the
    image's objects and no fewer of them than the rejected answer; any chosen answer must name at
    least ``min_mention_ratio`` × as many objects (mentions, repeats counted) as the rejected one
    (1.0: a correct object where the rejected answer has a wrong one, never just fewer objects).
    """

    samples_per_image: int = 4
    max_images: int | None = None
    max_pairs_per_image: int = 2
    chosen: tuple[str, ...] = ("sample", "edit")
    edit_granularity: str = "clause"
    min_chosen_recall: float = 0.0
    min_mention_ratio: float = 0.0
    batch_size: int = 32
    seed: int = 0
    on_bad_record: BadRecordPolicy = "raise"

    def __post_init__(self):
        object.__setattr__(self, "chosen", tuple(self.chosen))
        if self.samples_per_image < 2 and "sample" in self.chosen:
            raise ValueError("samples_per_image must be >= 2 to pair samples with each other")
        if self.samples_per_image < 1:
            raise ValueError(f"samples_per_image must be >= 1, got {self.samples_per_image}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be >= 1 or null, got {self.max_images}")
        if self.max_pairs_per_image < 1:
            raise ValueError(f"max_pairs_per_image must be >= 1, got {self.max_pairs_per_image}")
        if not self.chosen or any(source not in CHOSEN_SOURCES for source in self.chosen):
            raise ValueError(f"chosen {list(self.chosen)} must list some of {CHOSEN_SOURCES}")
        check_choice("edit_granularity", self.edit_granularity, EDIT_GRANULARITIES)
        if not 0 <= self.min_chosen_recall <= 1:
            raise ValueError(f"min_chosen_recall must be in [0, 1], got {self.min_chosen_recall}")
        if self.min_mention_ratio < 0:
            raise ValueError(f"min_mention_ratio must be >= 0, got {self.min_mention_ratio}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        check_bad_record_policy(self.on_bad_record)


# -- scoring one answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredAnswer:
    """A sampled answer with its CHAIR verdict against one image's GT objects."""

    text: str
    hallucinated: tuple[tuple[str, str], ...]  # (word, node word) per hallucinated mention
    recalled: frozenset[str]  # distinct GT node words mentioned
    mentions: int

    @property
    def is_faithful(self) -> bool:
        return not self.hallucinated

    @property
    def words(self) -> int:
        return len(self.text.split())


class AnswerScorer:
    """CHAIR's mention finding (``caption_objects``) for one analyzer, memoised per text."""

    def __init__(self, analyzer: TextAnalyzer, lexicon: ChairLexicon | None = None):
        self.analyzer = analyzer
        self.lexicon = lexicon or default_lexicon()
        self._objects: dict[str, CaptionObjects] = {}

    def objects(self, text: str) -> CaptionObjects:
        if text not in self._objects:
            self._objects[text] = caption_objects(text, self.analyzer, self.lexicon)
        return self._objects[text]

    def score(self, text: str, gt: Sequence[str] | frozenset[str]) -> ScoredAnswer:
        gt = frozenset(gt)
        mentions = self.objects(text).mentions
        return ScoredAnswer(
            text=text,
            hallucinated=tuple((word, node) for _, word, node in mentions if node not in gt),
            recalled=frozenset(node for _, _, node in mentions if node in gt),
            mentions=len(mentions),
        )

    def hallucinates(self, text: str, gt: frozenset[str]) -> bool:
        return any(node not in gt for _, _, node in self.objects(text).mentions)

    def first_mention_word(self, words: Sequence[str]) -> int | None:
        """Index of the first whitespace word by which ``words`` holds an object mention."""
        for end in range(1, len(words) + 1):
            if self.objects(" ".join(words[:end])).mentions:
                return end - 1
        return None


# -- editing hallucinations out ---------------------------------------------------------------

_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_CLAUSES = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
_DETERMINERS = frozenset(
    ["a", "an", "the", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    + ["ten", "some", "several", "many", "another"]
)


def _join_clauses(clauses: Sequence[str]) -> str:
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def remove_hallucinations(
    text: str, gt: Sequence[str] | frozenset[str], scorer: AnswerScorer, granularity: str = "clause"
) -> str:
    """``text`` without the sentences, or list clauses, that mention an object not in ``gt``.

    Clause mode splits each sentence at commas and "and" (the object lists of detailed
    descriptions: "There is a dog on the left, a cup at the top and a car in the center.") and
    drops the clauses with a hallucinated mention; when the first clause goes, its lead-in ("There
    is", "The image shows") moves to the first kept clause. A sentence left with no clause is
    dropped. Returns "" when nothing faithful remains.
    """
    check_choice("granularity", granularity, EDIT_GRANULARITIES)
    gt = frozenset(gt)
    kept_sentences = []
    for sentence in _SENTENCES.split(text.strip()):
        if not scorer.hallucinates(sentence, gt):
            kept_sentences.append(sentence)
            continue
        if granularity == "sentence":
            continue
        body = sentence.rstrip()
        end = body[-1] if body and body[-1] in ".!?" else ""
        body = body[: len(body) - len(end)]
        clauses = [clause for clause in _CLAUSES.split(body) if clause.strip()]
        kept = [clause for clause in clauses if not scorer.hallucinates(clause, gt)]
        if not kept or not any(scorer.objects(clause).mentions for clause in kept):
            continue  # nothing faithful about objects left in this sentence
        if kept[0] is not clauses[0]:
            kept[0] = _lead_in(clauses[0], scorer) + kept[0]
        kept_sentences.append(_capitalise(_join_clauses(kept)) + end)
    return " ".join(kept_sentences).strip()


def _lead_in(clause: str, scorer: AnswerScorer) -> str:
    """The words before the first clause's object phrase ("There is ", "A photo of "), or ""."""
    words = clause.split()
    first = scorer.first_mention_word(words)
    if first is None:
        return ""
    start = next((i for i in range(first, -1, -1) if words[i].lower() in _DETERMINERS), first)
    return " ".join(words[:start]) + " " if start else ""


# -- selecting pairs --------------------------------------------------------------------------


@dataclass
class PairStats:
    """Counts of what happened to prompts and sampled answers (the summary's ``counts``)."""

    counts: Counter = field(default_factory=Counter)
    chosen_sources: Counter = field(default_factory=Counter)
    hallucinated_nodes: Counter = field(default_factory=Counter)
    skipped_records: list[str] = field(default_factory=list)


def select_pairs(
    answers: Sequence[str],
    gt: Sequence[str] | frozenset[str],
    settings: OnPolicySettings,
    scorer: AnswerScorer,
    stats: PairStats | None = None,
) -> list[dict]:
    """Pairs from one prompt's sampled ``answers``: ``{chosen, rejected, chosen_source, ...}``.

    Empty answers are skipped and counted; a candidate pair whose chosen and rejected texts are
    identical is skipped and counted (``identical_pairs_skipped``).
    """
    stats = stats if stats is not None else PairStats()
    gt = frozenset(gt)
    counts = stats.counts
    scored = []
    for text in answers:
        counts["samples"] += 1
        if not text.strip():
            counts["empty_samples_skipped"] += 1
            continue
        answer = scorer.score(text.strip(), gt)
        counts["mentions"] += answer.mentions
        counts["hallucinated_mentions"] += len(answer.hallucinated)
        counts["recalled_objects"] += len(answer.recalled)
        counts["gt_objects"] += len(gt)
        counts["hallucinated_samples"] += not answer.is_faithful
        stats.hallucinated_nodes.update(node for _, node in answer.hallucinated)
        scored.append(answer)
    rejected_pool, seen = [], set()
    for answer in scored:
        if not answer.is_faithful and answer.text not in seen:
            seen.add(answer.text)
            rejected_pool.append(answer)
    if not rejected_pool:
        counts["prompts_without_hallucination"] += 1
        return []
    min_recalled = settings.min_chosen_recall * len(gt)
    faithful = [
        a for a in scored if a.is_faithful and a.recalled and len(a.recalled) >= min_recalled
    ]
    used: Counter = Counter()
    pairs = []
    for rejected in rejected_pool:
        if len(pairs) == settings.max_pairs_per_image:
            break
        chosen, source = None, None
        for candidate_source in settings.chosen:
            if candidate_source == "sample":
                chosen = _best_sample(faithful, rejected, used, settings.min_mention_ratio)
            else:
                chosen = _edit(rejected, gt, settings, scorer)
            if chosen is not None:
                source = candidate_source
                break
        if chosen is None:
            counts["rejected_without_faithful_chosen"] += 1
            continue
        if chosen.text == rejected.text:
            counts["identical_pairs_skipped"] += 1
            continue
        used[chosen.text] += 1
        stats.chosen_sources[source] += 1
        pairs.append(
            {
                "chosen": chosen.text,
                "rejected": rejected.text,
                "chosen_source": source,
                "hallucinated": [list(item) for item in rejected.hallucinated],
                "chosen_recalled": sorted(chosen.recalled),
                "rejected_recalled": sorted(rejected.recalled),
            }
        )
    counts["pairs"] += len(pairs)
    return pairs


def _best_sample(
    faithful: Sequence[ScoredAnswer], rejected: ScoredAnswer, used: Counter, mention_ratio: float
) -> ScoredAnswer | None:
    """The faithful sample recalling the most objects (at least the rejected one's), least reused,
    closest in length to the rejected answer."""
    candidates = [
        a
        for a in faithful
        if len(a.recalled) >= len(rejected.recalled)
        and a.mentions >= mention_ratio * rejected.mentions
    ]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda a: (-len(a.recalled), used[a.text], abs(a.words - rejected.words)),
    )


def _edit(
    rejected: ScoredAnswer, gt: frozenset[str], settings: OnPolicySettings, scorer: AnswerScorer
) -> ScoredAnswer | None:
    text = remove_hallucinations(rejected.text, gt, scorer, settings.edit_granularity)
    if not text:
        return None
    edited = scorer.score(text, gt)
    # A faithful edit keeps every correct mention; one that lost some would teach "say less".
    if not edited.is_faithful or edited.recalled != rejected.recalled:
        return None
    if edited.mentions < settings.min_mention_ratio * rejected.mentions:
        return None
    return edited


# -- prompts, sampling and the whole build ----------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    idx: Any
    question: str
    image_ref: str
    image_key: str  # "image" (base64 or path) or "image_path"
    image_id: int


def read_prompts(records: Sequence[Mapping], *, source: str, max_images: int | None = None):
    """Prompts from preference-format records (``idx, question, image|image_path`` and an image
    id: ``image_id``, ``metainfos.image_id`` or a COCO file name); ``chosen``/``rejected`` are
    ignored. A record that cannot be a prompt raises a ``DataError`` naming its ``idx``."""
    prompts = []
    for position, record in enumerate(records[:max_images] if max_images else records):
        if not isinstance(record, Mapping):
            raise DataError(f"{source} record {position}", "expected a JSON object")
        where = f"{source} record {position} (idx {record.get('idx', '?')!r})"
        if not isinstance(record.get("question"), str) or not record["question"].strip():
            raise DataError(where, "'question' must be a non-empty string")
        image_key = "image" if record.get("image") else "image_path"
        image_ref = record.get(image_key)
        if not isinstance(image_ref, str) or not image_ref:
            raise DataError(where, "no image: the record needs 'image' (base64) or 'image_path'")
        image_id = _image_id(record, "image_id")
        if image_id is None and len(image_ref) < 1000:
            image_id = _image_id({"image_id": os.path.basename(image_ref)}, "image_id")
        if image_id is None:
            raise DataError(
                where,
                "no image id for the ground truth: give 'image_id', 'metainfos.image_id' or a COCO "
                "file name",
            )
        prompts.append(
            Prompt(record.get("idx", position), record["question"], image_ref, image_key, image_id)
        )
    if not prompts:
        raise DataError(source, "no prompts to sample")
    return prompts


Generate = Callable[[Sequence[str], Sequence[Any]], list[str]]


def build_pairs(
    prompts: Sequence[Prompt],
    gt_objects: Mapping[int, Sequence[str]],
    generate: Generate,
    settings: OnPolicySettings,
    scorer: AnswerScorer,
    *,
    image_folder: str | os.PathLike | None,
    source: str = "prompts",
    samples: list[dict] | None = None,
) -> tuple[list[dict], PairStats]:
    """Sample ``samples_per_image`` answers per prompt with ``generate(questions, images)`` and
    select pairs; returns preference records (``idx`` from 0) and the counts. Every sampled
    answer is appended to ``samples`` (``prompt_idx, image_id, answer``) when it is given."""
    stats = PairStats()

    def prompt_image(prompt: Prompt, _index: int):
        where = f"{source} (idx {prompt.idx!r})"
        if prompt.image_id not in gt_objects:
            raise DataError(where, f"image id {prompt.image_id} has no ground-truth objects")
        return load_image(prompt.image_ref, image_folder, source=where)

    kept = build_each(prompts, prompt_image, settings.on_bad_record, stats.skipped_records)
    usable, images = [prompt for prompt, _ in kept], [image for _, image in kept]
    stats.counts["prompts"] = len(prompts)
    stats.counts["prompts_skipped"] = len(stats.skipped_records)
    if stats.skipped_records:
        log.warning(
            "skipped %d prompts; first: %s", len(stats.skipped_records), stats.skipped_records[0]
        )
    k = settings.samples_per_image
    answers = generate(
        [p.question for p in usable for _ in range(k)], [im for im in images for _ in range(k)]
    )
    records = []
    for i, prompt in enumerate(usable):
        gt = gt_objects[prompt.image_id]
        prompt_answers = answers[i * k : (i + 1) * k]
        if samples is not None:
            samples.extend(
                {"prompt_idx": prompt.idx, "image_id": prompt.image_id, "answer": answer}
                for answer in prompt_answers
            )
        for pair in select_pairs(prompt_answers, gt, settings, scorer, stats):
            records.append(
                {
                    "idx": len(records),
                    "question": prompt.question,
                    "chosen": pair.pop("chosen"),
                    "rejected": pair.pop("rejected"),
                    prompt.image_key: prompt.image_ref,
                    "metainfos": {"image_id": prompt.image_id, "prompt_idx": prompt.idx, **pair},
                }
            )
    return records, stats


def summarise(stats: PairStats, records: Sequence[dict], settings: OnPolicySettings) -> dict:
    counts = stats.counts
    percent = lambda a, b: round(100.0 * a / b, 2) if b else 0.0  # noqa: E731
    return {
        "pairs": len(records),
        "settings": dataclasses.asdict(settings),
        "counts": dict(sorted(counts.items())),
        "chosen_sources": dict(stats.chosen_sources),
        # CHAIR of the starting model's own samples on the prompt images (what the pairs fix).
        "samples_chair": {
            "CHAIRs": percent(
                counts["hallucinated_samples"], counts["samples"] - counts["empty_samples_skipped"]
            ),
            "CHAIRi": percent(counts["hallucinated_mentions"], counts["mentions"]),
            "Recall": percent(counts["recalled_objects"], counts["gt_objects"]),
        },
        "hallucinated_objects": dict(stats.hallucinated_nodes.most_common()),
        "skipped_records": stats.skipped_records[:20],
    }


def build_preference_pairs(
    *,
    model_dir: str | os.PathLike,
    prompts_file: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    instances: Sequence[str | os.PathLike],
    captions: Sequence[str | os.PathLike],
    generation: Mapping[str, Any],
    settings: OnPolicySettings,
    output_path: str | os.PathLike,
    summary_path: str | os.PathLike,
    samples_path: str | os.PathLike | None = None,
    analyzer: str = "auto",
) -> dict:
    """The ``build_preference_pairs`` rule: sample with the starting model, score against the
    COCO-format GT of the prompt images, write pairs (preference_train.json format), a summary
    and (``samples_path``) every sampled answer as JSONL."""
    from mllm.eval.decoding import generate_answers
    from mllm.family.registry import load_model

    prompts = read_prompts(
        read_json_records(prompts_file), source=str(prompts_file), max_images=settings.max_images
    )
    text_analyzer = get_analyzer(analyzer)
    gt_cache = build_gt_cache(instances, captions, text_analyzer, {p.image_id for p in prompts})
    gt_objects = {int(image_id): nodes for image_id, nodes in gt_cache["objects"].items()}
    loaded = load_model(model_dir)

    def generate(questions, images):
        torch.manual_seed(settings.seed)
        return generate_answers(
            loaded,
            questions,
            images,
            dict(generation),
            batch_size=settings.batch_size,
            desc="sample answers",
        )

    samples: list[dict] = []
    records, stats = build_pairs(
        prompts,
        gt_objects,
        generate,
        settings,
        AnswerScorer(text_analyzer),
        image_folder=image_folder,
        source=str(prompts_file),
        samples=samples,
    )
    if samples_path is not None:
        write_jsonl(samples_path, samples)
    if not records:
        raise DataError(
            str(prompts_file),
            f"no on-policy pairs: {dict(stats.counts)} (sample more answers per image, or allow "
            "'edit' in chosen)",
        )
    summary = {**summarise(stats, records, settings), "analyzer": text_analyzer.info}
    write_json(output_path, records, indent=1)
    write_json(summary_path, summary, indent=1)
    return summary
