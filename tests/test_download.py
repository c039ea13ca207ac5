"""mllm.download against local files, file:// URLs and an HTTP server on 127.0.0.1: never the network."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mllm.download import fetch, model
from mllm.download.benchmark import fetch_benchmark
from mllm.download.coco import fetch_coco_annotations
from mllm.download.errors import FetchError
from mllm.download.files import fetch_file
from mllm.download.images import fetch_image_folder
from mllm.download.model import snapshot_model
from mllm.download.rec import fetch_rec_files
from mllm.download.sources import KNOWN_SOURCES, SHIKRA_REC_EVAL_FILES
from mllm.workflow.plan import ConfigError

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = b"0123456789" * 1000


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Hidden scratch files or folders a failed fetch must not leave behind."""
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


@pytest.fixture(autouse=True)
def no_retry_waits(monkeypatch):
    monkeypatch.setattr(fetch, "RETRY_DELAYS_SECONDS", (0.0, 0.0, 0.0))


# --- a local HTTP server ---------------------------------------------------------------------


class Routes(dict):
    """path -> (body, content type, behaviour); ``hits`` counts requests per path."""

    def __init__(self):
        super().__init__()
        self.hits: dict[str, int] = {}


def make_handler(routes: Routes):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            routes.hits[self.path] = routes.hits.get(self.path, 0) + 1
            if self.path not in routes:
                self.send_error(404)
                return
            body, content_type, behaviour = routes[self.path]
            if behaviour == "flaky" and routes.hits[self.path] <= 2:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if behaviour == "chunked_truncate":  # one chunk of half the body, no final chunk
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[: len(body) // 2]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                self.close_connection = True
                return
            if behaviour in ("no_length", "no_length_truncate"):
                self.end_headers()  # no length: the body ends when the connection closes
                self.wfile.write(body if behaviour == "no_length" else body[: len(body) // 2])
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if behaviour == "truncate":  # promise the whole body, send half, hang up
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def server():
    routes = Routes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(routes))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def serve(
        path: str, body: bytes, content_type="application/octet-stream", behaviour="ok"
    ) -> str:
        routes[path] = (body, content_type, behaviour)
        return base + path

    yield SimpleNamespace(serve=serve, base=base, hits=routes.hits)
    httpd.shutdown()
    httpd.server_close()


# --- fetch_file --------------------------------------------------------------------------------


def test_fetch_file_local_path_verifies_sha256(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    provenance = fetch_file(str(source), dest, sha256=sha256_of(PAYLOAD).upper())
    assert dest.read_bytes() == PAYLOAD
    assert provenance == {
        "source": str(source),
        "sha256": sha256_of(PAYLOAD),
        "bytes": len(PAYLOAD),
        "size_verified": True,
        "member": None,
    }
    assert leftovers(dest.parent) == []


def test_fetch_file_file_url(tmp_path):
    source = tmp_path / "with space.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "file.bin"
    fetch_file(source.as_uri(), dest)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_file_sha256_mismatch_names_source_and_digests(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    wrong = "0" * 64
    with pytest.raises(FetchError) as caught:
        fetch_file(str(source), dest, sha256=wrong)
    message = str(caught.value)
    assert str(source) in message and wrong in message and sha256_of(PAYLOAD) in message
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_fetch_file_missing_local_file(tmp_path):
    with pytest.raises(FetchError, match="no such file"):
        fetch_file(str(tmp_path / "absent.bin"), tmp_path / "file.bin")


def test_fetch_file_unsupported_scheme(tmp_path):
    with pytest.raises(FetchError, match="unsupported scheme 's3'"):
        fetch_file("s3://bucket/key", tmp_path / "file.bin")


def test_fetch_file_http_with_sha256(server, tmp_path):
    url = server.serve("/data/file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    provenance = fetch_file(url, dest, sha256=sha256_of(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert provenance["source"] == url and provenance["bytes"] == len(PAYLOAD)


def test_fetch_file_http_404_fails_at_once_naming_url(server, tmp_path):
    url = f"{server.base}/missing.zip"
    with pytest.raises(FetchError, match=re.escape(url) + ".*HTTP 404"):
        fetch_file(url, tmp_path / "file.bin")
    assert server.hits["/missing.zip"] == 1
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_http_retries_transient_errors(server, tmp_path):
    url = server.serve("/flaky.bin", PAYLOAD, behaviour="flaky")
    dest = tmp_path / "file.bin"
    fetch_file(url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/flaky.bin"] == 3


def test_fetch_file_http_connection_closed_early_leaves_nothing(server, tmp_path):
    url = server.serve("/cut.bin", PAYLOAD, behaviour="truncate")
    dest = tmp_path / "file.bin"
    with pytest.raises(FetchError, match=r"still failing after 4 attempts.*5000 of 10000 bytes"):
        fetch_file(url, dest)
    assert server.hits["/cut.bin"] == 4
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_http_chunked_body_cut_short_fails(server, tmp_path):
    url = server.serve("/chunked.bin", PAYLOAD, behaviour="chunked_truncate")
    with pytest.raises(FetchError, match="still failing after 4 attempts"):
        fetch_file(url, tmp_path / "file.bin")
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_http_without_length_says_the_size_is_unverified(server, tmp_path, caplog):
    url = server.serve("/nolength.bin", PAYLOAD, behaviour="no_length_truncate")
    with caplog.at_level(logging.WARNING, logger="mllm.download.fetch"):
        provenance = fetch_file(url, tmp_path / "file.bin")
    half = PAYLOAD[: len(PAYLOAD) // 2]  # indistinguishable from a whole file of that size
    assert provenance["size_verified"] is False and provenance["bytes"] == len(half)
    assert "UNVERIFIED SIZE" in caplog.text and sha256_of(half) in caplog.text
    with pytest.raises(FetchError, match="sha256 mismatch"):  # a pinned digest catches it
        fetch_file(url, tmp_path / "pinned.bin", sha256=sha256_of(PAYLOAD))
    whole = server.serve("/whole.bin", PAYLOAD, behaviour="no_length")
    provenance = fetch_file(whole, tmp_path / "whole.bin", sha256=sha256_of(PAYLOAD))
    assert provenance["size_verified"] is True


def test_fetch_file_http_with_length_has_a_verified_size(server, tmp_path):
    url = server.serve("/file.bin", PAYLOAD)
    assert fetch_file(url, tmp_path / "file.bin")["size_verified"] is True


def test_a_download_removes_the_scratch_a_killed_one_left(tmp_path, caplog):
    source = tmp_path / "train2014.zip"
    source.write_bytes(zip_bytes({"train2014/a.jpg": b"A"}))
    downloads = tmp_path / "coco"
    downloads.mkdir()
    stale_folder = downloads / ".train2014.k1ll3d_x"  # scratch_dir: the half-fetched archive
    stale_folder.mkdir()
    (stale_folder / "archive.zip").write_bytes(b"partial")
    stale_unpack = downloads / ".train2014.abcd1234.tmp"  # atomic_directory: half unpacked
    stale_unpack.mkdir()
    others = [
        downloads / ".train2014.provenance.json.abcd1234.tmp",
        downloads / ".val2014.abcd1234",
    ]
    for other in others:  # another output's scratch, or not a scratch name: not ours to remove
        other.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="mllm.atomic"):
        fetch_image_folder(source.as_uri(), downloads / "train2014")
    assert sorted(path.name for path in downloads.iterdir()) == sorted(
        ["train2014", *(other.name for other in others)]
    )
    assert f"removing {stale_folder}" in caplog.text and f"removing {stale_unpack}" in caplog.text


def test_fetch_file_http_refuses_html_pages(server, tmp_path):
    url = server.serve("/drive", b"<html>confirm download</html>", content_type="text/html")
    with pytest.raises(FetchError, match="HTML page"):
        fetch_file(url, tmp_path / "objhal_bench.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_extracts_zip_member_over_http(server, tmp_path):
    archive = zip_bytes(
        {"annotations/captions_val2014.json": b'{"images": []}', "annotations/other.json": b"{}"}
    )
    url = server.serve("/annotations_trainval2014.zip", archive, content_type="application/zip")
    dest = tmp_path / "captions_val2014.json"
    provenance = fetch_file(
        url, dest, sha256=sha256_of(archive), member="annotations/captions_val2014.json"
    )
    assert dest.read_bytes() == b'{"images": []}'
    assert provenance["sha256"] == sha256_of(archive)  # the digest describes the archive
    assert provenance["member"] == "annotations/captions_val2014.json"
    assert leftovers(tmp_path) == []


def test_fetch_file_matches_member_by_file_name(tmp_path):
    source = tmp_path / "shikra_data.zip"
    source.write_bytes(zip_bytes({"shikra_data/REC_refcoco_unc_val.jsonl": b"{}\n"}))
    dest = tmp_path / "out" / "REC_refcoco_unc_val.jsonl"
    fetch_file(str(source), dest, member="REC_refcoco_unc_val.jsonl")
    assert dest.read_bytes() == b"{}\n"


def test_fetch_file_missing_member_or_not_a_zip(tmp_path):
    source = tmp_path / "archive.zip"
    source.write_bytes(zip_bytes({"a.json": b"{}"}))
    dest = tmp_path / "out" / "b.json"
    with pytest.raises(FetchError, match="no single member 'b.json'"):
        fetch_file(str(source), dest, member="b.json")
    source.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="not a readable zip archive"):
        fetch_file(str(source), dest, member="a.json")
    assert list((tmp_path / "out").iterdir()) == []


# --- fetch_coco_annotations --------------------------------------------------------------------

SPLITS = ("train2014", "val2014")


def coco_files() -> dict[str, bytes]:
    """Minimal COCO captions and instances files for both splits."""
    files = {}
    for split in SPLITS:
        images = [{"id": 1, "file_name": f"COCO_{split}_000000000001.jpg"}]
        files[f"captions_{split}.json"] = json.dumps(
            {"images": images, "annotations": [{"image_id": 1, "caption": "A dog."}]}
        ).encode()
        files[f"instances_{split}.json"] = json.dumps(
            {
                "images": images,
                "annotations": [{"image_id": 1, "category_id": 18}],
                "categories": [{"id": 18, "name": "dog"}],
            }
        ).encode()
    return files


def coco_zip(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "annotations_trainval2014.zip"
    path.write_bytes(zip_bytes({f"annotations/{name}": data for name, data in files.items()}))
    return path


def test_coco_from_zip_over_http_downloads_once(server, tmp_path):
    files = coco_files()
    archive = coco_zip(tmp_path, files).read_bytes()
    url = server.serve(
        "/annotations/annotations_trainval2014.zip", archive, content_type="application/zip"
    )
    dest_dir = tmp_path / "coco"
    provenance = fetch_coco_annotations(url, dest_dir, sha256=sha256_of(archive))
    assert sorted(path.name for path in dest_dir.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (dest_dir / name).read_bytes() == data
        assert provenance["files"][name] == {"sha256": sha256_of(data), "bytes": len(data)}
    assert provenance["sha256"] == sha256_of(archive)
    assert server.hits["/annotations/annotations_trainval2014.zip"] == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "annotations_subfolder"])
def test_coco_from_local_folder(tmp_path, nested):
    folder = tmp_path / "downloaded" / ("annotations" if nested else "")
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in coco_files().items():
        (folder / name).write_bytes(data)
    dest_dir = tmp_path / "coco"
    provenance = fetch_coco_annotations(str(tmp_path / "downloaded"), dest_dir, splits=("val2014",))
    assert sorted(path.name for path in dest_dir.iterdir()) == [
        "captions_val2014.json",
        "instances_val2014.json",
    ]
    assert provenance["sha256"] is None and set(provenance["files"]) == {
        "captions_val2014.json",
        "instances_val2014.json",
    }


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("instances_val2014.json", b'{"images": [], "annotations": []}', "no categories list"),
        ("captions_train2014.json", b'{"images": [], "annot', "not valid JSON"),
        ("captions_val2014.json", b"[1, 2]", "top level is not an object"),
    ],
    ids=["no_categories", "truncated", "not_a_dict"],
)
def test_coco_broken_file_is_named_and_nothing_written(tmp_path, name, data, problem):
    archive = coco_zip(tmp_path, {**coco_files(), name: data})
    dest_dir = tmp_path / "coco"
    with pytest.raises(FetchError, match=re.escape(name) + ".*" + problem):
        fetch_coco_annotations(str(archive), dest_dir)
    assert not dest_dir.exists()
    assert leftovers(tmp_path) == []


def test_coco_missing_file(tmp_path):
    files = coco_files()
    del files["instances_train2014.json"]
    with pytest.raises(FetchError, match="instances_train2014.json"):
        fetch_coco_annotations(str(coco_zip(tmp_path, files)), tmp_path / "coco")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(FetchError, match="holds no captions_train2014.json"):
        fetch_coco_annotations(str(folder), tmp_path / "coco")


def test_coco_folder_with_sha256_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        fetch_coco_annotations(str(tmp_path), tmp_path / "coco", sha256="0" * 64)


# --- fetch_benchmark ---------------------------------------------------------------------------


def bench_line(**overrides) -> str:
    record = {
        "image": "aGVsbG8=",
        "question": "Describe the image in detail.",
        "image_id": 42,
        "org_idx": 0,
    }
    record.update(overrides)
    return json.dumps({key: value for key, value in record.items() if value is not None}) + "\n"


def test_fetch_benchmark_file_url(tmp_path):
    source = tmp_path / "objhal_bench.jsonl"
    source.write_text(bench_line() + "\n" + bench_line(image_id=43))
    dest = tmp_path / "resources" / "objhal_bench.jsonl"
    provenance = fetch_benchmark(source.as_uri(), dest)
    assert dest.read_bytes() == source.read_bytes()
    assert provenance["questions"] == 2 and provenance["sha256"] == sha256_of(source.read_bytes())


def test_fetch_benchmark_over_http(server, tmp_path):
    body = (bench_line() * 3).encode()
    url = server.serve("/objhal_bench.jsonl", body)
    assert fetch_benchmark(url, tmp_path / "bench.jsonl", sha256=sha256_of(body))["questions"] == 3


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([bench_line(), '{"image": "x", \n'], r":2: malformed JSON"),
        ([bench_line(), bench_line(), bench_line(image_id=None)], r":3: missing image_id"),
        ([bench_line(question="", image=None)], r":1: missing image, question"),
        (["[1, 2]\n"], r":1: expected a JSON object"),
        (["\n"], r": holds no questions"),
    ],
    ids=["malformed", "no_image_id", "empty_fields", "not_an_object", "empty"],
)
def test_fetch_benchmark_bad_line_names_file_and_line(tmp_path, lines, problem):
    source = tmp_path / "objhal_bench.jsonl"
    source.write_text("".join(lines))
    dest = tmp_path / "out" / "bench.jsonl"
    with pytest.raises(FetchError, match=re.escape(str(source)) + problem):
        fetch_benchmark(str(source), dest)
    assert list(dest.parent.iterdir()) == []


# --- snapshot_model ----------------------------------------------------------------------------


def write_checkpoint(
    folder: Path, config: dict | None = None, weights: dict[str, bytes] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "mllm"}))
    for name, data in (weights or {"model.safetensors": b"weights"}).items():
        (folder / name).write_bytes(data)
    return folder


