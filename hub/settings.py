"""One settings file, driven by environment variables, that runs with no configuration.

Defaults: DEBUG on, SQLite and the Celery broker in files under ./var, so `make run` works on a
fresh machine. Production sets HUB_DEBUG=0, HUB_SECRET_KEY, DATABASE_URL (PostgreSQL) and
CELERY_BROKER_URL (Redis).
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HUB_VAR_DIR", BASE_DIR / "var"))

DEBUG = env_bool("HUB_DEBUG", True)
SECRET_KEY = os.environ.get("HUB_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("HUB_SECRET_KEY must be set when HUB_DEBUG is off")
    SECRET_KEY = "insecure-local-development-key"
SITE_URL = os.environ.get("HUB_SITE_URL", "http://127.0.0.1:8000")
# Debug pages list the URLconf and settings, so debug answers on loopback names only (`make run`
# binds 127.0.0.1 too); otherwise the hub answers to the host of its own address, SITE_URL.
LOOPBACK_HOSTS = "localhost,127.0.0.1,[::1]"
ALLOWED_HOSTS = [
    h
    for h in os.environ.get("HUB_ALLOWED_HOSTS", LOOPBACK_HOSTS if DEBUG else urlsplit(SITE_URL).hostname or "").split(
        ","
    )
    if h
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("HUB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# HTTPS, on unless in debug: plain HTTP is redirected to HTTPS, browsers are told to stay on HTTPS
# for HUB_HSTS_SECONDS (HUB_HSTS_SUBDOMAINS: subdomains too, and the host may be preloaded into
# browsers) and cookies never travel over plain HTTP. Behind a proxy that terminates TLS, set
# HUB_TLS_PROXY=1 so that its X-Forwarded-Proto says which requests came over HTTPS (only then:
# any client can send that header). HUB_HTTPS=0 serves plain HTTP: tests on loopback, or a web
# process that workers reach on an internal network (see PUBLISH_LOCAL_ENDPOINT).
HTTPS = env_bool("HUB_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health$"]  # load balancers probe it over plain HTTP
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("HUB_HSTS_SECONDS", 365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = env_bool("HUB_HSTS_SUBDOMAINS", True)
if env_bool("HUB_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "hub.catalog",
    "hub.jobs",
    "hub.results",
    "hub.api",
    "hub.hfapi",
    "hub.suites",
    # The API's docs page serves Swagger UI from ninja's own static files only when the app is
    # installed (otherwise it loads them from a CDN, which an air-gapped hub cannot reach).
    "ninja",
]

MIDDLEWARE = [
    "hub.monitoring.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it turns a locked-out sign-in into the lockout page
]

# The hub's own pages run only the hub's own scripts and styles, from files (no inline code, no
# other hosts), so markup that slips into a page, from a model card, say, runs nothing. Files users
# uploaded get a stricter policy of their own (hub.userfiles).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# Sign-in throttle (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username from
# one address, that pair is refused for LOGIN_COOLOFF seconds, right password or not; a success
# clears the count. Staff can lift a lock early in the admin ("Access attempts").
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("HUB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("HUB_LOGIN_COOLOFF", 900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False  # else it announces itself on every manage.py command

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hub.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A worker process and the web process share the file: wait for locks instead of failing,
    # and give tests a file (not memory) database the worker subprocess can open too.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-hub.sqlite3")}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
# Without collectstatic (tests, `make run`), whitenoise serves straight from the finders.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "catalog"

# Web catalog and API: page sizes, and how long /health waits for a worker to answer a ping.
CATALOG_PAGE_SIZE = env_int("HUB_CATALOG_PAGE_SIZE", 20)
# The catalog list is kept rendered this long per query and audience (0: never); pages lag new rows by it.
CATALOG_CACHE_SECONDS = env_int("HUB_CATALOG_CACHE_SECONDS", 10)
API_PAGE_SIZE = env_int("HUB_API_PAGE_SIZE", 50)
HEALTH_PING_TIMEOUT = float(os.environ.get("HUB_HEALTH_PING_TIMEOUT", "1.0"))
# /metrics answers staff, and scrapers that send `Authorization: Bearer <METRICS_TOKEN>` (unset:
# staff only). /health answers everyone, with no detail beyond which check failed.
METRICS_TOKEN = os.environ.get("HUB_METRICS_TOKEN", "")

# Error reports mask tokens wherever they appear, not only in settings named like secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "hub.reporting.SecretsFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HUB_LOG_LEVEL", "INFO")},
}

# Where the hub keeps files: fetched base snapshots, compressed variants, scratch space.
MODELS_DIR = Path(os.environ.get("HUB_MODELS_DIR", VAR_DIR / "models"))
ARTIFACTS_DIR = Path(os.environ.get("HUB_ARTIFACTS_DIR", VAR_DIR / "artifacts"))

# Where the fetch stage downloads base models from (huggingface.co unless set), and the token
# it uses for gated or private repositories.
HF_ENDPOINT = os.environ.get("HUB_HF_ENDPOINT") or None
HF_TOKEN = os.environ.get("HUB_HF_TOKEN", "")
# The repositories HF_TOKEN is sent for, comma-separated glob patterns (`meta-llama/*`): any other
# id a user names is fetched anonymously, so users reach only what the public can. Empty: none.
HF_TOKEN_REPOS = [p.strip() for p in os.environ.get("HUB_HF_TOKEN_REPOS", "").split(",") if p.strip()]

# Calibration data for the compress stage: a local .txt/.jsonl file or folder, or an HF dataset
# id (unset: the compression library's default, which needs the Hugging Face hub). Counts of
# 0 take the library's defaults for the device.
CALIBRATION_DATASET = os.environ.get("HUB_CALIBRATION_DATASET", "")
CALIBRATION_SAMPLES = env_int("HUB_CALIBRATION_SAMPLES", 0)
CALIBRATION_SEQ_LEN = env_int("HUB_CALIBRATION_SEQ_LEN", 0)

# Task data for the baseline and validate stages: a local folder laid out <dir>/<task>/<split>.jsonl
# (as tests/fixtures/datasets) for offline hubs; unset, lm-eval fetches it from the HF hub.
EVAL_DATA_DIR = Path(os.environ["HUB_EVAL_DATA_DIR"]) if os.environ.get("HUB_EVAL_DATA_DIR") else None

# The benchmark stage. SCALE multiplies the profile's lengths and request counts (0: the
# engine's default, 1 on a GPU and 1/8 on a CPU); THREADS sets torch's intra-op threads for it
# (0: torch's default; on a small, shared CPU one thread is often the fastest).
BENCHMARK_SCALE = float(os.environ.get("HUB_BENCHMARK_SCALE", "0"))
BENCHMARK_THREADS = env_int("HUB_BENCHMARK_THREADS", 0)
# Base and variant run interleaved this many rounds each (at least 3), so that a speedup is a
# median with an interval rather than one pair of runs that load on the machine can skew.
BENCHMARK_ROUNDS = max(3, env_int("HUB_BENCHMARK_ROUNDS", 3))

# The hub's own model repositories (hub.hfapi): file contents stored once by sha256 under
# REPOS_DIR, served and received through the Hugging Face Hub HTTP API.
REPOS_DIR = Path(os.environ.get("HUB_REPOS_DIR", VAR_DIR / "repos"))
# How long an upload URL handed out by the LFS batch endpoint stays valid (it authorizes itself).
HFAPI_UPLOAD_URL_TTL = env_int("HUB_UPLOAD_URL_TTL", 3600)
# Files at least this large (or binary, or weights) are uploaded as LFS objects, not inline.
HFAPI_LFS_THRESHOLD = env_int("HUB_LFS_THRESHOLD", 1024 * 1024)
# The largest file an upload may announce (the Hugging Face Hub's own limit is 50 GB a file).
HFAPI_MAX_FILE_SIZE = env_int("HUB_MAX_FILE_SIZE", 50 * 1000**3)

# Users' own evaluation suites (hub.suites), stored by content under ARTIFACTS_DIR/suites. An
# upload (the suite YAML, its lm-eval task YAMLs and small data files) holds at most this many
# files, each and all together at most this large; the dataset repositories its tasks read, at
# most this much data (an upload builds every task on it before it is accepted).
SUITE_MAX_FILES = env_int("HUB_SUITE_MAX_FILES", 32)
SUITE_MAX_FILE_BYTES = env_int("HUB_SUITE_MAX_FILE_BYTES", 8 * 2**20)
SUITE_MAX_UPLOAD_BYTES = env_int("HUB_SUITE_MAX_UPLOAD_BYTES", 32 * 2**20)
SUITE_MAX_DATASET_BYTES = env_int("HUB_SUITE_MAX_DATASET_BYTES", 256 * 2**20)

# The publish stage. It uploads into this hub through its own HTTP API at PUBLISH_LOCAL_ENDPOINT
# (SITE_URL unless the workers reach the web server at another address) as the system user
# PUBLISH_USER; a job without an owner publishes under PUBLISH_NAMESPACE. External targets
# ("owner/name" in a job) go to PUBLISH_HF_ENDPOINT with PUBLISH_HF_TOKEN (clients of hubs
# without Xet need HF_HUB_DISABLE_XET=1 on the worker).
PUBLISH_LOCAL_ENDPOINT = os.environ.get("HUB_PUBLISH_LOCAL_ENDPOINT") or SITE_URL
PUBLISH_USER = os.environ.get("HUB_PUBLISH_USER", "hub")
PUBLISH_NAMESPACE = os.environ.get("HUB_PUBLISH_NAMESPACE", "hub")
PUBLISH_HF_ENDPOINT = os.environ.get("HUB_PUBLISH_HF_ENDPOINT", "https://huggingface.co")
PUBLISH_HF_TOKEN = os.environ.get("HUB_PUBLISH_HF_TOKEN", "")
# Other endpoints a job may name ("https://endpoint owner/name"), comma-separated, each exactly
# scheme://host[:port] (http only where listed so): they get the job owner's own token for them,
# set under Tokens, never PUBLISH_HF_TOKEN, which goes to PUBLISH_HF_ENDPOINT alone. Empty: none.
PUBLISH_ALLOWED_ENDPOINTS = [
    e.strip() for e in os.environ.get("HUB_PUBLISH_ALLOWED_ENDPOINTS", "").split(",") if e.strip()
]

# Celery. Jobs run for hours on GPUs: a message is acknowledged only after its stage ends, a
# worker that dies hands its message back, each worker takes one message at a time, and the
# broker's visibility timeout outlasts the longest stage so Redis does not redeliver a stage
# that is still running. The database, not the broker, is the source of truth; the reconciler
# (workers.reconcile) re-enqueues whatever the broker lost.
# "localhost" only so that kombu does not warn about a missing host on every connection
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost/")
STAGE_TIME_LIMIT = env_int("HUB_STAGE_TIME_LIMIT", 24 * 3600)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _sub in ("queue", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": STAGE_TIME_LIMIT + 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = STAGE_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = STAGE_TIME_LIMIT - 300
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = {"workers.run_stage": {"queue": "cpu"}}  # per-stage queue chosen at send time
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
RECONCILE_INTERVAL = env_int("HUB_RECONCILE_INTERVAL", 60)
CELERY_BEAT_SCHEDULE = {"reconcile": {"task": "workers.reconcile", "schedule": RECONCILE_INTERVAL}}

# A running stage writes a heartbeat this often; the reconciler treats a stage whose heartbeat
# is older than the timeout as orphaned by a dead worker.
STAGE_HEARTBEAT_INTERVAL = env_int("HUB_STAGE_HEARTBEAT_INTERVAL", 10)
STAGE_HEARTBEAT_TIMEOUT = env_int("HUB_STAGE_HEARTBEAT_TIMEOUT", 120)
STAGE_MAX_ATTEMPTS = env_int("HUB_STAGE_MAX_ATTEMPTS", 3)
# How long a worker keeps retrying to record a stage's outcome while the database is unreachable.
STAGE_DB_RETRY_SECONDS = env_int("HUB_STAGE_DB_RETRY_SECONDS", 300)
# A queued stage no worker has claimed after this long is sent again (claims are idempotent).
STAGE_REQUEUE_AFTER = env_int("HUB_STAGE_REQUEUE_AFTER", 600)

# Per-user limits on job submission (the web form and the API; staff and `manage.py submit_job`
# are exempt), so that one user cannot fill the GPU queue: queued or running jobs at once, jobs
# submitted in any 60 seconds, and stages in one job (fetch and baseline, then compress, validate,
# benchmark and publish per recipe: 30 is seven recipes with everything).
MAX_ACTIVE_JOBS = env_int("HUB_MAX_ACTIVE_JOBS", 4)
MAX_SUBMISSIONS_PER_MINUTE = env_int("HUB_MAX_SUBMISSIONS_PER_MINUTE", 10)
MAX_STAGES_PER_JOB = env_int("HUB_MAX_STAGES_PER_JOB", 30)

VAR_DIR.mkdir(parents=True, exist_ok=True)
