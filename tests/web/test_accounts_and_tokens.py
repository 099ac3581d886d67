"""Signing in and out, and API tokens: issued once in plaintext, hashed at rest, revocable."""

from hub.api.models import ApiToken, digest


def test_it_signs_in_and_out(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1", "next": "/jobs/"})
    assert response.status_code == 302 and response["Location"] == "/jobs/"
    assert "Sign out alice" in client.get("/").content.decode()
    client.post("/accounts/logout/")
    assert "Sign in" in client.get("/").content.decode()


def test_it_refuses_a_wrong_password(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()


def test_it_issues_a_token_shown_once_and_stored_hashed(client, alice):
    client.force_login(alice)
    html = client.post("/tokens/", {"name": "laptop", "scope": "write"}).content.decode()
    plaintext = html.split('<pre class="token" id="new-token">')[1].split("</pre>")[0]
    token = ApiToken.objects.get(user=alice)
    assert token.digest == digest(plaintext) and plaintext not in token.digest and token.scope == "write"
    assert plaintext not in client.get("/tokens/").content.decode()
    assert client.get("/api/v1/jobs?mine=true", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 200


def test_it_revokes_a_token(client, alice, bob):
    token, plaintext = ApiToken.issue(alice, "old")
    client.force_login(bob)
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 404  # not bob's
    client.force_login(alice)
    client.post(f"/tokens/{token.pk}/revoke/")
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 401


def test_it_needs_a_signed_in_user_for_tokens(client, db):
    assert client.get("/tokens/")["Location"].startswith("/accounts/login/")
