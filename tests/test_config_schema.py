"""config/schema.yaml and the settings dataclasses name the same fields: a field added to one side
only would either be rejected by validation or never reach the library. The dataclasses' defaults
must also be valid values of the schema (the schema's types are the dataclasses' types)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mllm.data.errors import BAD_RECORD_POLICIES
from mllm.demo.config import DemoWorldConfig
from mllm.demo.tokenizer import write_tokenizer
from mllm.demo.vision_warmup import WarmupSettings
from mllm.model.lora import LoraSettings
from mllm.preference.on_policy import OnPolicySettings
from mllm.preference.settings import PreferenceSettings
from mllm.train.settings import TrainSettings

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text()
)
PREFERENCE = SCHEMA["properties"]["preference"]["properties"]
# Not settings: keys of preference.on_policy the workflow reads itself (the decoding preset to
# sample with; the prompts and ground-truth files of the real world) and does not pass on.
ON_POLICY_WORKFLOW_KEYS = {"strategy", "prompts", "instances", "captions"}
# TrainSettings.extra is not a config key (TrainSettings.from_dict rejects it).
TRAIN_INTERNAL = {"extra"}


def fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def as_json(settings) -> dict:
    """The dataclass as config data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


SECTIONS = {
    "training": (SCHEMA["$defs"]["training"], TrainSettings, TRAIN_INTERNAL),
    "training.lora": (SCHEMA["$defs"]["training"]["properties"]["lora"], LoraSettings, set()),
    "vision_warmup": (SCHEMA["properties"]["vision_warmup"], WarmupSettings, set()),
    "demo_world": (SCHEMA["properties"]["demo_world"], DemoWorldConfig, set()),
}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_section_lists_the_dataclass_fields_and_accepts_its_defaults(section):
    schema, cls, internal = SECTIONS[section]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == fields(cls) - internal
    defaults = {k: v for k, v in as_json(cls()).items() if k not in internal}
    jsonschema.validate(defaults, schema)


def test_tokenizer_section_is_the_keyword_arguments_of_write_tokenizer():
    parameters = inspect.signature(write_tokenizer).parameters.values()
    keywords = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert set(SCHEMA["properties"]["tokenizer"]["properties"]) == keywords


def test_on_policy_section_is_the_settings_plus_the_workflow_keys():
    schema = PREFERENCE["on_policy"]
    assert schema["additionalProperties"] is False
    assert fields(OnPolicySettings) <= set(schema["properties"])
    assert set(schema["properties"]) - fields(OnPolicySettings) <= ON_POLICY_WORKFLOW_KEYS
    jsonschema.validate(as_json(OnPolicySettings()), schema)


def test_preference_settings_come_from_the_runs_and_the_section():
    """A run's loss (``losses.<name>``) and β (``betas``), the rest from ``preference``; the
    log-p mode is shared with a loss's own value winning (Task 3: DPO on sums, NCA on means)."""
    per_loss = set(PREFERENCE["losses"]["additionalProperties"]["properties"])
    shared = fields(PreferenceSettings) - (per_loss - {"use_average_logp"}) - {"beta"}
    assert per_loss | {"beta"} | shared == fields(PreferenceSettings)
    assert shared == {"use_average_logp", "on_bad_record"} and shared <= set(PREFERENCE)
    assert per_loss & shared == {"use_average_logp"}


def test_every_bad_record_policy_of_the_schema_is_the_library_vocabulary():
    def policies(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "on_bad_record":
                    yield tuple(value["enum"])
                else:
                    yield from policies(value)
        elif isinstance(node, list):
            for value in node:
                yield from policies(value)

    found = list(policies(SCHEMA))
    assert len(found) >= 3  # preference, preference.on_policy, grounding
    assert set(found) == {BAD_RECORD_POLICIES}


def test_a_demo_world_value_of_the_wrong_type_fails_validation_naming_the_key():
    with pytest.raises(jsonschema.ValidationError) as failure:
        jsonschema.validate({"n_train": "many"}, SCHEMA["properties"]["demo_world"])
    assert list(failure.value.path) == ["n_train"]


def test_the_real_world_takes_its_preference_pairs_from_one_source():
    real = SCHEMA["properties"]["real"]
    jsonschema.validate({"preference": "p.json"}, real)
    jsonschema.validate({"preference_parquet": {"shards": [0], "max_rows": 10}}, real)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"preference": "p.json", "preference_parquet": {}}, real)
    with pytest.raises(jsonschema.ValidationError):  # lmms-lab publishes these three only
        jsonschema.validate({"rec_parquet": {"flickr30k": {}}}, real)
