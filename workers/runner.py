"""Run one stage: claim its row, give its body a progress/cancel context backed by a heartbeat
thread, record its outputs atomically, and hand on to the stages that waited for it."""

import functools
import logging
import re
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from hub.jobs.models import Job, Stage

log = logging.getLogger(__name__)


def with_db_retry(what: str, fn: Callable[[], object]) -> object:
    """Run `fn` (one whole transaction), retrying while the database is briefly unreachable, so
    a stage's outcome is not lost to a database restart that happens as it ends."""
    deadline = time.monotonic() + settings.STAGE_DB_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("database unavailable while %s (%s); retrying in %.1f s", what, exc, delay)
            connection.close()
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


@functools.lru_cache(maxsize=8)
def _folder_names(models: Path, artifacts: Path, repos: Path, var: Path) -> tuple[re.Pattern, dict[str, str]]:
    """A pattern matching any of the worker's folders (as configured and as resolved), and the
    relative name of each."""
    folders = {
        models: "models",
        artifacts: "artifacts",
        repos: "repos",
        var: "var",
        Path(sysconfig.get_paths()["purelib"]): "site-packages",
        Path(sys.prefix): "venv",
        Path(sys.base_prefix): "python",
        settings.BASE_DIR: ".",
        Path(tempfile.gettempdir()): "tmp",
    }
    names: dict[str, str] = {}
    for folder, name in folders.items():
        for spelling in (str(folder), str(folder.resolve())):
            if spelling.rstrip("/"):
                names.setdefault(spelling.rstrip("/"), name)
    # longest first, so that a folder inside another (models inside var) takes its own name
    alternatives = "|".join(re.escape(f) for f in sorted(names, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})(?![\\w.-])"), names


def relative_paths(text: str) -> str:
    """`text` with the worker's own folders (var, models, artifacts, virtualenv, site-packages,
    the checkout) named relatively: stage logs, errors and outputs are shown to anyone who may
    see the job, and need not map the worker's disk for them."""
    pattern, names = _folder_names(
        Path(settings.MODELS_DIR), Path(settings.ARTIFACTS_DIR), Path(settings.REPOS_DIR), Path(settings.VAR_DIR)
    )
    return pattern.sub(lambda m: names[m.group(0)], text)


def _relative_outputs(value: object) -> object:
    if isinstance(value, str):
        return relative_paths(value)
    if isinstance(value, dict):
        return {k: _relative_outputs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative_outputs(v) for v in value]
    return value


class StageError(RuntimeError):
    """An expected failure whose message says everything (no traceback needed)."""


class StageRefused(StageError):
    """A failure the same job meets every time it runs (a recipe the model cannot take): the page
    offers to edit and resubmit the job instead of retrying the stage."""


@dataclass
class StageResult:
    outputs: dict
    # Writes the stage's rows; runs in the same transaction that marks the stage done.
    record: Callable[[], None] | None = None
    versions: dict = field(default_factory=dict)


class StageContext:
    """What a stage body gets: `progress(done, message)` and `cancelled()` for the libraries, and
    a logger whose lines land in the stage's log tail. All database writes happen on a
    heartbeat thread, at most about once a second, so the body never waits on the database.
    Progress also lands in the log, as a line at most every PROGRESS_LOG_INTERVAL seconds, so
    that the log of a stage that runs for many minutes shows it advancing."""

    TICK = 1.0
    PROGRESS_LOG_INTERVAL = 30.0

    def __init__(self, stage: Stage, clock: Callable[[], float] = time.monotonic) -> None:
        self.stage = stage
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + settings.STAGE_TIME_LIMIT
        self._progress: tuple[float, str] | None = None
        self._logged = (self.started, "")  # when the last progress line was logged, and what it said
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cancel_requested = False
        self.lost = False
        self.timed_out = False
        self.logger = logging.getLogger(f"stage.{stage.pk}")
        self._handler = _ListHandler(self)
        self.logger.addHandler(self._handler)
        self.logger.setLevel(logging.INFO)
        self._thread = threading.Thread(target=self._beat_loop, name=f"heartbeat-{stage.pk}", daemon=True)

    def progress(self, done: float, message: str = "") -> None:
        message = relative_paths(message)
        line = f"{done:.0%} {message}".rstrip()
        with self._lock:
            self._progress = (done, message)
            now, (last_at, last_line) = self.clock(), self._logged
            due = line != last_line and now - last_at >= self.PROGRESS_LOG_INTERVAL
            if due:
                self._logged = (now, line)
        if due:  # outside the lock: the log handler takes it too
            self.logger.info("%s", line)

    def cancelled(self) -> bool:
        if self.clock() > self.deadline:
            self.timed_out = True
        return self.cancel_requested or self.lost or self.timed_out

    def add_log(self, line: str) -> None:
        with self._lock:
            self._lines.append(relative_paths(line.rstrip("\n")) + "\n")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._try_flush()

    def _try_flush(self) -> bool:
        try:
            self._flush()
            return True
        except (OperationalError, InterfaceError) as exc:  # a database hiccup must not kill the stage
            log.warning("heartbeat of stage %s failed: %s", self.stage.pk, exc)
            connection.close()
            return False

    def _flush(self) -> None:
        with self._lock:
            progress, self._progress = self._progress, None
            lines, self._lines = "".join(self._lines), []
        done, message = progress if progress else (None, None)
        if not self.stage.beat(done, message, lines):
            self.lost = True
        self.cancel_requested = Job.cancel_requested_for(self.stage.job_id)

    def _beat_loop(self) -> None:
        last_beat = 0.0
        try:
            while not self._stop.wait(self.TICK):
                with self._lock:
                    pending = self._progress is not None or bool(self._lines)
                if pending or time.monotonic() - last_beat >= settings.STAGE_HEARTBEAT_INTERVAL:
                    if self._try_flush():
                        last_beat = time.monotonic()
        finally:
            connection.close()


