"""URL converters for repo ids. Repository routes catch `/{namespace}/{name}/...`, so they come
last in hub/urls.py and never match a namespace that another part of the hub owns: such paths
stay free for those apps (and for APPEND_SLASH redirects to reach them)."""

RESERVED = frozenset({
    "accounts", "admin", "api", "datasets", "health", "jobs", "media", "metrics", "models", "settings",
    "spaces", "static", "tokens",
})


class NamespaceConverter:
    regex = r"(?!(?i:" + "|".join(sorted(RESERVED)) + r")(?:/|$))[A-Za-z0-9][A-Za-z0-9._-]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class NameConverter:
    regex = r"[A-Za-z0-9][A-Za-z0-9._-]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
