"""/metrics describes the hub's traffic and jobs: staff and a scraper holding the metrics token
read it, nobody else does. /health stays public but tells only which check failed, not the
addresses, paths or library messages behind it."""

import re
from contextlib import closing

import httpx2
from django.contrib.auth.models import User

from tests.helpers import free_port

SCRAPER_TOKEN = "metrics-" + "s" * 40


def staff_session(hub_url: str) -> httpx2.Client:
    User.objects.create_user("root", password="root-password-1", is_staff=True)
    browser = httpx2.Client(base_url=hub_url)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/accounts/login/").text).group(1)
    signed_in = browser.post(
        "/accounts/login/", data={"csrfmiddlewaretoken": csrf, "username": "root", "password": "root-password-1"}
    )
    assert signed_in.status_code == 302
    return browser


def test_it_shows_metrics_to_staff_and_the_scraper_only(start_gunicorn, alice, alice_token):
    hub = start_gunicorn(HUB_METRICS_TOKEN=SCRAPER_TOKEN)
    anonymous = httpx2.get(f"{hub.url}/metrics")
    assert anonymous.status_code == 401 and "hub_http_requests" not in anonymous.text
    assert "HUB_METRICS_TOKEN" in anonymous.text
    for wrong in (alice_token, "metrics-" + "x" * 40, SCRAPER_TOKEN[:-1]):
        refused = httpx2.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401, wrong

    scraper = httpx2.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"})
    assert scraper.status_code == 200 and "hub_jobs" in scraper.text
    with closing(staff_session(hub.url)) as staff:
        assert "hub_jobs" in staff.get("/metrics").text


def test_it_refuses_metrics_to_everyone_but_staff_without_a_token(start_gunicorn):
    hub = start_gunicorn()
    assert httpx2.get(f"{hub.url}/metrics", headers={"Authorization": "Bearer"}).status_code == 401
    with closing(staff_session(hub.url)) as staff:
        assert staff.get("/metrics").status_code == 200


def test_it_keeps_the_reasons_of_a_failing_health_check_to_itself(start_gunicorn, settings):
    port = free_port()  # nothing listens there: the broker is down
    hub = start_gunicorn(CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    response = httpx2.get(f"{hub.url}/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["database"] == {"ok": True}
    assert body["broker"] == {"ok": False, "error": "the broker does not answer"}
    text = response.text
    assert str(port) not in text and str(settings.VAR_DIR) not in text and "Error" not in text
    assert "refused" in hub.output().lower()  # the operator still learns why, from the log
