"""URL converters for repo ids. Repository routes catch `/{namespace}/{name}/...`, so they come
last in hub/urls.py and never match a namespace that another part of the hub owns: such paths
stay free for those apps (and for APPEND_SLASH redirects to reach them)."""

RESERVED = frozenset(
    {
        "accounts",
        "admin",
        "api",
        "datasets",
        "health",
        "jobs",
        "media",
        "metrics",
        "models",
        "settings",
        "spaces",
        "static",
        "suites",
        "tokens",
    }
)


def own_namespace(user) -> str:
    """Where `user` keeps repositories: their name, or for a name the hub reserves (the default
    superuser is `admin`) the organization `<name>-models`, which staff may create."""
    return f"{user.username}-models" if user.username.lower() in RESERVED else user.username


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


class RevisionConverter:
    """A branch, tag or commit id, also spelled as a full ref (`refs/heads/...`), which clients
    send with its slashes encoded and the server hands over decoded."""

    regex = r"(?:refs/(?:heads|tags)/)?[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
