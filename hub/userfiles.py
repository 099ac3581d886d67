"""Responses that carry bytes a user uploaded (repository files, checkpoint files, archives).

Those bytes are the uploader's, not the hub's: a browser must never treat them as a page of the
hub's origin, where an .html or .svg file's script would act with the rights of whoever opened
it (a staff member, say). So they go out as plain text, a raster image or opaque bytes, never
sniffed into something else, and under a sandboxing policy should a browser render them anyway.
Clients (huggingface_hub, transformers) read only the bytes and the ETag / X-Repo-Commit /
X-Linked-* headers, none of which change."""

import mimetypes

from django.http import HttpResponseBase

# No scripts, no plugins, no requests of its own, a unique origin: what a file may do when shown.
SANDBOX = "sandbox; default-src 'none'"
# Types a browser only ever draws: they run nothing, and a model card may show them.
RASTER_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
TEXT_APPLICATIONS = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-sh",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
    }
)


def passive_type(name: str) -> str:
    """The Content-Type to serve the file `name` with: text as text/plain, images a browser only
    draws as themselves, and everything else (html, svg, xml-based formats included) either as
    text or as application/octet-stream."""
    guessed = mimetypes.guess_type(name)[0] or ""
    if guessed in RASTER_IMAGES:
        return guessed
    if guessed.startswith("text/") or guessed in TEXT_APPLICATIONS or guessed.endswith(("+xml", "+json")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def confine(response: HttpResponseBase, content_type: str) -> HttpResponseBase:
    """Mark a response of user bytes as inert: its type as given (see `passive_type`), no
    sniffing, and a policy that sandboxes it and lets it load nothing."""
    response["Content-Type"] = content_type
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX
    return response
