"""Model cards: README.md with YAML front matter. Split, check the metadata as the Hub's
/api/validate-yaml does, and render the Markdown to HTML that is safe to put in a page."""

import datetime
import re
from urllib.parse import urljoin, urlsplit

import nh3
from markdown_it import MarkdownIt

from hub import parsing

# the same pattern huggingface_hub's repocard uses
FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")
# generous for real cards (a model-index is about seven levels deep, and some tens of KiB)
MAX_METADATA_DEPTH = 32
MAX_METADATA_CHARS = 256 << 10
_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table").enable("strikethrough")


def split(text: str) -> tuple[str, str]:
    """(YAML text, Markdown body); the YAML is empty when the card has no front matter."""
    match = FRONT_MATTER.match(text)
    if not match:
        return "", text
    return match.group(2), text[match.end() :]


class MetadataError(Exception):
    """Card metadata the hub does not take; the message says why."""


def load_yaml(raw: str):
    """The metadata as JSON-shaped data (model_info and list_models send it as JSON), or
    MetadataError. The bounded parser refuses aliases (a circular or "billion laughs" card),
    nesting and length past what a card needs, since the card is parsed wherever it is listed;
    then what JSON cannot carry (sets, bytes, keys that are not strings). Dates become ISO strings."""
    try:
        data = parsing.load_yaml(raw, "model card metadata", max_depth=MAX_METADATA_DEPTH, max_chars=MAX_METADATA_CHARS)
    except ValueError as exc:  # ParseError, or an integer longer than Python converts
        raise MetadataError(
            str(exc) if isinstance(exc, parsing.ParseError) else "model card metadata holds a number too long to read"
        ) from None
    return json_shaped(data)


def json_shaped(value: object) -> object:
    """`value` with dates as ISO strings, or MetadataError for what JSON cannot carry."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise MetadataError("model card metadata keys must be strings")
        return {key: json_shaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_shaped(item) for item in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise MetadataError(f"model card metadata may not hold a {type(value).__name__} (JSON has no such value)")


def metadata(text: str) -> dict:
    """The card's metadata, or {} when it has none or the hub does not take it."""
    try:
        data = load_yaml(split(text)[0]) or {}
    except MetadataError:
        return {}
    return data if isinstance(data, dict) else {}


def validate(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a card's metadata: what the Hub refuses, and what it only notes."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    raw, _ = split(text)
    if not raw.strip():
        return [], ["Empty or missing yaml metadata in repo card"]
    try:
        data = load_yaml(raw)
    except MetadataError as exc:
        return [str(exc)], []
    if not isinstance(data, dict):
        return ["the metadata must be a YAML mapping"], []
    errors = []
    for key in ("license", "pipeline_tag", "library_name", "base_model_relation", "model_name"):
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets", "language", "metrics"):
        value = data.get(key)
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    base = data.get("base_model")
    if base is not None and not (
        isinstance(base, str) or (isinstance(base, list) and base and all(isinstance(b, str) for b in base))
    ):
        errors.append('"base_model" must be a repo id or a list of repo ids')
    relation = data.get("base_model_relation")
    if relation is not None:
        if relation not in BASE_MODEL_RELATIONS:
            errors.append(f'"base_model_relation" must be one of {", ".join(BASE_MODEL_RELATIONS)}')
        if base is None:
            errors.append('"base_model_relation" needs a "base_model"')
    if "model-index" in data:
        try:
            model_index_to_eval_results(data["model-index"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            errors.append(f'"model-index" is malformed: {type(exc).__name__}: {exc}')
    return errors, []


def render(text: str, files_url: str) -> str:
    """The card's Markdown body as sanitized HTML (scripts, handlers and unsafe URLs removed).
    Images come from the repository's own files only, `files_url` being where they are served
    (its resolve URL at the commit shown, ending in /): a relative source is resolved against it,
    any other dropped, so that opening a card makes no browser fetch from a host its author chose
    (a tracking pixel). Links keep their targets but pass no referrer and no ranking."""

    def own_images(tag: str, attribute: str, value: str) -> str | None:
        return own_file(value, files_url) if tag == "img" and attribute == "src" else value

    return nh3.clean(
        _markdown.render(split(text)[1]), attribute_filter=own_images, link_rel="noopener noreferrer nofollow"
    )


def own_file(src: str, files_url: str) -> str | None:
    """`src` as a URL under `files_url`, or None when it leads anywhere else (another host, a
    data: URL, another page of the hub)."""
    url = urljoin(files_url, src.strip())
    parts = urlsplit(url)
    return url if not (parts.scheme or parts.netloc) and parts.path.startswith(files_url) else None
