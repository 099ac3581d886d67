"""Fuzzing with a seeded generator (hypothesis is not in the venv), a few seconds each: the
safetensors header parser and the Hugging Face-compatible API's inputs either accept what is
sound or refuse it with a clear error, never an unhandled exception or a 500. A failure prints
its seed and input, so it replays."""

import base64
import json
import math
import random
import struct
import time
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from safetensors import safe_open

from hub.api.models import ApiToken
from hub.catalog.checkpoints import SAFETENSORS_DTYPE_BYTES, CheckpointError, read_safetensors_header

SEED = 20261124
BUDGET_SECONDS = 3.0
DTYPES = [*SAFETENSORS_DTYPE_BYTES, "F128", "f32", "", "Q4"]


def rounds(rng: random.Random, budget: float = BUDGET_SECONDS, at_most: int = 3000):
    deadline = time.monotonic() + budget
    for i in range(at_most):
        if time.monotonic() > deadline:
            return
        yield i


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**63, 2**64 + 1, 10**30, True, None])
    if kind == 1:
        return rng.choice([1.5, float("nan"), float("inf"), -0.0])
    if kind == 2:
        return rng.choice(["", "F32", "x" * 300, "\0", "é", "../"])
    if kind == 3:
        return rng.randrange(-4, 1 << 12)
    if kind == 4:
        return []
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["dtype", "shape", "data_offsets", "__metadata__", "w"]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def random_safetensors(rng: random.Random) -> bytes:
    """A file near the format: mostly sound tensors laid out back to back, then damaged."""
    header, offset = {}, 0
    for i in range(rng.randrange(5)):
        dtype = rng.choice(DTYPES) if rng.random() < 0.2 else rng.choice(list(SAFETENSORS_DTYPE_BYTES))
        shape = [rng.randrange(4) for _ in range(rng.randrange(3))]
        size = math.prod(shape) * SAFETENSORS_DTYPE_BYTES.get(dtype, 4)
        begin = offset + rng.choice([0, 0, 0, -1, 1, -size])
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + size + rng.choice([0, 0, 0, 1, -1])]}
        if rng.random() < 0.1:
            entry[rng.choice(["dtype", "shape", "data_offsets"])] = random_value(rng)
        if rng.random() < 0.05:
            entry.pop(rng.choice(list(entry)))
        header[f"t{i}"] = entry
        offset += size
    if rng.random() < 0.2:
        header["__metadata__"] = rng.choice([{"format": "pt"}, {"format": 1}, [], "x"])
    if rng.random() < 0.1:
        header = random_value(rng)
    raw = json.dumps(header).encode()
    if rng.random() < 0.05:
        raw = b"[" * rng.choice([10, 1000, 100_000]) + b"]" * rng.choice([0, 10])  # nesting past the recursion limit
    if rng.random() < 0.1:
        raw += b" " * rng.randrange(8)
    data = bytes(offset + rng.choice([0, 0, 0, -1, 8]) if offset else rng.choice([0, 8]))
    declared = len(raw) if rng.random() < 0.85 else rng.choice([0, len(raw) + 1, len(raw) - 1, 2**63, 2**64 - 1])
    blob = bytearray(struct.pack("<Q", declared) + raw + data)
    for _ in range(rng.choice([0, 0, 0, 1, 3])):  # flipped bytes anywhere
        blob[rng.randrange(len(blob))] = rng.randrange(256)
    if rng.random() < 0.05:
        blob = blob[: rng.randrange(len(blob) + 1)]  # truncated
    return bytes(blob)