def test_snapshot_model_local_folder_is_hard_linked(tmp_path):
    source = write_checkpoint(tmp_path / "ckpt")
    (source / "tokenizer").mkdir()
    (source / "tokenizer" / "vocab.json").write_text("{}")
    blob = tmp_path / "blob"
    blob.write_text("generation")
    (source / "generation_config.json").symlink_to(blob)  # as in a Hub cache snapshot
    dest = tmp_path / "resources" / "model"
    provenance = snapshot_model(str(source), dest)
    assert sorted(path.relative_to(dest).as_posix() for path in dest.rglob("*") if path.is_file()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer/vocab.json",
    ]  # fmt: skip
    assert (dest / "model.safetensors").stat().st_ino == (
        source / "model.safetensors"
    ).stat().st_ino
    assert not (dest / "generation_config.json").is_symlink()
    assert (dest / "generation_config.json").read_text() == "generation"
    assert provenance["commit"] is None and provenance["files"] == 4
    assert (
        provenance["weights"] == ["model.safetensors"]
        and provenance["remote_code_ignored"] is False
    )
    assert leftovers(dest.parent) == []


def test_snapshot_model_local_folder_allow_patterns(tmp_path):
    source = write_checkpoint(
        tmp_path / "ckpt", weights={"model.safetensors": b"w", "pytorch_model.bin": b"w"}
    )
    dest = tmp_path / "model"
    snapshot_model(str(source), dest, allow_patterns=["*.json", "*.safetensors"])
    assert sorted(path.name for path in dest.iterdir()) == ["config.json", "model.safetensors"]


