"""Deployment defaults: with debug off the hub passes Django's deployment check (HTTPS, HSTS,
secure cookies), redirects plain HTTP and keeps its cookies off it; the debug server, whose
error pages list the URLconf and settings, listens and answers on loopback only."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[2]


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the hub's variables (nor the browser tests'
    DJANGO_ALLOW_ASYNC_UNSAFE), except those given."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUB_", "DATABASE_URL", "CELERY_", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    return {**base, "HUB_VAR_DIR": str(tmp_path), **env}


def test_it_passes_the_deployment_check_with_debug_off(tmp_path):
    env = clean_env(
        tmp_path, HUB_DEBUG="0", HUB_SECRET_KEY=secrets.token_urlsafe(50), HUB_SITE_URL="https://hub.example.com"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout
    assert out.stderr == ""


def make_dry_run(target: str, **env: str) -> str:
    out = subprocess.run(
        ["make", "-n", target], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_it_binds_the_debug_server_to_loopback_unless_told_otherwise():
    for target in ("run", "web"):
        binds = re.findall(r"runserver (\S+)", make_dry_run(target))
        assert binds == ["127.0.0.1:8000"], (target, binds)
    assert re.findall(r"runserver (\S+)", make_dry_run("web", HOST="0.0.0.0", PORT="9000")) == ["0.0.0.0:9000"]


def test_it_answers_only_loopback_names_in_debug(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(tmp_path, DJANGO_SETTINGS_MODULE="hub.settings"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True ['localhost', '127.0.0.1', '[::1]']"


def test_it_redirects_to_https_and_keeps_cookies_off_plain_http(start_gunicorn):
    hub = start_gunicorn(HUB_HTTPS="1", HUB_TLS_PROXY="1")
    plain = httpx2.get(f"{hub.url}/accounts/login/")
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{hub.url.removeprefix('http://')}/accounts/login/"
    assert httpx2.get(f"{hub.url}/health").status_code in (200, 503)  # load balancers probe it over plain HTTP

    # as the TLS-terminating proxy forwards an HTTPS request
    secure = httpx2.get(f"{hub.url}/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    cookie = secure.headers["Set-Cookie"]
    assert cookie.startswith("csrftoken=") and "; Secure" in cookie

    # a debug page would list the URLconf; this is the production 404
    missing = httpx2.get(f"{hub.url}/no/such/page", headers={"X-Forwarded-Proto": "https"})
    assert missing.status_code == 404 and "URLconf" not in missing.text and "hub.urls" not in missing.text
