"""The workflow layer's library (mllm.workflow): the experiment plan, the world's table of files,
code inputs derived from imports, and the import of real files into the world."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from mllm.data.errors import DataError
from mllm.data.world_import import import_world_file
from mllm.workflow import image_manifest
from mllm.workflow.code_inputs import code_inputs
from mllm.workflow.image_manifest import ManifestInputs, refresh_manifest, write_manifest
from mllm.workflow.job_spec import job_spec
from mllm.workflow.plan import ConfigError, Plan, section
from mllm.workflow.world import (
    WORLD_DIR,
    WORLD_FILES,
    RealWorld,
    WorldImages,
    demo_images,
    rec_file,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
TINY = yaml.safe_load((REPO / "tests" / "workflow" / "config.yaml").read_text())


# --- the plan ---------------------------------------------------------------------------------


def test_the_demo_plan_names_every_stage_and_run():
    plan = Plan(DEMO)
    runs = ["dpo_beta0.1", "dpo_nll_beta0.1", "nca_beta0.1"]
    assert plan.stages == ["base", "sft", "sft_full", "grounding", *runs]
    assert plan.trained_stages == ["sft", "sft_full", "grounding", *runs]
    assert plan.trained_sft_runs == ["sft", "sft_full"]
    assert len(plan.decodings) == 3 + 6  # base x 3 strategies, every trained stage x sampling
    assert len(plan.grounding_evaluations) == 2 * 8
    # one grounding job per stage scores all 8 splits; their files, in the same order
    assert plan.grounding_evaluations[:8] == [("base", *split) for split in plan.grounding_splits]
    assert plan.grounding_split_files[0] == rec_file(plan.rec_file_of(*plan.grounding_splits[0]))
    assert len(set(plan.grounding_split_files)) == 8
    assert plan.model_dir("base") == "resources/models/base"
    assert plan.model_dir("sft") == "results/models/sft"
    assert plan.start_of("nca_beta0.1") == "base"


def test_the_model_section_is_checked_per_world():
    from mllm.family.own import OwnFamily
    from mllm.workflow.plan import DEMO_FAMILY

    assert OwnFamily.name == DEMO_FAMILY  # the plan names the family without importing torch
    Plan({**TINY, "model": {"family": DEMO_FAMILY}})
    with pytest.raises(ConfigError, match="config model.family: the demo world builds a 'mllm'"):
        Plan({**TINY, "model": {"family": "qwen2_5_vl"}})
    exercise = yaml.safe_load((REPO / "config" / "experiments" / "exercise.yaml").read_text())
    real = {**TINY, "world": "real", "model": exercise["model"]}
    Plan(real)
    with pytest.raises(ConfigError, match="config model.source: the real world needs"):
        Plan({**real, "model": {"family": "mllm"}})


def test_a_preference_run_maps_to_its_settings_through_the_table_not_its_name():
    config = {**TINY, "preference": {**TINY["preference"], "use_average_logp": True}}
    config["preference"]["losses"] = {"my_loss": {"loss_type": "dpo", "nll_weight": 0.5}}
    plan = Plan(config)
    run = plan.preference_runs["my_loss_beta0.5"]
    assert (run.loss, run.beta) == ("my_loss", 0.5)
    # only what the config gives: the library's settings class owns every default
    assert run.settings == {
        "beta": 0.5,
        "loss_type": "dpo",
        "nll_weight": 0.5,
        "use_average_logp": True,
    }
    assert plan.preference_losses["my_loss_beta0.1"] == {
        "loss_type": "dpo",
        "nll_weight": 0.5,
        "beta": 0.1,
    }


def test_a_loss_of_its_own_log_p_mode_overrides_the_shared_one():
    config = {**TINY, "preference": {**TINY["preference"], "use_average_logp": False}}
    config["preference"]["losses"] = {
        "dpo": {"loss_type": "dpo"},
        "nca": {"loss_type": "nca", "use_average_logp": True},
    }
    plan = Plan(config)
    assert plan.preference_runs["dpo_beta0.5"].settings["use_average_logp"] is False
    assert plan.preference_runs["nca_beta0.5"].settings["use_average_logp"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(stages=["base", "nope"]), "config stages: 'nope'"),
        (lambda c: c["sft"]["sft"].update(start="other"), "config sft.sft.start"),
        (lambda c: c["grounding"].update(start="other"), "config grounding.start"),
        (lambda c: c["preference"].update(start="other"), "config preference.start"),
        (lambda c: c["grounding"].update(eval_stages=["x"]), "grounding.eval_stages: 'x'"),
        (
            lambda c: c["grounding"].update(splits={"refcoco": {"testA": "a.jsonl"}}),
            "`val` split",
        ),
        (
            lambda c: c["preference"].update(pairs="on_policy", on_policy={"strategy": "top3"}),
            "preference.on_policy.strategy: 'top3'",
        ),
    ],
)
def test_inconsistent_configs_fail_naming_the_key(change, message):
    config = json.loads(json.dumps(TINY))
    change(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Plan(config)


def test_sections_are_canonical_and_absent_keys_stay_absent():
    config = {"a": {"z": 1, "b": {"y": 2, "c": 3}}}
    assert list(section(config, "a")) == ["b", "z"]
    assert list(section(config, "a", "b")) == ["c", "y"]
    assert section(config, "a", "missing") is None
    assert section(config, "a", "missing", default={}) == {}


def test_trained_sft_runs_follow_starts_transitively():
    config = json.loads(json.dumps(DEMO))
    config["sft"]["second"] = {"start": "sft", "training": {}}
    config["preference"]["start"] = "second"
    config["stages"] = ["base"]
    assert Plan(config).trained_sft_runs == ["second", "sft"]


# --- the world's table ------------------------------------------------------------------------


def test_the_world_table_lives_in_one_folder_with_the_exercise_file_names():
    assert all(path.startswith(f"{WORLD_DIR}/") for path in WORLD_FILES.values())
    assert WORLD_FILES["benchmark"].endswith("objhal_bench.jsonl")
    assert (
        rec_file("REC_refcoco_unc_val.jsonl") == f"{WORLD_DIR}/grounding/REC_refcoco_unc_val.jsonl"
    )


def test_the_real_world_imports_every_file_its_config_names():
    real = {"sft_train": "data/train.json", "sft_images": "data", "preference": "p.json"}
    world = RealWorld(real, ["REC_refcoco_unc_val.jsonl"], train_annotations=True)
    assert set(world.sources) == {
        WORLD_FILES["benchmark"],
        WORLD_FILES["instances"],
        WORLD_FILES["captions"],
        WORLD_FILES["train_instances"],
        WORLD_FILES["train_captions"],
        WORLD_FILES["sft_train"],
        WORLD_FILES["preference"],
        rec_file("REC_refcoco_unc_val.jsonl"),
    }
    sft = world.sources[WORLD_FILES["sft_train"]]
    assert (sft.path, sft.kind, sft.image_folder) == ("data/train.json", "records", "data")
    assert world.downloads("copy") == [
        "resources/downloads/coco/annotations/captions_train2014.json",
        "resources/downloads/coco/annotations/captions_val2014.json",
        "resources/downloads/coco/annotations/instances_train2014.json",
        "resources/downloads/coco/annotations/instances_val2014.json",
    ]

    class Wildcards:
        path = "grounding/REC_refcoco_unc_val.jsonl"

    assert world.images(Wildcards) == ["resources/downloads/coco/train2014"]
    assert RealWorld({}, [], train_annotations=False).downloads("copy") == [
        "resources/downloads/coco/annotations/captions_val2014.json",
        "resources/downloads/coco/annotations/instances_val2014.json",
    ]


def test_each_world_file_reads_the_image_folder_it_names():
    demo = demo_images(["REC_refcoco_unc_val.jsonl"])
    assert demo.names_of([WORLD_FILES["benchmark"]]) == ["val"]
    assert demo.names_of([WORLD_FILES["sft_train"], WORLD_FILES["sft_test"]]) == ["test", "train"]
    assert demo.names_of([rec_file("REC_refcoco_unc_val.jsonl")]) == ["test"]
    assert demo.folders["val"] == f"{WORLD_DIR}/images/val"
    assert demo.manifest("val") == "results/image_manifests/val.json"
    real = {"sft_train": "data/train.json", "sft_images": "data", "benchmark_images": None}
    world = RealWorld(real, ["REC_refcoco_unc_val.jsonl"], train_annotations=False).image_folders
    assert world.folders == {
        "sft_images": "data",
        "coco_train_images": "resources/downloads/coco/train2014",
    }
    assert world.names_of([WORLD_FILES["benchmark"]]) == []  # base64 images: no folder
    assert world.made_by == {"coco_train_images": "resources/downloads/coco/train2014"}
    assert world.maker_of("coco_train_images") == ["resources/downloads/coco/train2014"]
    assert world.maker_of("sft_images") == []  # a folder the config gives


# --- image manifests --------------------------------------------------------------------------


def test_a_manifest_is_rewritten_only_when_an_image_changes(tmp_path):
    folder = tmp_path / "images"
    (folder / "val").mkdir(parents=True)
    (folder / "val" / "a.png").write_bytes(b"first")
    (folder / "b.png").write_bytes(b"second")
    manifest = tmp_path / "manifest.json"
    assert write_manifest(folder, manifest)
    listed = json.loads(manifest.read_text())["files"]
    assert [name for name, _, _ in listed] == ["b.png", "val/a.png"]
    written = manifest.stat().st_mtime_ns

    os.utime(folder / "b.png", ns=(1, 1))  # touched: same bytes
    assert not refresh_manifest(folder, manifest)
    assert manifest.stat().st_mtime_ns == written
    (folder / "b.png").write_bytes(b"SECOND")  # same size, new content
    assert refresh_manifest(folder, manifest)
    assert json.loads(manifest.read_text())["files"][0][2] != listed[0][2]


def test_a_manifest_hashes_only_files_whose_size_or_mtime_changed(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(name.encode())
    manifest = tmp_path / "manifest.json"
    write_manifest(folder, manifest)
    hashed = []
    monkeypatch.setattr(
        image_manifest, "file_sha256", lambda path: hashed.append(Path(path).name) or "x"
    )
    (folder / "b.png").write_bytes(b"bigger")
    write_manifest(folder, manifest)
    assert hashed == ["b.png"]


def test_rule_inputs_refresh_each_manifest_once_per_reading_and_only_on_the_head(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "a.png").write_bytes(b"first")
    images = WorldImages(folders={"val": "val"}, read_by={"bench.jsonl": "val"}, made_by={})
    manifest = Path(images.manifest("val"))
    write_manifest("val", manifest)
    listed = manifest.read_text()

    (tmp_path / "val" / "a.png").write_bytes(b"other")  # replaced in place
    assert ManifestInputs(images, refresh=False).of(["bench.jsonl"]) == [str(manifest)]
    assert manifest.read_text() == listed  # a cluster node's reading leaves it to the head
    head = ManifestInputs(images, refresh=True)
    assert head.of(["bench.jsonl", "no_images.json"]) == [str(manifest)]
    refreshed = manifest.read_text()
    assert refreshed != listed
    (tmp_path / "val" / "a.png").write_bytes(b"third")
    head.of(["bench.jsonl"])  # the same reading: hashed once, not for every rule asking
    assert manifest.read_text() == refreshed
    assert head.of(["no_images.json"]) == []


def test_refreshing_leaves_a_manifest_not_yet_written_to_its_rule(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    assert not refresh_manifest(folder, tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="missing"):
        write_manifest(tmp_path / "missing", tmp_path / "manifest.json")


# --- code inputs ------------------------------------------------------------------------------


def write_package(root: Path) -> None:
    files = {
        "mllm/__init__.py": "",
        "mllm/a/__init__.py": "",
        "mllm/a/first.py": "from .second import x\nimport json\n",
        "mllm/a/second.py": "def f():\n    from mllm.b import lazy  # a lazy import counts too\n",
        "mllm/b/__init__.py": "",
        "mllm/b/lazy.py": "from mllm.b.helpers import VALUE\n",
        "mllm/b/helpers.py": "VALUE = 1\n",
        "mllm/b/unused.py": "",
        "scripts/job.py": "from mllm.a import first\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_job_spec_renders_wildcards_and_functions_and_drops_absent_keys():
    spec = job_spec(
        lr=0.1, run="runs/{run}", steps=lambda wildcards: len(wildcards["run"]), seed=None
    )
    assert json.loads(spec({"run": "sft"})) == {"lr": 0.1, "run": "runs/sft", "steps": 3}
    assert spec({"run": "sft"}) == json.dumps(json.loads(spec({"run": "sft"})), sort_keys=True)


def test_code_inputs_are_the_transitive_library_imports_of_the_entry_point(tmp_path):
    write_package(tmp_path)
    names = {str(Path(p).relative_to(tmp_path)) for p in code_inputs("scripts/job.py", tmp_path)}
    assert names == {
        "mllm/__init__.py",
        "mllm/a/__init__.py",
        "mllm/a/first.py",
        "mllm/a/second.py",
        "mllm/b/__init__.py",
        "mllm/b/lazy.py",
        "mllm/b/helpers.py",
    }
    module = {str(Path(p).relative_to(tmp_path)) for p in code_inputs("mllm.b.lazy", tmp_path)}
    assert module == {
        "mllm/__init__.py",
        "mllm/b/__init__.py",
        "mllm/b/lazy.py",
        "mllm/b/helpers.py",
    }


def test_a_missing_entry_point_fails_naming_it(tmp_path):
    write_package(tmp_path)
    with pytest.raises(FileNotFoundError, match="scripts/none.py"):
        code_inputs("scripts/none.py", tmp_path)
    with pytest.raises(ModuleNotFoundError, match="mllm.none"):
        code_inputs("mllm.none", tmp_path)


def test_the_real_library_keeps_stages_apart():
    """What the rerun tests rely on: CHAIR, the preference losses and the report are each
    imported only by the entry points that use them."""

    def closure(entry):
        return {str(Path(p).relative_to(REPO)) for p in code_inputs(entry, REPO)}

    assert "mllm/eval/chair.py" in closure("workflow_scripts/chair.py")
    assert "mllm/eval/chair.py" not in closure("workflow_scripts/render_report.py")
    assert "mllm/preference/losses.py" in closure("mllm.preference.train")
    assert "mllm/preference/losses.py" not in closure("mllm.train.sft")
    assert "mllm/preference/losses.py" not in closure("mllm.preference.reference")
    assert not any(p.startswith("mllm/report/") for p in closure("workflow_scripts/decode.py"))


# --- importing real files into the world ------------------------------------------------------


def test_import_reroots_relative_image_paths_and_keeps_base64_and_absolute_ones(tmp_path):
    source = tmp_path / "data" / "train.json"
    source.parent.mkdir()
    absolute = str(tmp_path / "abs.png")
    records = [
        {"id": 0, "image": "images/a.png", "conversations": []},
        {"id": 1, "image": "x" * 2000, "conversations": []},
        {"id": 2, "image_path": absolute},
    ]
    source.write_text(json.dumps(records))
    output = tmp_path / "world" / "sft" / "train.json"
    provenance = import_world_file(
        source,
        output,
        kind="records",
        image_folder=tmp_path / "data",
        image_root=tmp_path / "world",
    )
    rows = json.loads(output.read_text())
    assert rows[0]["image"] == "../data/images/a.png"
    assert (tmp_path / "world" / rows[0]["image"]).resolve() == tmp_path / "data/images/a.png"
    assert rows[1]["image"] == "x" * 2000 and rows[2]["image_path"] == absolute
    assert provenance["records"] == 3 and provenance["rerooted_image_refs"] == 1
    assert len(provenance["sha256"]) == 64


def import_jsonl(source: Path, *, image_folder: Path | None) -> dict:
    """Import a JSON-lines file into out.jsonl beside it, with its folder as the image root."""
    return import_world_file(
        source,
        source.parent / "out.jsonl",
        kind="jsonl",
        image_folder=image_folder,
        image_root=source.parent,
    )


def test_import_of_json_lines_names_the_line_of_a_bad_record(tmp_path):
    source = tmp_path / "rec.jsonl"
    source.write_text('{"img_path": "a.jpg", "bbox": [1, 2, 3, 4]}\n\n{"img_path": null}\n')
    with pytest.raises(DataError, match=r"rec.jsonl:3: field 'img_path'"):
        import_jsonl(source, image_folder=tmp_path)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_relative_image_path_without_an_image_folder_is_refused(tmp_path):
    source = tmp_path / "bench.jsonl"
    source.write_text('{"image": "val/1.jpg", "question": "q", "image_id": 1}\n')
    with pytest.raises(DataError, match="no image folder is configured"):
        import_jsonl(source, image_folder=None)
