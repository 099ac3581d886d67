"""A live hub (pytest-django's live server: the real views over real HTTP) that stock
huggingface_hub clients talk to, and the users and tokens they talk to it with."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from hub.api.models import ApiToken
from hub.catalog.checkpoints import sha256_file


@pytest.fixture(autouse=True)
def _storage(isolated_storage, settings):
    settings.REPOS_DIR = isolated_storage / "repos"
    return isolated_storage


@pytest.fixture
def hub_url(live_server, settings, monkeypatch) -> str:
    """The live hub's URL. tests/conftest.py puts huggingface_hub offline so that nothing reaches
    huggingface.co; these tests reach only this hub, over LFS (it has no Xet)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    settings.SITE_URL = live_server.url
    settings.PUBLISH_LOCAL_ENDPOINT = live_server.url
    return live_server.url


@pytest.fixture
def alice(transactional_db) -> User:
    return User.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(transactional_db) -> User:
    return User.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def alice_token(alice) -> str:
    return ApiToken.issue(alice, "tests", ApiToken.Scope.WRITE)[1]


@pytest.fixture
def bob_token(bob) -> str:
    return ApiToken.issue(bob, "tests", ApiToken.Scope.WRITE)[1]


def folder_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
