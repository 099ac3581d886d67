from django.contrib.auth.models import User
from django.test import RequestFactory

from hub.api.models import ApiToken, bearer_token


def request_with(header: str | None):
    return RequestFactory().get("/", **({"HTTP_AUTHORIZATION": header} if header else {}))


def test_it_stores_only_a_hash_and_authenticates_the_plaintext(db):
    user = User.objects.create_user("ana")
    token, plaintext = ApiToken.issue(user, "laptop", ApiToken.Scope.WRITE)
    assert plaintext.startswith("hub_") and plaintext not in token.digest
    assert not ApiToken.objects.filter(digest__contains=plaintext).exists()
    found = bearer_token(request_with(f"Bearer {plaintext}"))
    assert found == token and found.can_write and found.last_used_at is None
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_it_refuses_revoked_unknown_and_malformed_tokens(db):
    user = User.objects.create_user("bo")
    token, plaintext = ApiToken.issue(user, "ci")
    token.revoke()
    for header in (f"Bearer {plaintext}", "Bearer hub_nope", f"Basic {plaintext}", "Bearer ", None):
        assert bearer_token(request_with(header)) is None


def test_it_refuses_the_tokens_of_inactive_users(db):
    user = User.objects.create_user("cy")
    _, plaintext = ApiToken.issue(user, "old")
    user.is_active = False
    user.save()
    assert bearer_token(request_with(f"Bearer {plaintext}")) is None