LOG_LINE = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")  # a line of a stage's log


class _ListHandler(logging.Handler):
    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setFormatter(LOG_LINE)

    def emit(self, record: logging.LogRecord) -> None:
        self.ctx.add_log(self.format(record))


def execute(stage_id: int, worker: str) -> str:
    from workers.stages import BODIES

    try:
        stage = Stage.objects.select_related("job__base_model", "recipe").get(pk=stage_id)
    except Stage.DoesNotExist:
        return "gone"
    if not stage.claim(worker):
        return "not claimed"
    ctx = StageContext(stage)
    ctx.start()
    ctx.logger.info("%s started on %s (attempt %d)", stage.name, worker, stage.attempt)
    try:
        result = BODIES[stage.kind](stage, ctx)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the stage
        # a refusal, or the body stopping because it was cancelled, lost or out of time: the
        # message says it all, a traceback would only bury it
        if isinstance(exc, StageError) or ctx.cancelled():
            ctx.logger.info("%s", exc)
        else:
            ctx.logger.info("%s", "".join(traceback.format_exception(exc))[-4000:])
        ctx.stop()
        return with_db_retry("recording the failure", functools.partial(_record_failure, stage, ctx, exc))
    ctx.logger.info("%s finished in %.1f s", stage.name, ctx.clock() - ctx.started)
    ctx.stop()
    if result.versions:
        with_db_retry("recording versions", lambda: stage.job.record_versions(result.versions))
    outcome = with_db_retry("recording the outcome", lambda: _record_success(stage, result))
    if outcome == "done":
        with_db_retry("queueing the next stages", stage.job.dispatch)
    return outcome


def _record_success(stage: Stage, result: StageResult) -> str:
    with transaction.atomic():
        # A cancel that lands while the body finishes still wins: the result is recorded only if
        # no cancel was committed before it.
        if Job.cancel_requested_for(stage.job_id, lock=True):
            reason = "cancelled by request before its result was recorded"
            # the log already says the body finished; without this line it would contradict the status
            stage.beat(log_lines=LOG_LINE.format(logging.makeLogRecord({"msg": f"{stage.name} {reason}"})) + "\n")
            cancelled = stage.fail(reason, status=Stage.Status.CANCELLED)
            return Stage.Status.CANCELLED if cancelled else "lost claim"
        if result.record:
            result.record()
        if not stage.finish(_relative_outputs(result.outputs)):
            transaction.set_rollback(True)
            return "lost claim"
    return "done"


def _record_failure(stage: Stage, ctx: StageContext, exc: Exception) -> str:
    if ctx.lost:
        return "lost claim"  # another attempt owns the stage now; it records the outcome
    if ctx.cancel_requested or Job.cancel_requested_for(stage.job_id):
        stage.fail("cancelled by request", status=Stage.Status.CANCELLED)
    elif ctx.timed_out:
        stage.fail(f"time limit of {settings.STAGE_TIME_LIMIT} s exceeded")
    elif isinstance(exc, StageError):
        stage.fail(relative_paths(str(exc)), retry_helps=not isinstance(exc, StageRefused))
    else:
        stage.fail(relative_paths(f"{type(exc).__name__}: {exc}"))
    return stage.status
