"""Where a job may publish, and with whose token. A job's "Also publish to" line is `owner/name`
(the Hub endpoint the operator configured, HUB_PUBLISH_HF_ENDPOINT, with the hub's own token) or
`scheme://host[:port] owner/name`. The hub's token goes to the configured endpoint and nowhere
else: another endpoint must be on the operator's list (HUB_PUBLISH_ALLOWED_ENDPOINTS), and then
it gets the job owner's own token for it, never the hub's. The form and the API check this at
submission, and the publish stage again before it sends anything (settings change)."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from hub.api.models import EndpointCredential
from hub.catalog.checkpoints import CheckpointError
from hub.catalog.store import check_repo_name


class TargetRefused(ValueError):
    """A publish target this hub will not send to, with a message for the job's submitter."""


@dataclass(frozen=True)
class Target:
    endpoint: str  # normalized scheme://host[:port]
    repo_id: str
    hubs_token: bool  # the configured endpoint, reached with the hub's token; else the owner's own


def normalize_endpoint(url: str) -> str:
    """`scheme://host[:port]` in lower case; refuses anything else a URL can carry (a user name
    or password, a path, a query, a fragment), which could send the request somewhere other
    than the host it seems to name."""
    refusal = TargetRefused(
        f"{url!r} is not an endpoint: write scheme://host[:port] (no user name, password, path or fragment)"
    )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refusal from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "#" in url
        or "?" in url
        or any(c.isspace() or c == "\\" for c in url)
    ):
        raise refusal
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}{f':{port}' if port is not None else ''}"


def configured_endpoint() -> str:
    return normalize_endpoint(settings.PUBLISH_HF_ENDPOINT)


def allowed_endpoints() -> set[str]:
    """The operator's list, normalized; an entry that is not a plain endpoint matches nothing."""
    allowed = set()
    for entry in settings.PUBLISH_ALLOWED_ENDPOINTS:
        try:
            allowed.add(normalize_endpoint(entry))
        except TargetRefused:
            continue
    return allowed


def resolve_target(line: str, owner) -> Target:
    """The target a job's line names, if `owner` may publish there (the same check at submission
    and in the publish stage)."""
    parts = line.split()
    if len(parts) not in (1, 2):
        raise TargetRefused(f"{line!r}: write a target as 'owner/name' or 'https://endpoint owner/name'")
    try:
        repo_id = check_repo_name(parts[-1])
    except CheckpointError as exc:
        raise TargetRefused(f"{line!r}: {exc}") from None
    home = configured_endpoint()
    endpoint = normalize_endpoint(parts[0]) if len(parts) == 2 else home
    if endpoint == home:
        return Target(endpoint, repo_id, hubs_token=True)
    if endpoint not in allowed_endpoints():
        raise TargetRefused(
            f"{line!r}: this hub does not publish to {endpoint}; write just 'owner/name' to publish to {home}, "
            "or ask an operator to allow that endpoint (HUB_PUBLISH_ALLOWED_ENDPOINTS)"
        )
    if owner is None or not EndpointCredential.objects.filter(user=owner, endpoint=endpoint).exists():
        raise TargetRefused(
            f"{line!r}: publishing to {endpoint} takes your own write token for it; add it under "
            'Tokens ("Tokens for other hubs") or with PUT /api/v1/credentials, then submit again'
        )
    return Target(endpoint, repo_id, hubs_token=False)


def token_for(target: Target, owner) -> str:
    """The token to send to the target's endpoint: never the hub's anywhere but the configured one."""
    if target.hubs_token:
        return settings.PUBLISH_HF_TOKEN
    return EndpointCredential.objects.get(user=owner, endpoint=target.endpoint).token


def save_credential(user, endpoint: str, token: str) -> EndpointCredential:
    """Keep `user`'s own token for an allowed endpoint (replacing the one kept before)."""
    endpoint = normalize_endpoint(endpoint.strip())
    if endpoint not in allowed_endpoints():
        raise TargetRefused(f"this hub does not publish to {endpoint} (HUB_PUBLISH_ALLOWED_ENDPOINTS)")
    token = token.strip()
    if not token or len(token) > 500 or any(c.isspace() for c in token):
        raise TargetRefused("give the token as one line of at most 500 characters")
    credential, _ = EndpointCredential.objects.update_or_create(user=user, endpoint=endpoint, defaults={"token": token})
    return credential