def test_snapshot_model_records_untrusted_remote_code(tmp_path):
    auto_map = {"AutoModel": "modeling_mllm.MLLMModel"}
    source = write_checkpoint(
        tmp_path / "ckpt", config={"model_type": "mllm", "auto_map": auto_map}
    )
    provenance = snapshot_model(str(source), tmp_path / "model")
    assert provenance["auto_map"] == auto_map and provenance["remote_code_ignored"] is True
    trusted = snapshot_model(str(source), tmp_path / "trusted", trust_remote_code=True)
    assert trusted["remote_code_ignored"] is False


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"training_args.bin": b"x"}, "no weights"),
        (
            {
                "model-00001-of-00002.safetensors": b"w",
                "model.safetensors.index.json": json.dumps(
                    {
                        "weight_map": {
                            "a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors",
                        }
                    }
                ).encode(),
            },
            r"missing shards \['model-00002-of-00002.safetensors'\]",
        ),
    ],
    ids=["no_weights", "missing_shard"],
)
def test_snapshot_model_incomplete_checkpoint_leaves_nothing(tmp_path, weights, problem):
    source = write_checkpoint(tmp_path / "ckpt", weights=weights)
    dest = tmp_path / "out" / "model"
    with pytest.raises(FetchError, match=problem):
        snapshot_model(str(source), dest)
    assert list(dest.parent.iterdir()) == []


