"""/health (database, broker, a worker answering) and /metrics (Prometheus text).

/health is public, so it says only which check failed: the reasons (addresses, paths, library
messages) go to the log. /metrics, which describes the hub's traffic and jobs, answers staff and
scrapers holding METRICS_TOKEN.

Job and stage figures are read from the database at scrape time: the rows are the truth, and
every web process then reports the same numbers. Request counters are per process (run
gunicorn with one scrape target per worker, or read them as a sample)."""

import hmac
import logging
import time

from django.conf import settings
from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()  # no auto-describe: describing would query the database at import
REQUESTS = Counter("hub_http_requests", "HTTP requests answered", ["method", "view", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "hub_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["view"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestMetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        # Label by route name, never by raw path: paths carry ids and would grow without bound.
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route) if match else "unmatched"
        REQUESTS.labels(request.method, view, str(response.status_code)).inc()
        LATENCY.labels(view).observe(time.perf_counter() - start)
        return response


class JobCollector:
    """Job and stage counts, stage durations and queue depth, from the rows."""

    def collect(self):
        from hub.jobs.models import Job, Stage

        jobs = GaugeMetricFamily("hub_jobs", "Jobs by status", labels=["status"])
        counts = dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in Job.Status.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        stages = GaugeMetricFamily("hub_stages", "Stages by kind and status", labels=["kind", "status"])
        rows = Stage.objects.values("kind", "status").annotate(n=Count("id"))
        seen = {(r["kind"], r["status"]): r["n"] for r in rows}
        for kind in Stage.Kind.values:
            for status in Stage.Status.values:
                stages.add_metric([kind, status], seen.get((kind, status), 0))
        yield stages

        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        done = (
            Stage.objects.filter(status=Stage.Status.DONE, started_at__isnull=False, finished_at__isnull=False)
            .values("kind")
            .annotate(n=Count("id"), total=Sum(took))
        )
        seconds = CounterMetricFamily(
            "hub_stage_duration_seconds", "Run time of the last attempt of each finished stage", labels=["kind"]
        )
        finished = CounterMetricFamily("hub_stage_finished", "Stages finished done", labels=["kind"])
        for row in done:
            seconds.add_metric([row["kind"]], row["total"].total_seconds() if row["total"] else 0.0)
            finished.add_metric([row["kind"]], row["n"])
        yield seconds
        yield finished

        depth = GaugeMetricFamily("hub_queue_depth", "Stages queued and not yet claimed, per queue", labels=["queue"])
        queued = dict(
            Stage.objects.filter(status=Stage.Status.QUEUED)
            .values_list("queue")
            .annotate(n=Count("id"))
            .values_list("queue", "n")
        )
        for queue in sorted(set(Stage.QUEUES.values()) | set(queued)):
            depth.add_metric([queue], queued.get(queue, 0))
        yield depth


REGISTRY.register(JobCollector())


def may_scrape(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(settings.METRICS_TOKEN)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())
    )


def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        response = HttpResponse(
            "/metrics is for staff, or for scrapers that send Authorization: Bearer <HUB_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer and at least one worker answers a ping."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    checks["workers"] = _check_workers() if checks["broker"]["ok"] else {"ok": False, "error": "broker down"}
    ok = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ok" if ok else "failing", **checks}, status=200 if ok else 503)


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception:  # noqa: BLE001 - any failure is the answer
        log.warning("health: the database does not answer", exc_info=True)
        return {"ok": False, "error": "the database does not answer"}


def _check_broker() -> dict:
    from workers.celery import app

    try:
        with app.connection_for_write() as conn:
            # one quick retry: a probe that answers after seconds is itself a failure to its caller
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=settings.HEALTH_PING_TIMEOUT)
        return {"ok": True}
    except Exception:  # noqa: BLE001
        log.warning("health: the broker does not answer", exc_info=True)
        return {"ok": False, "error": "the broker does not answer"}


def _check_workers() -> dict:
    from workers.celery import app

    try:
        replies = app.control.ping(timeout=settings.HEALTH_PING_TIMEOUT) or []
    except Exception:  # noqa: BLE001
        log.warning("health: pinging the workers failed", exc_info=True)
        return {"ok": False, "error": "pinging the workers failed"}
    # how many, not who: worker names carry host names
    answered = sum(len(reply) for reply in replies)
    return (
        {"ok": True, "answered": answered} if answered else {"ok": False, "error": "no worker answered", "answered": 0}
    )
