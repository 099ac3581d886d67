"""The `hf` command line against the hub, as a user types it in a shell: log in, who am I,
create, upload, branch, tag, download by revision, verify, describe, list, copy, change
settings, move and delete, for model and dataset repositories."""

import json
import shlex

import pytest

from tests.helpers import paste

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def hf(hub_url, alice_token, tmp_path):
    """`hf ARGS` in alice's shell; returns its output, failing the test if the command fails."""

    def run(args: str, fails: bool = False, env: str = "HF_HUB_DISABLE_XET=1") -> str:
        shell = paste(f"HF_ENDPOINT={hub_url} HF_TOKEN={alice_token} {env} hf {args}", tmp_path)
        assert (shell.returncode != 0) == fails, (args, shell.stdout[-2000:], shell.stderr[-2000:])
        return shell.stdout + shell.stderr if fails else shell.stdout

    return run


def test_it_manages_repositories_from_the_command_line(hf, alice_token, stories260k, tmp_path):
    assert json.loads(hf("auth whoami --json"))["user"] == "alice"
    hf(f"auth login --token {alice_token}", env="HF_TOKEN=")  # checked with the hub, kept in HF_HOME
    assert json.loads(hf("auth whoami --json", env="HF_TOKEN="))["user"] == "alice"
    hf("repos create alice/stories")
    said = hf(f"upload alice/stories {stories260k / 'model.safetensors'}", fails=True, env="")
    assert "/xet-write-token/main" in said  # hf_xet asks for it, and does not show the hub's answer
    hf(f"upload alice/stories {shlex.quote(str(stories260k))} . --commit-message weights")
    hf("repos branch create alice/stories w4a16")
    hf("upload alice/stories README.md README.md --revision w4a16 --commit-message card", fails=True)  # no such file
    (tmp_path / "README.md").write_text("---\nlicense: mit\npipeline_tag: text-generation\n---\n# stories\n")
    hf(f"upload alice/stories {tmp_path / 'README.md'} README.md --revision w4a16 --commit-message card")
    hf("repos tag create alice/stories v1 --revision w4a16")
    assert "v1" in hf("repos tag list alice/stories")

    hf("download alice/stories README.md --revision v1 --local-dir tagged")
    assert (tmp_path / "tagged" / "README.md").read_text().endswith("# stories\n")
    hf("download alice/stories README.md --local-dir main", fails=True)  # not on main
    hf("cache verify alice/stories --revision v1 --local-dir tagged")
    (tmp_path / "tagged" / "README.md").write_text("# changed\n")
    assert "README.md" in hf("cache verify alice/stories --revision v1 --local-dir tagged", fails=True)
    info = json.loads(hf("models info alice/stories --revision w4a16 --json"))
    assert info["id"] == "alice/stories" and info["pipeline_tag"] == "text-generation"
    assert "config.json" in hf("models list alice/stories --revision v1")  # the files of one repository
    listed = json.loads(hf("models list --author alice --sort created_at --json"))
    assert [m["id"] for m in listed] == ["alice/stories"]
    refused = hf("models list --sort downloads", fails=True)
    assert "this hub sorts by" in refused
    assert "File not found" in hf("models card alice/stories", fails=True)  # main has no card; the branch has
    hf("cp hf://alice/stories/config.json copied.json")
    assert json.loads((tmp_path / "copied.json").read_text()) == json.loads((stories260k / "config.json").read_text())

    hf("repos settings alice/stories --private")
    hf("repos move alice/stories alice/tales")
    hf("repos delete-files alice/tales tokenizer.model --commit-message 'no sentencepiece'")
    listed = json.loads(hf("repos list --json"))
    assert [(r["id"], r["visibility"]) for r in listed] == [("alice/tales", "private")]
    hf("repos branch delete alice/tales w4a16")
    hf("repos tag delete alice/tales v1 --yes")
    hf("repos delete alice/tales --yes")
    assert json.loads(hf("repos list --json")) == []


def test_it_fills_and_reads_a_dataset_repository_from_the_command_line(hf, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    hf("repos create alice/greetings --type dataset")
    hf(f"upload alice/greetings {tmp_path / 'data'} . --repo-type dataset")
    assert "train.jsonl" in hf("datasets list alice/greetings")
    assert [d["id"] for d in json.loads(hf("datasets list --author alice --json"))] == ["alice/greetings"]
    assert json.loads(hf("datasets info alice/greetings --json"))["id"] == "alice/greetings"
    hf("download alice/greetings train.jsonl --repo-type dataset --local-dir out")
    assert (tmp_path / "out" / "train.jsonl").read_text() == '{"text": "hello"}\n'
    said = hf("repos duplicate alice/greetings alice/copy --type dataset", fails=True)
    assert "duplicating a repository is not supported by this hub" in said