def test_snapshot_model_checks_the_configured_family_against_the_model_type(tmp_path):
    source = write_checkpoint(tmp_path / "ckpt", config={"model_type": "qwen2_5_vl"})
    dest = tmp_path / "out" / "model"
    with pytest.raises(ConfigError, match=r"model.family is 'mllm'.*model_type 'qwen2_5_vl'"):
        snapshot_model(str(source), dest, family="mllm")
    with pytest.raises(ConfigError, match=r"model.family: unknown model family 'llava'; known: "):
        snapshot_model(str(source), dest, family="llava")
    assert list(dest.parent.iterdir()) == []
    own = write_checkpoint(tmp_path / "own")
    provenance = snapshot_model(str(own), dest, family="mllm")
    assert provenance["family"] == "mllm" and provenance["model_type"] == "mllm"


def test_snapshot_model_without_config(tmp_path):
    source = tmp_path / "ckpt"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"w")
    with pytest.raises(FetchError, match="no config.json"):
        snapshot_model(str(source), tmp_path / "model")


def test_snapshot_model_refuses_revision_for_local_folder_and_bad_sources(tmp_path):
    source = write_checkpoint(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="no revision"):
        snapshot_model(str(source), tmp_path / "model", revision="main")
    with pytest.raises(FetchError, match="neither a local folder nor a Hub repo id"):
        snapshot_model(str(tmp_path / "absent" / "ckpt"), tmp_path / "model")