def test_it_parses_or_refuses_any_safetensors_header(tmp_path):
    rng = random.Random(SEED)
    path = tmp_path / "model.safetensors"
    accepted = refused = 0
    for i in rounds(rng):
        blob = random_safetensors(rng)
        path.write_bytes(blob)
        try:
            header = read_safetensors_header(path)
        except CheckpointError as exc:
            assert str(exc).startswith("model.safetensors: "), (SEED, i, blob[:200])
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"seed {SEED} round {i}: {type(exc).__name__}: {exc} on {blob[:200]!r}")
        accepted += 1
        # whatever the parser accepts, the safetensors library opens and reads, tensor by tensor
        with safe_open(path, framework="numpy") as f:
            assert set(f.keys()) == set(header) - {"__metadata__"}, (SEED, i)
            for name in f.keys():
                if header[name]["dtype"] in ("F16", "F32", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL"):
                    assert list(f.get_tensor(name).shape) == header[name]["shape"], (SEED, i, name)
    assert accepted > 20 and refused > 100, (accepted, refused)  # the generator reaches both sides


# -- the Hugging Face-compatible API ------------------------------------------------------------

PIECES = [
    "alice",
    "r",
    "main",
    "a",
    "x.json",
    ".",
    "..",
    "/",
    "//",
    "\\",
    "\0",
    "%",
    "%2F",
    "%00",
    " ",
    "\n",
    "é",
    "\u202e",
    "😀",
    "<",
    ">",
    "'",
    '"',
    "?",
    "#",
    "&",
    ":",
    "~",
    "-",
    "_",
    "refs/pr/1",
    "0" * 40,
    "A" * 120,
    ".git",
    "api",
    "resolve",
    "tree",
    "commit",
    "README.md",
    "model.safetensors",
]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 5)))


def random_path(rng: random.Random) -> str:
    parts = [
        random_text(rng) if rng.random() < 0.3 else rng.choice(["alice", "r", "main"])
        for _ in range(rng.randrange(1, 4))
    ]
    return quote("/".join(parts), safe="/" if rng.random() < 0.7 else "")


def random_url(rng: random.Random) -> str:
    ns, name, rev, path = (random_path(rng) if rng.random() < 0.4 else d for d in ("alice", "r", "main", "README.md"))
    return rng.choice(
        [
            f"/api/models/{ns}/{name}",
            f"/api/models/{ns}/{name}/revision/{rev}",
            f"/api/models/{ns}/{name}/tree/{rev}",
            f"/api/models/{ns}/{name}/tree/{rev}/{path}?recursive=1&cursor={random_path(rng)}",
            f"/{ns}/{name}/resolve/{rev}/{path}",
            f"/{ns}/{name}/archive/{rev}.tar",
            f"/{ns}/{name}",
            f"/api/lfs/{random_path(rng)}",
        ]
    )


def random_op(rng: random.Random) -> str:
    key = rng.choice(["header", "file", "lfsFile", "deletedFile", "deletedFolder", "other", 7])
    value = rng.choice(
        [
            {"summary": random_text(rng), "parentCommit": rng.choice([None, "0" * 40, 5])},
            {
                "path": rng.choice([random_text(rng), "a.txt", None, 3, ["a"]]),
                "encoding": rng.choice(["base64", "utf-8", None]),
                "content": rng.choice([base64.b64encode(b"x").decode(), "!!", None, 1]),
            },
            {
                "path": "w.safetensors",
                "algo": rng.choice(["sha256", "md5"]),
                "oid": rng.choice(["0" * 64, ["x"], {}, None]),
                "size": rng.choice([1, -1, "1", None, 2**70]),
            },
            random_value(rng),
        ]
    )
    line = (
        json.dumps({"key": key, "value": value}) if rng.random() < 0.9 else rng.choice([random_text(rng), "[" * 50_000])
    )
    return line + "\n"


def random_body(rng: random.Random) -> tuple[str, bytes]:
    target = rng.choice(["create", "preupload", "commit", "batch", "yaml"])
    if target == "commit":
        return "/api/models/alice/r/commit/main", "".join(random_op(rng) for _ in range(rng.randrange(1, 4))).encode()
    body = {
        "create": lambda: {
            "name": random_text(rng),
            "organization": rng.choice([None, random_text(rng), 1]),
            "type": rng.choice([None, "model", "dataset", []]),
            "private": random_value(rng),
        },
        "preupload": lambda: {
            "files": rng.choice(
                [
                    [
                        {
                            "path": random_text(rng),
                            "size": random_value(rng),
                            "sample": rng.choice(["", "eA==", "!!", 3]),
                        }
                    ],
                    random_value(rng),
                ]
            )
        },
        "batch": lambda: {
            "operation": rng.choice(["upload", "download", None]),
            "objects": rng.choice(
                [[{"oid": rng.choice(["0" * 64, random_text(rng), 1]), "size": random_value(rng)}], random_value(rng)]
            ),
        },
        "yaml": lambda: {"content": rng.choice([random_text(rng), "---\na: &x [*x]\n---\n", "---\n- 1\n---\n", 5])},
    }[target]()
    url = {
        "create": "/api/repos/create",
        "preupload": "/api/models/alice/r/preupload/main",
        "batch": "/alice/r.git/info/lfs/objects/batch",
        "yaml": "/api/validate-yaml",
    }[target]
    raw = json.dumps(body).encode() if rng.random() < 0.9 else random_text(rng).encode("utf-8", "surrogatepass")
    if rng.random() < 0.03:
        raw = b"[" * 100_000  # nesting past Python's recursion limit
    return url, raw


