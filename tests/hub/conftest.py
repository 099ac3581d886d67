import pytest


@pytest.fixture(autouse=True)
def _storage(isolated_storage):
    return isolated_storage