def test_snapshot_model_from_hub_pins_the_resolved_commit(tmp_path, monkeypatch):
    calls = {}

    def fake_model_info(repo_id, *, revision=None):
        calls["model_info"] = (repo_id, revision)
        return SimpleNamespace(sha="c0ffee" * 6 + "abcd")

    def fake_snapshot_download(*, repo_id, revision, local_dir, allow_patterns):
        calls["snapshot_download"] = (repo_id, revision, allow_patterns)
        write_checkpoint(Path(local_dir))
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    monkeypatch.setattr(model, "model_info", fake_model_info)
    monkeypatch.setattr(model, "snapshot_download", fake_snapshot_download)
    dest = tmp_path / "resources" / "model"
    provenance = snapshot_model(
        "HaoyeZhang/MLLM_Excercise_Model", dest, revision="v1.0", allow_patterns=["*"]
    )
    commit = "c0ffee" * 6 + "abcd"
    assert calls == {
        "model_info": ("HaoyeZhang/MLLM_Excercise_Model", "v1.0"),
        "snapshot_download": ("HaoyeZhang/MLLM_Excercise_Model", commit, ["*"]),
    }
    assert provenance["revision"] == "v1.0" and provenance["commit"] == commit
    assert sorted(path.name for path in dest.iterdir()) == ["config.json", "model.safetensors"]


# --- the registry ------------------------------------------------------------------------------


def test_known_sources_are_plain_data_without_invented_digests():
    assert json.loads(json.dumps(KNOWN_SOURCES)) == KNOWN_SOURCES  # YAML/JSON friendly
    for name, entry in KNOWN_SOURCES.items():
        assert entry["kind"] in {"hub_model", "hub_dataset", "url", "manual"}, name
        assert entry["sha256"] is None, name  # no publisher lists one: see the registry comment
        assert entry["evidence"], name
        if entry["kind"] == "manual":
            assert entry["source"] is None and entry["page"].startswith("https://"), name
        if entry["kind"] == "url" and entry["source"] is not None:
            assert entry["source"].startswith("https://"), name  # never plain http
    assert KNOWN_SOURCES["exercise_model"]["source"] == "HaoyeZhang/MLLM_Excercise_Model"
    assert len(SHIKRA_REC_EVAL_FILES) == 8


