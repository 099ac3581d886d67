import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def settings_in_subprocess(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_URL", "CELERY_"))}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "hub.settings", **env},
        capture_output=True,
        text=True,
    )


def test_it_runs_with_no_configuration(tmp_path):
    out = settings_in_subprocess(
        {"HUB_VAR_DIR": str(tmp_path)},
        "print(settings.DEBUG, settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL)",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "django.db.backends.sqlite3", "filesystem://localhost/"]
    assert (tmp_path / "broker" / "queue").is_dir()


def test_it_refuses_to_start_with_debug_off_and_no_secret_key(tmp_path):
    out = settings_in_subprocess({"HUB_VAR_DIR": str(tmp_path), "HUB_DEBUG": "0"}, "pass")
    assert out.returncode != 0
    assert "HUB_SECRET_KEY must be set" in out.stderr


def test_it_starts_with_debug_off_and_a_secret_key(tmp_path):
    out = settings_in_subprocess(
        {
            "HUB_VAR_DIR": str(tmp_path),
            "HUB_DEBUG": "0",
            "HUB_SECRET_KEY": "s3cret",
            "HUB_ALLOWED_HOSTS": "hub.example",
        },
        "print(settings.DEBUG, settings.ALLOWED_HOSTS)",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False ['hub.example']"


def test_it_switches_to_postgres_and_redis_from_the_environment(tmp_path):
    out = settings_in_subprocess(
        {
            "HUB_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://hub:pw@db.internal:5433/hubdb",
            "CELERY_BROKER_URL": "redis://cache.internal:6379/2",
        },
        "d = settings.DATABASES['default']; "
        "print(d['ENGINE'], d['HOST'], d['PORT'], d['NAME'], settings.CELERY_BROKER_TRANSPORT_OPTIONS)",
    )
    assert out.returncode == 0, out.stderr
    engine, host, port, name, *options = out.stdout.split(maxsplit=4)
    assert (engine, host, port, name) == ("django.db.backends.postgresql", "db.internal", "5433", "hubdb")
    assert "visibility_timeout" in options[0]


def test_it_sets_celery_up_for_multi_hour_tasks():
    from django.conf import settings

    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_TIME_LIMIT >= 3600


def test_it_runs_against_the_services_ci_asked_for():
    """`.ci/run` sets HUB_REQUIRE_SERVICES: then the suite must really be on PostgreSQL and Redis."""
    if os.environ.get("HUB_REQUIRE_SERVICES") != "1":
        return
    from django.conf import settings

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
