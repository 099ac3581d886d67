"""Model cards: README.md with YAML front matter. Split, check the metadata as the Hub's
/api/validate-yaml does, and render the Markdown to HTML that is safe to put in a page."""

import re

import nh3
import yaml
from markdown_it import MarkdownIt

# the same pattern huggingface_hub's repocard uses
FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")
_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table").enable("strikethrough")


def split(text: str) -> tuple[str, str]:
    """(YAML text, Markdown body); the YAML is empty when the card has no front matter."""
    match = FRONT_MATTER.match(text)
    if not match:
        return "", text
    return match.group(2), text[match.end():]


def load_yaml(raw: str):
    """safe_load without anchors and aliases: a card's metadata goes out as JSON (model_info), and
    aliases make it circular (an error) or exponentially large (a "billion laughs" card)."""
    if any(isinstance(token, (yaml.AliasToken, yaml.AnchorToken)) for token in yaml.scan(raw, Loader=yaml.SafeLoader)):
        raise yaml.YAMLError("YAML anchors and aliases are not accepted in model card metadata")
    return yaml.safe_load(raw)


def metadata(text: str) -> dict:
    """The card's metadata, or {} when it has none or it does not parse."""
    try:
        data = load_yaml(split(text)[0]) or {}
    except yaml.YAMLError:
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
    except yaml.YAMLError as exc:
        return [f"YAML does not parse: {exc}"], []
    if not isinstance(data, dict):
        return ["the metadata must be a YAML mapping"], []
    errors = []
    for key in ("license", "pipeline_tag", "library_name", "base_model_relation", "model_name"):
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets", "language", "metrics"):
        value = data.get(key)
        if value is not None and not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
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


def render(text: str) -> str:
    """The card's Markdown body as sanitized HTML (scripts, handlers and unsafe URLs removed)."""
    return nh3.clean(_markdown.render(split(text)[1]), link_rel="noopener noreferrer nofollow")
