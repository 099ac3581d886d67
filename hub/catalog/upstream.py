"""The hub's Hugging Face token (HUB_HF_TOKEN) reaches gated and private repositories upstream on
the hub's account, so it is not lent to whatever id a user names: it is sent only for the
repositories an operator lists (HUB_HF_TOKEN_REPOS, glob patterns such as `meta-llama/*`), and
everything else is fetched anonymously."""

from fnmatch import fnmatchcase

from django.conf import settings

# what a refusal from upstream tells the submitter when the hub sent no token
WITHOUT_TOKEN = (
    "the hub asks the Hub anonymously for it: an operator can let it use its token (HUB_HF_TOKEN) "
    "for this repository by listing it in HUB_HF_TOKEN_REPOS"
)


def token_for(repo_id: str) -> str | None:
    """HUB_HF_TOKEN if an operator listed `repo_id` for it, else None (anonymous)."""
    if settings.HF_TOKEN and any(fnmatchcase(repo_id.lower(), p.lower()) for p in settings.HF_TOKEN_REPOS):
        return settings.HF_TOKEN
    return None


def refusal_hint(repo_id: str) -> str:
    """Why the Hub may have refused `repo_id`, for a gated or not-found answer."""
    return "" if token_for(repo_id) else f" ({WITHOUT_TOKEN})"