def test_experiment_configs_download_over_https_only():
    for path in sorted((REPO / "config" / "experiments").glob("*.yaml")):
        real = yaml.safe_load(path.read_text()).get("real", {})
        plain = [key for key, value in real.items() if str(value).startswith("http://")]
        assert plain == [], path.name


# --- grounding: REC files and the COCO image folder --------------------------------------------

REC_FILES = {
    "REC_refcoco_unc_val.jsonl": b'{"img_path": "COCO_train2014_1.jpg", "expression": "cup", "bbox": [1, 2, 3, 4]}\n',
    "REC_ref3_train.jsonl": b'{"img_path": "COCO_train2014_2.jpg", "expression": "dog", "bbox": [0, 0, 5, 5]}\n',
}


def test_rec_files_from_zip_over_http_match_members_by_file_name(server, tmp_path):
    archive = zip_bytes({f"shikra_data/{name}": data for name, data in REC_FILES.items()})
    url = server.serve("/shikra.zip", archive, content_type="application/zip")
    dest = tmp_path / "grounding"
    provenance = fetch_rec_files(url, dest, sorted(REC_FILES), sha256=sha256_of(archive))
    for name, data in REC_FILES.items():
        assert (dest / name).read_bytes() == data
        assert provenance["files"][name] == {"sha256": sha256_of(data), "bytes": len(data)}
    assert server.hits["/shikra.zip"] == 1 and leftovers(tmp_path) == []


def test_rec_files_from_folder_and_bad_files_leave_nothing(tmp_path):
    folder = tmp_path / "downloaded"
    folder.mkdir()
    for name, data in REC_FILES.items():
        (folder / name).write_bytes(data)
    dest = tmp_path / "grounding"
    assert fetch_rec_files(str(folder), dest, sorted(REC_FILES))["sha256"] is None
    assert sorted(p.name for p in dest.iterdir()) == sorted(REC_FILES)

    (folder / "REC_ref3_train.jsonl").write_bytes(b"<!DOCTYPE html><html>Google Drive</html>")
    other = tmp_path / "other"
    with pytest.raises(FetchError, match="REC_ref3_train.jsonl: the first line is not JSON"):
        fetch_rec_files(str(folder), other, sorted(REC_FILES))
    with pytest.raises(FetchError, match="no such file"):
        fetch_rec_files(str(folder), other, ["REC_refcocog_umd_test.jsonl"])
    with pytest.raises(ValueError, match="sha256 checks a zip"):
        fetch_rec_files(str(folder), other, sorted(REC_FILES), sha256="0" * 64)
    assert not other.exists() and leftovers(tmp_path) == []


def test_image_folder_strips_the_archive_top_folder(tmp_path):
    archive = tmp_path / "train2014.zip"
    archive.write_bytes(zip_bytes({"train2014/a.jpg": b"A", "train2014/sub/b.jpg": b"B"}))
    dest = tmp_path / "coco" / "train2014"
    provenance = fetch_image_folder(str(archive), dest, sha256=sha256_of(archive.read_bytes()))
    assert (dest / "a.jpg").read_bytes() == b"A" and (dest / "sub/b.jpg").read_bytes() == b"B"
    assert provenance["images"] == 2 and provenance["sha256"] == sha256_of(archive.read_bytes())


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ({"../evil.jpg": b"x"}, "unsafe member path"),
        ({}, "holds no files"),
        (
            {"train2014/a": b"file", "train2014/a/b.jpg": b"x"},
            "member 'train2014/a' is a file, but member 'train2014/a/b.jpg' needs a folder",
        ),
        (
            {"train2014/a/b.jpg": b"x", "train2014/a": b"file"},
            "member 'train2014/a' is a file, but member 'train2014/a/b.jpg' needs a folder",
        ),
    ],
    ids=["path_traversal", "empty", "file_then_folder", "folder_then_file"],
)
def test_image_folder_refuses_bad_archives_and_writes_nothing(tmp_path, members, problem):
    archive = tmp_path / "images.zip"
    archive.write_bytes(zip_bytes(members))
    dest = tmp_path / "coco" / "train2014"
    with pytest.raises(FetchError, match=re.escape(problem)) as error:
        fetch_image_folder(str(archive), dest)
    assert str(archive) in str(error.value)  # the archive is named
    assert not dest.exists() and leftovers(dest.parent) == []
