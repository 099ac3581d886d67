"""Bounded parsers for the YAML and JSON that users send: recipes, API bodies, model card
metadata. A document nested deeper than `max_depth`, longer than `max_chars`, or (YAML) using
aliases is refused with a ParseError that says so, before a parser's recursion or an alias's
expansion can fail the request with a server error.

YAML aliases are refused outright: nothing a user sends the hub needs them, and `*a` repeated
over nested lists expands to billions of items for whatever walks or serializes the result."""

import json
from typing import Any

import yaml

MAX_DEPTH = 32  # mappings and lists within one another: a recipe has 5, a model card's metadata a few
MAX_CHARS = 1024 * 1024


class ParseError(ValueError):
    """The text is not a document this hub accepts; the message says why."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's composer recurses once per level; this one stops at `max_depth` first."""

    def __init__(self, text: str, what: str, max_depth: int) -> None:
        super().__init__(text)
        self.what, self.max_depth, self.depth = what, max_depth, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise ParseError(f"{self.what}: YAML aliases (*name) are not accepted; write the value out")
        nested = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        self.depth += nested
        if self.depth > self.max_depth:
            raise ParseError(f"{self.what} is nested more than {self.max_depth} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= nested


def _check_length(text: str | bytes, what: str, max_chars: int | None) -> None:
    if max_chars is not None and len(text) > max_chars:
        raise ParseError(f"{what} is longer than {max_chars} characters")


def load_yaml(text: str, what: str = "the document", *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> Any:
    """`yaml.safe_load`, bounded; `what` names the document in messages."""
    _check_length(text, what, max_chars)
    loader = _BoundedLoader(text, what, max_depth)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ParseError(f"{what} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_json(
    text: str | bytes, what: str = "the document", *, max_depth: int = MAX_DEPTH, max_chars: int | None = MAX_CHARS
) -> Any:
    """`json.loads`, bounded; `what` names the document in messages. `max_chars=None` leaves the
    length to the caller (a request body Django has already bounded)."""
    _check_length(text, what, max_chars)
    too_deep = ParseError(f"{what} is nested more than {max_depth} levels deep")
    try:
        value = json.loads(text)
    except RecursionError:  # the decoder recurses once per level: far past max_depth, it gives up here
        raise too_deep from None
    except ValueError as exc:  # also bytes that are not UTF-8
        raise ParseError(f"{what} is not valid JSON: {exc}") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise too_deep
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value
