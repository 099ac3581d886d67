"""Password guessing: after a run of wrong passwords for one user from one address, the sign-in
form refuses that user from that address, the right password included, until a cool-off passes;
others still sign in meanwhile."""

import re
import time

import httpx2

from hub.api.models import ApiToken


def sign_in(hub_url: str, username: str, password: str) -> httpx2.Response:
    """The sign-in form as a browser posts it; the answer is not followed."""
    with httpx2.Client(base_url=hub_url) as browser:
        form = browser.get("/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        return browser.post(
            "/accounts/login/", data={"csrfmiddlewaretoken": csrf, "username": username, "password": password}
        )


def signed_in(response: httpx2.Response) -> bool:
    return response.status_code == 302 and "sessionid" in response.headers.get("Set-Cookie", "")


def test_it_locks_a_username_after_repeated_wrong_passwords_until_the_cool_off(start_gunicorn, alice, bob):
    hub = start_gunicorn(HUB_LOGIN_COOLOFF="4")
    for guess in range(10):
        response = sign_in(hub.url, "alice", f"guess-{guess}")
        assert not signed_in(response)
    locked = sign_in(hub.url, "alice", "alice-password-1")
    assert not signed_in(locked), "the right password worked after 10 wrong ones"
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text and "Traceback" not in locked.text

    assert signed_in(sign_in(hub.url, "bob", "bob-password-1"))  # a lock on alice, not on the address

    time.sleep(4.5)
    assert signed_in(sign_in(hub.url, "alice", "alice-password-1"))


def test_it_keeps_tokens_working_for_a_locked_user(start_gunicorn, alice, alice_token):
    """The lock is on the password form: tokens, long random secrets, are not guessable this way."""
    hub = start_gunicorn()
    for guess in range(6):
        sign_in(hub.url, "alice", f"guess-{guess}")
    assert sign_in(hub.url, "alice", "alice-password-1").status_code == 429
    whoami = httpx2.get(f"{hub.url}/api/whoami-v2", headers={"Authorization": f"Bearer {alice_token}"})
    assert whoami.status_code == 200 and whoami.json()["name"] == "alice"
    assert ApiToken.objects.filter(user=alice).count() == 1
