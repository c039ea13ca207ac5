"""CHAIR: metrics pinned on hand-computed captions, GT cache, bad input, analyzers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm.atomic import write_json
from mllm.eval import chair
from mllm.eval.chair import ChairInputError, build_gt_cache, caption_objects, score_answers
from mllm.eval.chair_lexicon import default_lexicon
from mllm.eval.nltk_data import (
    LEXNAMES,
    WORDNET_FILES,
    NltkDataError,
    install_offline_wordnet,
    lexnames_text,
    wordnet_available,
)
from mllm.eval.text_analysis import (
    MORPHY_RULES,
    WORDNET_EXCEPTIONS,
    WORDNET_OVERRIDES,
    AnalyzerUnavailable,
    RuleLemmatizer,
    get_analyzer,
    wordnet_pos,
)

FIXTURES = Path(__file__).parent / "fixtures" / "chair"
INSTANCES, CAPTIONS, ANSWERS = (
    FIXTURES / name for name in ("instances.json", "captions.json", "answers.jsonl")
)

# GT: instances + the mentions of each image's GT caption (see the fixtures).
EXPECTED_GT = {
    "1": ["dog", "hot dog", "person"],  # 'A man walks his dog.' adds nothing new
    "2": ["toilet"],
    "3": ["elephant"],  # 'A baby elephant ...' must not add 'person'
    "4": [],  # captioned, no objects
    "5": [
        "dining table",
        "wine glass",
    ],  # 'glasses of wine' is no double word; table → dining table
    "6": [],  # listed, never annotated
}

# Per answer: tokens after merging, mentions (index, node), hallucinated indices, recalled, |GT|.
EXPECTED_CAPTIONS = [
    (12, [(1, "person"), (4, "dog"), (6, "hot dog"), (10, "cat")], [10], 3, 3),  # man → person
    (9, [(1, "cat"), (4, "cat"), (7, "dog")], [1, 4], 1, 3),  # a repeated hallucination
    (8, [(4, "toilet")], [], 1, 1),  # 'seat' dropped next to 'toilet'
    (6, [(1, "toilet"), (4, "chair")], [4], 1, 1),  # 'toilet seat' → toilet
    (6, [(1, "elephant"), (4, "elephant")], [], 1, 1),  # baby/adult elephant → elephant
    (0, [], [], 0, 0),  # empty caption
    (7, [(1, "person")], [1], 0, 0),  # image without GT objects
    (8, [(1, "wine glass"), (6, "dining table")], [], 2, 2),  # wine glasses → wine glass
    (11, [(1, "person"), (4, "bird"), (7, "bus"), (9, "knife")], [1, 4, 7, 9], 0, 2),  # plurals
]


@pytest.fixture(params=["offline", "offline-rules", "nltk"], scope="module")
def analyzer(request):
    try:
        return get_analyzer(request.param)
    except AnalyzerUnavailable as error:
        pytest.skip(f"analyzer {request.param} unavailable: {error}")


@pytest.fixture(scope="module")
def gt_cache(analyzer):
    return build_gt_cache([INSTANCES], [CAPTIONS], analyzer)


# --- metrics -------------------------------------------------------------------------------


def test_gt_cache_objects_per_image(gt_cache, analyzer):
    assert gt_cache["objects"] == EXPECTED_GT
    assert gt_cache["analyzer"]["name"] == analyzer.name
    assert gt_cache["sources"] == {"instances": ["instances.json"], "captions": ["captions.json"]}


def test_metrics_match_hand_computation(gt_cache):
    metrics = score_answers(ANSWERS, gt_cache)
    # 5 of 9 captions hallucinate; 9 of 19 mentions; 9 of 13 GT objects recalled; 67 tokens.
    assert metrics["CHAIRs"] == pytest.approx(100 * 5 / 9)
    assert metrics["CHAIRi"] == pytest.approx(100 * 9 / 19)
    assert metrics["Recall"] == pytest.approx(100 * 9 / 13)
    assert metrics["Len"] == pytest.approx(67 / 9)
    assert metrics["n_captions"] == 9
    assert metrics["counts"] == {
        "hallucinated_captions": 5,
        "mentions": 19,
        "hallucinated_mentions": 9,
        "recalled_objects": 9,
        "gt_objects": 13,
        "tokens": 67,
    }
    assert metrics["analyzer"] == metrics["gt_analyzer"] == gt_cache["analyzer"]


def test_per_caption_details(gt_cache):
    per_caption = score_answers(ANSWERS, gt_cache)["per_caption"]
    assert [c["question_id"] for c in per_caption] == list(range(9))  # idx read as question_id
    assert [c["image_id"] for c in per_caption] == [1, 1, 2, 2, 3, 4, 4, 5, 5]
    for caption, (n_tokens, mentions, hallucinated, recalled, n_gt) in zip(
        per_caption, EXPECTED_CAPTIONS, strict=True
    ):
        assert len(caption["tokens"]) == n_tokens, caption["caption"]
        assert list(zip(caption["mention_indices"], caption["node_words"], strict=True)) == mentions
        assert caption["hallucinated_indices"] == hallucinated
        assert len(caption["recalled_objects"]) == recalled
        assert len(caption["gt_objects"]) == n_gt
    first = per_caption[0]
    assert first["mentioned_words"] == ["man", "dog", "hot dog", "cat"]
    assert first["hallucinated_words"] == [["cat", "cat"]]
    assert first["tokens"][6] == "hot dogs"  # surface tokens, merged like the lemmas
    assert [per_caption[1]["tokens"][i] for i in per_caption[1]["hallucinated_indices"]] == [
        "cat",
        "cat",
    ]


def test_caption_objects_lemmas_and_double_words(analyzer):
    found = caption_objects("Two wine glasses and a passenger train near the puppies.", analyzer)
    assert found.lemmas[:4] == ["two", "wine glass", "and", "a"]
    assert found.tokens[4] == "passenger train"  # not 'passenger' → person
    assert [(word, node) for _, word, node in found.mentions] == [
        ("wine glass", "wine glass"),
        ("train", "train"),
        ("puppy", "dog"),
    ]


# --- the GT cache file ---------------------------------------------------------------------


def build_cache_cli(out, *options: str) -> None:
    """``python -m mllm.eval.chair build-cache`` on the fixture annotations, offline analyzer."""
    chair.main(
        [
            "build-cache",
            "--instances",
            str(INSTANCES),
            "--captions",
            str(CAPTIONS),
            "--analyzer",
            "offline-rules",
            *options,
            "--out",
            str(out),
        ]
    )


def test_cli_builds_cache_and_scores(tmp_path, capsys):
    cache_path, metrics_path = tmp_path / "gt.json", tmp_path / "out" / "chair.json"
    build_cache_cli(cache_path)
    assert chair.read_gt_cache(cache_path)["objects"] == EXPECTED_GT
    chair.main(
        ["score", "--answers", str(ANSWERS), "--cache", str(cache_path), "--out", str(metrics_path)]
    )
    metrics = json.loads(metrics_path.read_text())
    assert metrics["analyzer"]["name"] == "offline-rules"  # the cache's analyzer by default
    assert metrics["CHAIRs"] == pytest.approx(100 * 5 / 9)
    assert "CHAIRs    : 55.6" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["chair.json", "gt.json", "out"]


def test_cache_restricted_to_the_benchmark_images(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"image_id": 1, "question": "q"}\n{"image_id": 4, "question": "q"}\n')
    cache_path = tmp_path / "gt.json"
    build_cache_cli(cache_path, "--only-images-in", str(bench))
    assert chair.read_gt_cache(cache_path)["objects"] == {"1": EXPECTED_GT["1"], "4": []}


def test_unknown_category_is_an_error(tmp_path):
    instances = json.loads(INSTANCES.read_text())
    instances["categories"].append({"id": 99, "name": "unicorn"})
    instances["annotations"].append({"image_id": 1, "category_id": 99})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    with pytest.raises(ChairInputError, match=r"instances\.json: category 99 \('unicorn'\)"):
        build_gt_cache([path], [CAPTIONS], get_analyzer("offline-rules"))


@pytest.mark.parametrize(
    ("section", "record", "message"),
    [
        ("images", {"id": "abc"}, r"instances\.json: images record 6: 'id' must be an integer"),
        (
            "annotations",
            {"image_id": 7.5, "category_id": 1},
            r"instances\.json: annotations record \d+: 'image_id' must be an integer, got 7\.5",
        ),
    ],
)
def test_non_integer_image_id_names_file_record_and_field(tmp_path, section, record, message):
    instances = json.loads(INSTANCES.read_text())
    instances[section].append(record)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    with pytest.raises(ChairInputError, match=message):
        build_gt_cache([path], [CAPTIONS], get_analyzer("offline-rules"))


def test_not_a_cache_is_an_error(tmp_path):
    with pytest.raises(ChairInputError, match="not a CHAIR GT cache"):
        chair.read_gt_cache(INSTANCES)


# --- bad answers ---------------------------------------------------------------------------

GOOD = {"question_id": 0, "image_id": 1, "question": "q", "answer": "A dog.", "model": "m"}


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"image_id": 1, "answer": "A dog."', r"answers\.jsonl:2: malformed JSON"),
        (json.dumps({"image_id": 1, "text": "A dog."}), r"answers\.jsonl:2: missing .* 'answer'"),
        (json.dumps({"answer": "A dog."}), r"answers\.jsonl:2: missing .* 'image_id'"),
        (
            json.dumps({"image_id": "cat.png", "answer": "A dog."}),
            r"answers\.jsonl:2: .*'image_id'",
        ),
        (json.dumps({"image_id": 77, "answer": "A dog."}), r"answers\.jsonl:2: image id 77 is not"),
        ("[1, 2]", r"answers\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_answers_raise_and_write_nothing(tmp_path, second_line, message):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps(GOOD) + "\n" + second_line + "\n")
    cache = tmp_path / "gt.json"
    write_json(cache, build_gt_cache([INSTANCES], [CAPTIONS], get_analyzer("offline-rules")))
    out = tmp_path / "chair.json"
    with pytest.raises(ChairInputError, match=message) as error:
        chair.main(["score", "--answers", str(answers), "--cache", str(cache), "--out", str(out)])
    assert (error.value.path, error.value.line) == (answers, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "gt.json"]


def test_empty_answers_file_is_an_error(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n")
    with pytest.raises(ChairInputError, match="no answers"):
        chair.load_answers(answers)


def test_caption_key_is_configurable(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"image_id": 1, "text": "A cat."}) + "\n")
    loaded = chair.load_answers(answers, caption_key="text")
    assert [(a.image_id, a.caption, a.line) for a in loaded] == [(1, "A cat.", 1)]


# --- analyzers -----------------------------------------------------------------------------


def test_wordnet_pos_map():
    assert [wordnet_pos(t) for t in ["JJ", "VBG", "RB", "NNS", "DT", "."]] == list("avrnnn")


def test_offline_tokenizer_detaches_sentence_final_periods():
    tokens = [token for token, _ in get_analyzer("offline-rules").analyze("A dog. A cat, too!")]
    assert tokens == ["a", "dog", ".", "a", "cat", ",", "too", "!"]


def test_analyzer_info_names_components_and_versions():
    info = get_analyzer("offline-rules").info
    assert info["name"] == "offline-rules"
    assert {"tokenizer", "tagger", "lemmatizer"} <= info.keys()
    assert set(info["versions"]) == {"nltk", "textblob"}


def test_unknown_analyzer_name():
    with pytest.raises(ValueError, match="unknown analyzer"):
        get_analyzer("spacy")


@pytest.mark.parametrize(
    ("word", "pos", "lemma"),
    [
        ("dogs", "n", "dog"),
        ("geese", "n", "goose"),
        ("children", "n", "child"),
        ("people", "n", "people"),
        ("knives", "n", "knife"),
        ("glasses", "n", "glass"),
        ("buses", "n", "bus"),
        ("skis", "n", "ski"),
        ("benches", "n", "bench"),
        ("men", "n", "men"),  # WordNet keeps 'men' (a lemma as short as 'man'): no person mention
        ("vases", "n", "vas"),  # WordNet prefers the shorter lemma 'vas'
        ("seated", "v", "seat"),
        ("skiing", "v", "ski"),
        ("zebras", "v", "zebras"),
    ],
)
def test_rule_lemmatizer_on_coco_words(word, pos, lemma):
    assert RuleLemmatizer(default_lexicon().words()).lemmatize(word, pos) == lemma


def wordnet_candidates(words: frozenset[str]) -> set[str]:
    """Every string that WordNetLemmatizer or RuleLemmatizer can turn into one of ``words``: the
    words, their preimages under the detachment rules, and the exception forms of both (WordNet's
    own files and the tables of ``text_analysis``). Either lemmatizer returns the word itself, an
    exception lemma or a rule form, so any other string stays outside ``words`` under both."""
    from nltk.data import find

    root = Path(find("corpora/wordnet"))
    forms = set(words)
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (root / f"{pos}.exc").read_text().splitlines():
            form, *lemmas = line.split()
            if set(lemmas) & words:
                forms.add(form)
    for table in (*WORDNET_EXCEPTIONS.values(), *WORDNET_OVERRIDES.values()):
        forms.update(table.split()[::2])
    for rules in MORPHY_RULES.values():
        for word in words:
            forms.update(
                word[: len(word) - len(new)] + old for old, new in rules if word.endswith(new)
            )
    return forms


@pytest.mark.skipif(
    not wordnet_available(),
    reason="WordNet not installed (python -m mllm.eval.nltk_data install-offline)",
)
def test_rule_lemmatizer_agrees_with_wordnet_on_every_word_chair_can_match():
    """CHAIR only looks at lemmas among the lexicon's words (mentions, double words, 'seat'), so
    agreeing there for every string means offline-rules scores every caption as offline does."""
    from nltk.stem import WordNetLemmatizer

    words = default_lexicon().words()
    forms = wordnet_candidates(words)
    assert len(forms) > 3000
    rules, wordnet = RuleLemmatizer(words), WordNetLemmatizer()

    def seen(lemma: str) -> str | None:
        return lemma if lemma in words else None

    disagreements = [
        (form, pos, wordnet.lemmatize(form, pos), rules.lemmatize(form, pos))
        for form in sorted(forms)
        for pos in "nvar"
        if seen(wordnet.lemmatize(form, pos)) != seen(rules.lemmatize(form, pos))
    ]
    assert disagreements == []


def offline_pair() -> tuple:
    try:
        return get_analyzer("offline"), get_analyzer("offline-rules")
    except AnalyzerUnavailable as error:
        pytest.skip(f"offline analyzers unavailable: {error}")


def without_analyzer(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("analyzer", "gt_analyzer")}


def test_offline_analyzers_differ_only_in_the_lemmatizer():
    wordnet, rules = offline_pair()
    assert {k: v for k, v in wordnet.info.items() if k not in ("name", "lemmatizer")} == {
        k: v for k, v in rules.info.items() if k not in ("name", "lemmatizer")
    }


def test_offline_analyzers_score_the_fixtures_alike():
    scores = []
    for analyzer in offline_pair():
        cache = build_gt_cache([INSTANCES], [CAPTIONS], analyzer)
        scores.append((without_analyzer(cache), without_analyzer(score_answers(ANSWERS, cache))))
    assert scores[0] == scores[1]


def test_nltk_reference_analyzer_calls_word_tokenize_pos_tag_and_wordnet(monkeypatch):
    import nltk

    from mllm.eval import text_analysis

    monkeypatch.setattr(text_analysis, "missing_reference_resources", lambda: [])
    monkeypatch.setattr(
        text_analysis, "_wordnet_lemmatizer", lambda: lambda word, pos: f"{word}/{pos}"
    )
    monkeypatch.setattr(nltk, "word_tokenize", lambda text: text.split())
    monkeypatch.setattr(
        nltk, "pos_tag", lambda tokens: [(t, "VBZ" if t == "runs" else "NN") for t in tokens]
    )
    reference = text_analysis._build("nltk")
    assert reference.analyze("A Dog runs") == [("a", "a/n"), ("dog", "dog/n"), ("runs", "runs/v")]
    assert reference.info["name"] == "nltk"


def test_nltk_reference_analyzer_reports_what_is_missing():
    try:
        get_analyzer("nltk")
    except AnalyzerUnavailable as error:
        assert "mllm.eval.nltk_data download" in str(error)
    else:
        pytest.skip("reference nltk data installed")


# --- offline WordNet install ---------------------------------------------------------------


def test_lexnames_file():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[6] == "06\tnoun.artifact\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


def test_install_offline_wordnet_is_idempotent(tmp_path):
    source = tmp_path / "debian"
    source.mkdir()
    for name in WORDNET_FILES:
        (source / name).write_text(name)
    wordnet_dir = install_offline_wordnet(tmp_path / "nltk_data", source)
    assert wordnet_dir == tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert sorted(p.name for p in wordnet_dir.iterdir()) == sorted([*WORDNET_FILES, "lexnames"])
    assert (wordnet_dir / "index.noun").read_text() == "index.noun"
    (source / "index.noun").unlink()  # a complete install is not redone
    assert install_offline_wordnet(tmp_path / "nltk_data", source) == wordnet_dir
    assert sorted(p.name for p in wordnet_dir.parent.iterdir()) == ["wordnet"]


def test_install_offline_wordnet_says_what_to_apt_get(tmp_path):
    with pytest.raises(NltkDataError, match="apt-get install .*wordnet-base wordnet-sense-index"):
        install_offline_wordnet(tmp_path / "nltk_data", tmp_path / "nowhere")
    assert not (tmp_path / "nltk_data" / "corpora" / "wordnet").exists()
