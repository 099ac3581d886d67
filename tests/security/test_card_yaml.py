"""A model card whose YAML front matter the hub cannot turn into metadata: nested a thousand deep
(block or flow), or holding what JSON cannot carry (a set, bytes, a date as a key, an integer
longer than Python converts). Pushed as a commit by alice, it must not break listings, tag
filters, model_info or the repo page for anyone: the card counts as having no metadata there,
and /api/validate-yaml says what is wrong with it."""

import base64
import json

import httpx2
import pytest
from huggingface_hub import HfApi

CARDS = {
    "deep-block": "".join(f"{'  ' * i}k{i}:\n" for i in range(1000)) + "  " * 1000 + "leaf",
    "deep-flow": "tags: " + "[" * 1000 + "x" + "]" * 1000,
    "set": "tags: [a]\nodd: !!set {a, b}",
    "binary": "tags: [a]\nodd: !!binary aGVsbG8=",
    "date-key": "tags: [a]\n2024-01-01: released",
    "long-int": "tags: [a]\nodd: " + "1" * 5000,
}


def push_card(url: str, token: str, repo_id: str, card: str) -> None:
    """Commit README.md as a hostile client does: straight to the commit endpoint, skipping the
    check huggingface_hub makes through /api/validate-yaml before it uploads a card."""
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {
            "key": "file",
            "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(card.encode()).decode()},
        },
    ]
    answer = httpx2.post(
        f"{url}/api/models/{repo_id}/commit/main",
        headers={"Authorization": f"Bearer {token}"},
        content="\n".join(map(json.dumps, lines)),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("kind", CARDS)
def test_it_serves_everyone_despite_a_card_it_cannot_read(hf_hub, alice, alice_token, kind):
    card = f"---\n{CARDS[kind]}\n---\n# {kind}\n"
    alice_api = HfApi(endpoint=hf_hub.url, token=alice_token)
    alice_api.create_repo("alice/fine")
    alice_api.upload_file(
        path_or_fileobj=b"---\ntags: [a]\n---\n# fine\n", path_in_repo="README.md", repo_id="alice/fine"
    )
    alice_api.create_repo(f"alice/{kind}")
    with pytest.raises(ValueError, match="metadata"):  # the stock client asks the hub first, and is told why
        alice_api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=f"alice/{kind}")
    push_card(hf_hub.url, alice_token, f"alice/{kind}", card)

    anyone = HfApi(endpoint=hf_hub.url, token=False)
    assert sorted(m.id for m in anyone.list_models()) == sorted(["alice/fine", f"alice/{kind}"])
    assert [m.id for m in anyone.list_models(filter="a")] == ["alice/fine"]
    assert [m.id for m in anyone.list_models(filter="a", cardData=True, full=True)] == ["alice/fine"]
    assert anyone.model_info(f"alice/{kind}").card_data is None
    page = httpx2.get(f"{hf_hub.url}/alice/{kind}", timeout=60)
    assert page.status_code == 200 and f"<h1>{kind}</h1>" in page.text

    checked = httpx2.post(f"{hf_hub.url}/api/validate-yaml", json={"content": card, "repoType": "model"}, timeout=60)
    assert checked.status_code == 400, checked.text
    message = checked.json()["errors"][0]["message"]
    assert "metadata" in message and "Traceback" not in message and "/" not in message.split(":")[0]
