"""A model card that makes every viewer's browser fetch from its author's server (a tracking
pixel, in Markdown or raw HTML, absolute, scheme-relative or data:) when its repository page is
opened. The rendered page keeps only images from the repository's own files, relative sources
resolved to them, and links off-site carry rel="noopener noreferrer nofollow"."""

import base64
import json
from html.parser import HTMLParser

import httpx2
from huggingface_hub import HfApi

CARD = """---
license: mit
---
# Card

![pixel](https://tracker.example/pixel.gif)
<img src="http://tracker.example/a.png" alt="a">
<img src="//tracker.example/b.png" alt="b">
<img src=" HTTPS://tracker.example/c.png" alt="c">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="d">
<img src="/tokens/" alt="e">
<img src="../../../elsewhere/x.png" alt="f">

![chart](images/chart.png)

[the paper](https://papers.example/1234)
"""


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.links: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "a":
            self.links.append(dict(attrs))


def test_it_draws_only_the_repositorys_own_images(hf_hub, alice, alice_token):
    api = HfApi(endpoint=hf_hub.url, token=alice_token)
    api.create_repo("alice/card")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    api.upload_file(path_or_fileobj=png, path_in_repo="images/chart.png", repo_id="alice/card")
    sha = api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id="alice/card").oid

    page = httpx2.get(f"{hf_hub.url}/alice/card", timeout=60)
    assert page.status_code == 200
    card = page.text[page.text.index("<h1>Card</h1>") :]
    tags = Tags()
    tags.feed(card)

    sources = {img.get("alt"): img.get("src") for img in tags.images}
    assert sources == {
        "pixel": None,
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "e": None,
        "f": None,
        "chart": f"/alice/card/resolve/{sha}/images/chart.png",
    }, json.dumps(sources)
    assert "tracker.example" not in card
    image = httpx2.get(hf_hub.url + sources["chart"], timeout=60)
    assert image.status_code == 200 and image.content == png and image.headers["Content-Type"] == "image/png"

    paper = next(a for a in tags.links if a.get("href") == "https://papers.example/1234")
    assert set(paper["rel"].split()) >= {"noopener", "noreferrer", "nofollow"}
