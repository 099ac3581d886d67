"""Bad input is refused with an error that says why, and leaves nothing behind: no row in the
database, no file under MODELS_DIR or REPOS_DIR. Checkpoints come in through `import_model`
(the fetch stage runs the same checks), repositories and files through the Hugging Face-compatible
API, jobs and recipes through the REST API; HTML in cards and names is rendered inert."""

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from hub.api.models import ApiToken
from hub.catalog.models import BaseModel
from hub.hfapi import card
from hub.hfapi.models import Entry, Repo
from hub.jobs.forms import KNOWN_SCHEMES
from hub.jobs.models import Job, Recipe
from tests.helpers import write_tiny_checkpoint


def stored_files(settings) -> set[str]:
    return {
        str(p)
        for root in (settings.MODELS_DIR, settings.REPOS_DIR)
        if root.exists()
        for p in root.rglob("*")
        if p.is_file()
    }


# -- checkpoints imported from a folder ---------------------------------------------------------


def safetensors(header: dict | bytes, data: bytes = b"", declared: int | None = None) -> Callable[[Path], None]:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()

    def write(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(
            struct.pack("<Q", len(raw) if declared is None else declared) + raw + data
        )

    return write


def config(**changes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return write


def file(name: str, data: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    return write


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).symlink_to(target)


F32x4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
PICKLE = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."

CHECKPOINTS = {
    "pickle .bin": (file("pytorch_model.bin", PICKLE), "pickle files are refused (pytorch_model.bin)"),
    "pickle .pt": (file("model.pt", PICKLE), "pickle files are refused (model.pt)"),
    "pickle in a subfolder": (file("extra/state.pkl", PICKLE), "pickle files are refused (extra/state.pkl)"),
    "safetensors: bad JSON": (safetensors(b"{not json"), "malformed safetensors header"),
    "safetensors: not UTF-8": (safetensors(b'{"\xff": 1}'), "malformed safetensors header"),
    "safetensors: not an object": (safetensors(b"[1, 2]"), "not a JSON object"),
    "safetensors: header length past EOF": (safetensors(b"{}", declared=4096), "declared length 4096"),
    "safetensors: header length past the limit": (safetensors(b"{}", declared=2**60), "declared length"),
    "safetensors: shorter than 8 bytes": (
        file("model.safetensors", b"\x01\x02"),
        "shorter than its 8-byte header length",
    ),
    "safetensors: offsets past the file": (safetensors({"w": F32x4}, b"\0" * 8), "data offsets outside the file"),
    "safetensors: reversed offsets": (
        safetensors({"w": {**F32x4, "data_offsets": [16, 0]}}, b"\0" * 16),
        "outside the file",
    ),
    "safetensors: overlapping offsets": (
        safetensors({"a": F32x4, "b": {**F32x4, "data_offsets": [8, 24]}}, b"\0" * 24),
        "tensors overlap",
    ),
    "safetensors: a hole between tensors": (
        safetensors({"a": F32x4, "b": {**F32x4, "data_offsets": [24, 40]}}, b"\0" * 40),
        "bytes 16 to 24 of the data section",
    ),
    "safetensors: bytes past the last tensor": (
        safetensors({"w": F32x4}, b"\0" * 16 + b"PK\3\4"),
        "4 bytes past its last tensor",
    ),
    "safetensors: unknown dtype": (safetensors({"w": {**F32x4, "dtype": "F128"}}, b"\0" * 16), "unknown dtype 'F128'"),
    "safetensors: shape/size mismatch": (
        safetensors({"w": {**F32x4, "shape": [5]}}, b"\0" * 16),
        "does not match its shape",
    ),
    "safetensors: negative dimension": (safetensors({"w": {**F32x4, "shape": [-4]}}, b"\0" * 16), "malformed shape"),
    "safetensors: entry without offsets": (
        safetensors({"w": {"dtype": "F32", "shape": [4]}}, b"\0" * 16),
        "malformed entry",
    ),
    "safetensors: metadata not strings": (
        safetensors({"__metadata__": {"format": 1}}),
        "__metadata__ must map strings",
    ),
    "config: hidden_size 10^9": (config(hidden_size=10**9), "hidden_size = 1000000000 is out of range"),
    "config: 10^6 layers": (config(num_hidden_layers=10**6), "num_hidden_layers = 1000000 is out of range"),
    "config: negative vocabulary": (config(vocab_size=-16), "vocab_size = -16 is out of range"),
    "config: zero heads": (config(num_attention_heads=0), "num_attention_heads = 0 is out of range"),
    "config: 10^12 positions": (config(max_position_embeddings=10**12), "max_position_embeddings = 1000000000000"),
    "config: size as a string": (config(hidden_size="4096"), "hidden_size = '4096' is out of range"),
    "config: size as a boolean": (config(num_hidden_layers=True), "num_hidden_layers = True is out of range"),
    "config: size as a float": (config(intermediate_size=1e30), "intermediate_size = 1e+30 is out of range"),
    "config: not JSON": (file("config.json", b"{oops"), "config.json is not valid JSON"),
    "config: not an object": (file("config.json", b"[]"), "config.json must hold a JSON object"),
    "config: missing": (remove("config.json"), "config.json is missing"),
    "architecture: GPT-2": (config(architectures=["GPT2LMHeadModel"]), "unsupported architecture GPT2LMHeadModel"),
    "architecture: one of two unsupported": (
        config(architectures=["LlamaForCausalLM", "BertModel"]),
        "unsupported architecture BertModel",
    ),
    "architecture: none named": (config(architectures=[]), "names no architecture"),
    "architecture: not a list": (config(architectures="LlamaForCausalLM"), "names no architecture"),
    "no safetensors weights": (remove("model.safetensors"), "no *.safetensors weights found"),
    "a symbolic link out of the folder": (
        symlink("tokenizer.json", "/etc/passwd"),
        "'tokenizer.json' is not a file of this checkpoint",
    ),
    "an index naming a missing shard": (
        file("model.safetensors.index.json", b'{"weight_map": {"w": "model-00002-of-00002.safetensors"}}'),
        "'model-00002-of-00002.safetensors' is not a file of this checkpoint",
    ),
    "a malformed index": (file("model.safetensors.index.json", b'{"weight_map": 3}'), "index.json is malformed"),
}


@pytest.mark.parametrize("mutate, message", CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_it_refuses_a_bad_checkpoint_and_stores_nothing(db, tmp_path, settings, mutate, message):
    folder = write_tiny_checkpoint(tmp_path / "ckpt")
    mutate(folder)
    with pytest.raises(CommandError) as refused:
        call_command("import_model", str(folder), "--name", "me/tiny", stderr=open("/dev/null", "w"))
    assert message in str(refused.value)
    assert not BaseModel.objects.exists()
    assert stored_files(settings) == set()


@pytest.mark.parametrize("name", ["a\\b", "owner/..", "..", "owner/name.", "<script>alert(1)</script>", "a" * 97])
def test_it_refuses_an_import_under_an_unsafe_name(db, tmp_path, settings, name):
    folder = write_tiny_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CommandError, match="invalid model name"):
        call_command("import_model", str(folder), "--name", name, stderr=open("/dev/null", "w"))
    assert not BaseModel.objects.exists() and stored_files(settings) == set()


# -- repositories and files through the Hugging Face-compatible API -----------------------------


@pytest.fixture
def hf(alice) -> Client:
    """alice's client, with a write token, and her repository alice/r."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(alice, 'tests', ApiToken.Scope.WRITE)[1]}")
    assert client.post("/api/repos/create", {"name": "r"}, content_type="application/json").status_code == 200
    return client


def state(settings) -> tuple:
    """What a refused request must leave as it was."""
    return (
        list(Repo.objects.values_list("namespace", "name", "head__sha")),
        Entry.objects.count(),
        stored_files(settings),
        sorted(p.name for p in (settings.REPOS_DIR / "incoming").iterdir())
        if (settings.REPOS_DIR / "incoming").exists()
        else [],
    )


def commit(client: Client, *ops: dict, repo: str = "alice/r"):
    lines = [{"key": "header", "value": {"summary": "bad"}}, *ops]
    return client.post(
        f"/api/models/{repo}/commit/main",
        "".join(json.dumps(op) + "\n" for op in lines),
        content_type="application/x-ndjson",
    )


def inline(path: object, data: bytes = b"x") -> dict:
    return {"key": "file", "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()}}


BAD_PATHS = {
    "dot-dot": "../evil.txt",
    "dot-dot inside": "a/../../evil.txt",
    "absolute": "/etc/passwd",
    "NUL": "a\0b.txt",
    "backslash": "..\\evil.txt",
    "git folder": ".git/config",
    "empty segment": "a//b.txt",
    "dot segment": "./a.txt",
    "trailing slash": "a/",
    "empty": "",
    "not a string": 7,
    "1001 characters": "a" * 1001,
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_it_refuses_a_commit_with_an_unsafe_path_and_stores_nothing(hf, settings, path):
    before = state(settings)
    response = commit(hf, inline(path))
    assert response.status_code == 400 and response.json()["error"] == f"invalid file path {path!r}"
    assert state(settings) == before


@pytest.mark.parametrize(
    "op",
    [
        {"key": "deletedFile", "value": {"path": "../.gitattributes"}},
        {"key": "deletedFolder", "value": {"path": "/"}},
        {"key": "lfsFile", "value": {"path": "../w.safetensors", "algo": "sha256", "oid": "0" * 64, "size": 1}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": ["0" * 64], "size": 1}},
        {"key": "file", "value": "README.md"},
        {"key": "rename", "value": {"path": "a"}},
    ],
    ids=["delete ../", "delete folder /", "LFS ../", "LFS oid a list", "value not an object", "unknown operation"],
)
def test_it_refuses_malformed_commit_operations(hf, settings, op):
    before = state(settings)
    response = commit(hf, op)
    assert response.status_code == 400 and response.json()["error"]
    assert state(settings) == before


def test_it_refuses_an_unsafe_path_before_an_upload(hf, settings):
    before = state(settings)
    response = hf.post(
        "/api/models/alice/r/preupload/main",
        {"files": [{"path": "../x.bin", "size": 1, "sample": ""}]},
        content_type="application/json",
    )
    assert response.status_code == 400 and "invalid file path '../x.bin'" in response.json()["error"]
    assert state(settings) == before


BAD_NAMES = {
    "dot-dot": {"name": ".."},
    "traversal": {"name": "../../etc"},
    "slash": {"name": "a/b"},
    "NUL": {"name": "a\0b"},
    "backslash": {"name": "a\\b"},
    "HTML": {"name": "<script>alert(1)</script>"},
    "too long": {"name": "a" * 97},
    "namespace traversal": {"name": "x", "organization": "../alice"},
    "not a string": {"name": ["r"]},
}


@pytest.mark.parametrize("body", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_it_refuses_an_unsafe_repository_name(hf, settings, body):
    before = state(settings)
    response = hf.post("/api/repos/create", body, content_type="application/json")
    assert response.status_code == 400 and (
        "invalid model name" in response.json()["error"] or "must be strings" in response.json()["error"]
    )
    assert state(settings) == before


@pytest.mark.parametrize(
    "url",
    [
        "/alice/r/resolve/main/..%2F..%2Fhub%2Fsettings.py",
        "/alice/r/resolve/main/%2Fetc%2Fpasswd",
        "/alice/r/resolve/main/a%00b",
        "/alice/r/resolve/main/..%5Csettings.py",
        "/alice/r/resolve/..%2Fmain/.gitattributes",
        "/alice/r/resolve/main/.git/config",
    ],
)
def test_it_never_serves_a_file_outside_the_repository(hf, url):
    response = hf.get(url)
    assert response.status_code in (400, 404) and response.json()["error"]
    assert response["X-Error-Message"]


def test_it_refuses_an_inline_file_past_the_limit_and_stores_nothing(hf, settings):
    settings.HFAPI_LFS_THRESHOLD = 1024
    before = state(settings)
    response = commit(hf, inline("big.txt", b"x" * 100_000))  # past one inline file, base64, and its JSON
    assert response.status_code == 413 and "send files this large through LFS" in response.json()["error"]
    assert state(settings) == before


def lfs_batch(client: Client, objects: list[dict]) -> list[dict]:
    response = client.post(
        "/alice/r.git/info/lfs/objects/batch",
        {"operation": "upload", "objects": objects},
        content_type="application/json",
    )
    assert response.status_code == 200
    return response.json()["objects"]


def test_it_refuses_to_hand_out_upload_urls_for_files_past_the_limit(hf, settings):
    settings.HFAPI_MAX_FILE_SIZE = 1000
    before = state(settings)
    [big, negative] = lfs_batch(hf, [{"oid": "a" * 64, "size": 1001}, {"oid": "b" * 64, "size": -1}])
    assert (
        big["error"]["code"] == 422
        and "1001 bytes is more than this hub takes in one file (1000)" in big["error"]["message"]
    )
    assert negative["error"]["code"] == 422 and "actions" not in big and "actions" not in negative
    assert state(settings) == before


@pytest.mark.parametrize(
    "length, body",
    [("17", b"x" * 17), ("ten", b"x" * 16), ("", b"")],
    ids=["more bytes than announced", "length not a number", "no length"],
)
def test_it_refuses_an_upload_of_another_size_and_stores_nothing(hf, settings, length, body):
    data = b"\0" * 16
    [obj] = lfs_batch(hf, [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}])
    before = state(settings)
    response = Client().generic("PUT", obj["actions"]["upload"]["href"], body, CONTENT_LENGTH=length)
    assert response.status_code == 400 and "this URL takes exactly 16 bytes" in response.json()["error"]
    assert state(settings) == before


# -- jobs and recipes through the REST API ------------------------------------------------------


RECIPE = "q_stage:\n  q_modifiers:\n    {}\n"
JOBS = {
    "unknown modifier": (
        {"recipe_yaml": RECIPE.format("FancyModifier: {scheme: W4A16}")},
        "unknown modifier 'FancyModifier'",
    ),
    "unknown scheme": (
        {"recipe_yaml": RECIPE.format("QuantizationModifier: {scheme: W9A9}")},
        "unknown scheme 'W9A9' in QuantizationModifier",
    ),
    "unknown scheme, mapping form": (
        {"recipe_yaml": RECIPE.format("GPTQModifier: {scheme: {INT3: [Linear]}}")},
        "unknown scheme 'INT3' in GPTQModifier",
    ),
    "not YAML": ({"recipe_yaml": "q_stage: [unclosed"}, "the recipe is not valid YAML"),
    "a Python object tag": (
        {"recipe_yaml": "q_stage: !!python/object/apply:os.system ['id']"},
        "the recipe is not valid YAML",
    ),
    "no modifiers": ({"recipe_yaml": "q_stage:\n  q_modifiers: {}\n"}, "the recipe has no modifiers"),
    "unknown preset": ({"presets": ["w3a3"]}, "Select a valid choice"),
    "HTML recipe name": (
        {
            "recipe_yaml": RECIPE.format("QuantizationModifier: {scheme: W8A16}"),
            "recipe_name": "<script>alert(1)</script>",
        },
        "invalid recipe name",
    ),
    "recipe name with a slash": (
        {"recipe_yaml": RECIPE.format("QuantizationModifier: {scheme: W8A16}"), "recipe_name": "../x"},
        "invalid recipe name",
    ),
    "hub id traversal": ({"base": None, "hf_id": "../../etc/passwd"}, "invalid model name"),
    "hub id absolute": ({"base": None, "hf_id": "/etc/passwd"}, "invalid model name"),
    "hub id with NUL": ({"base": None, "hf_id": "org/a\0b"}, "Null characters are not allowed"),
    "hub id with a backslash": ({"base": None, "hf_id": "org\\model"}, "invalid model name"),
    "revision traversal": ({"base": None, "hf_id": "org/model", "revision": "../../x"}, "invalid revision"),
    "revision with a shell command": (
        {"base": None, "hf_id": "org/model", "revision": "main;rm -rf ~"},
        "invalid revision",
    ),
    "revision with NUL": (
        {"base": None, "hf_id": "org/model", "revision": "ma\0in"},
        "Null characters are not allowed",
    ),
    "publish target traversal": ({"publish_targets": ["https://hf.example ../../x"]}, "invalid model name"),
}


@pytest.mark.parametrize("fields, message", JOBS.values(), ids=JOBS.keys())
def test_it_refuses_a_bad_job_and_stores_nothing(client, alice, llama, settings, fields, message):
    token = ApiToken.issue(alice, "jobs", ApiToken.Scope.WRITE)[1]
    payload = {
        "base": llama.pk,
        "presets": [] if "recipe_yaml" in fields else ["w4a16"],
        "suite": "",
        "benchmark_profile": "",
        **fields,
    }
    response = client.post(
        "/api/v1/jobs", payload, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 422, response.content
    assert message in json.dumps(response.json()["error"]["details"], ensure_ascii=False)
    assert not Job.objects.exists() and not Recipe.objects.filter(preset=False).exists()
    assert list(BaseModel.objects.all()) == [llama] and stored_files(settings) == set()


@pytest.mark.parametrize("url", ["/api/v1/models?q=%00", "/api/v1/variants?scheme=W4%00", "/api/v1/jobs?status=%00"])
def test_it_refuses_nul_in_api_filters(client, db, url):
    # PostgreSQL text cannot hold NUL: refused as invalid input, not left to fail in the database
    response = client.get(url)
    assert response.status_code == 422 and "NUL characters are not allowed" in response.content.decode()


def test_it_knows_the_schemes_compressed_tensors_implements():
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    assert set(KNOWN_SCHEMES) == set(PRESET_SCHEMES)


# -- HTML and script in what users write --------------------------------------------------------


@pytest.mark.parametrize(
    "markdown, forbidden",
    [
        ("<script>alert(1)</script>", ["<script", "alert(1)"]),
        ("<img src=x onerror=alert(1)>", ["onerror"]),
        ("[x](javascript:alert(1))", ['href="javascript']),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', ["javascript:", "JaVaScRiPt"]),
        ('<iframe src="https://evil.example"></iframe>', ["<iframe"]),
        ("<svg onload=alert(1)><circle/></svg>", ["onload", "<svg"]),
        ("<style>body{display:none}</style>", ["<style", "display:none"]),
        ('<img src="data:text/html;base64,PHNjcmlwdD4=">', ["data:text/html"]),
        ('<form action="https://evil.example"><input name=p></form>', ["<form", "<input"]),
        ('<div style="position:fixed;top:0">x</div>', ["position:fixed"]),
    ],
)
def test_it_renders_a_hostile_card_inert(markdown, forbidden):
    html = card.render(f"---\nlicense: mit\n---\n# Card\n\n{markdown}\n", f"/alice/r/resolve/{'0' * 40}/")
    assert "<h1>Card</h1>" in html
    for bad in forbidden:
        assert bad not in html


def test_it_escapes_html_in_card_metadata_and_ignores_aliases(hf):
    readme = "---\nlicense: <img/src=x/onerror=alert(1)>\ntags: ['<script>alert(2)</script>']\n---\n# Card\n"
    assert commit(hf, inline("README.md", readme.encode())).status_code == 200
    html = hf.get("/alice/r").content.decode()
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "<img/src" not in html and "<script>alert(2)" not in html
    # a circular alias would make model_info's JSON loop forever or fail: the metadata is ignored
    assert commit(hf, inline("README.md", b"---\nlicense: &a [*a]\n---\n# Card\n")).status_code == 200
    info = hf.get("/api/models/alice/r")
    assert info.status_code == 200 and info.json()["cardData"] is None
    assert hf.get("/alice/r").status_code == 200


def test_it_escapes_html_in_a_checkpoint_license_and_a_token_name(client, alice, tmp_path):
    folder = write_tiny_checkpoint(tmp_path / "ckpt")
    (folder / "README.md").write_text("---\nlicense: <img/src=x/onerror=alert(1)>\n---\n")
    call_command("import_model", str(folder), "--name", "me/tiny", stderr=open("/dev/null", "w"))
    html = client.get(f"/models/{BaseModel.objects.get().pk}/").content.decode()
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in html and "<img/src" not in html
    ApiToken.issue(alice, "<b onmouseover=alert(1)>laptop</b>")
    client.force_login(alice)
    html = client.get("/tokens/").content.decode()
    assert "&lt;b onmouseover=alert(1)&gt;laptop&lt;/b&gt;" in html and "<b onmouseover" not in html