@pytest.fixture
def hub(db, isolated_storage) -> Client:
    alice = User.objects.create_user("alice")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(alice, 'fuzz', ApiToken.Scope.WRITE)[1]}")
    client.post("/api/repos/create", {"name": "r"}, content_type="application/json")
    lines = [
        {"key": "header", "value": {"summary": "files"}},
        {
            "key": "file",
            "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(b"# r").decode()},
        },
        {
            "key": "file",
            "value": {"path": "sub/x.json", "encoding": "base64", "content": base64.b64encode(b"{}").decode()},
        },
    ]
    assert (
        client.post(
            "/api/models/alice/r/commit/main",
            "".join(json.dumps(x) + "\n" for x in lines),
            content_type="application/x-ndjson",
        ).status_code
        == 200
    )
    return client


def test_it_answers_any_hub_api_request_without_a_server_error(hub):
    rng = random.Random(SEED)
    seen: dict[int, int] = {}
    for i in rounds(rng):
        if rng.random() < 0.5:
            method, url, body = rng.choice(["GET", "HEAD"]), random_url(rng), b""
        else:
            method, (url, body) = "POST", random_body(rng)
        headers = (
            {"HTTP_RANGE": rng.choice(["bytes=0-1", "bytes=-5", "bytes=9-2", "bytes=x", "bytes=99999999999999999999-"])}
            if rng.random() < 0.2
            else {}
        )
        # the test client re-raises any exception a view lets escape, so a crash fails here
        response = hub.generic(method, url, body, content_type="application/json", **headers)
        assert response.status_code < 500, (SEED, i, method, url, body[:300], response.content[:300])
        if (
            method != "HEAD"
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("application/json")
        ):
            body = response.json()
            assert body.get("error") or body.get("errors"), (SEED, i, url, body)  # validate-yaml lists its errors
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert seen.get(200, 0) > 20 and sum(n for s, n in seen.items() if s >= 400) > 100, seen


def random_query(rng: random.Random) -> str:
    keys = [
        "q",
        "architecture",
        "size",
        "base",
        "variant",
        "scheme",
        "gpu",
        "task",
        "validated",
        "status",
        "mine",
        "page",
        "page_size",
        random_text(rng),
    ]
    return "&".join(
        f"{quote(rng.choice(keys))}={quote(random_text(rng) if rng.random() < 0.7 else str(random_value(rng)))}"
        for _ in range(rng.randrange(1, 4))
    )


def test_it_answers_any_rest_api_request_without_a_server_error(hub):
    rng = random.Random(SEED)
    seen: dict[int, int] = {}
    for i in rounds(rng, budget=2.0):
        if rng.random() < 0.7:
            path = rng.choice(
                [
                    "/api/v1/models",
                    "/api/v1/variants",
                    "/api/v1/jobs",
                    "/api/v1/results/evals",
                    "/api/v1/results/benchmarks",
                    f"/api/v1/models/{random_path(rng)}",
                    f"/api/v1/jobs/{random_path(rng)}",
                ]
            )
            response = hub.get(f"{path}?{random_query(rng)}")
        else:
            body = {
                k: random_value(rng) if rng.random() < 0.5 else random_text(rng)
                for k in rng.sample(
                    [
                        "base",
                        "hf_id",
                        "revision",
                        "presets",
                        "recipe_yaml",
                        "recipe_name",
                        "suite",
                        "benchmark_profile",
                        "gpu",
                        "publish_targets",
                        "private",
                    ],
                    rng.randrange(1, 6),
                )
            }
            response = hub.post("/api/v1/jobs", json.dumps(body), content_type="application/json")
        assert response.status_code < 500, (SEED, i, response.content[:300])
        if response.status_code >= 400 and response["Content-Type"] == "application/json":  # not a path no route takes
            assert response.json()["error"]["message"], (SEED, i)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert seen.get(200, 0) > 10 and seen.get(422, 0) > 10, seen
