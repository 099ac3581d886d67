"""REST API /api/v1/: models, variants, results and jobs, with an OpenAPI 3 schema and its docs
(served from local files: the hub runs air-gapped).

Reads are open to everyone for public rows; a bearer token shows its user's private rows too.
Writes (submit, cancel, retry) need a token with the write scope. Every error has one shape:
{"error": {"code": ..., "message": ..., "details": ...}}."""

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Field, File, Form, NinjaAPI, Query, Schema, Status, UploadedFile
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import PageNumberPagination, paginate
from ninja.parser import Parser
from ninja.security import HttpBearer
from pydantic import field_validator

from hub.api.models import ApiToken
from hub.catalog.models import BaseModel, Variant
from hub.catalog.queries import SIZES, filtered, with_measures
from hub.errors import too_large_message
from hub.jobs.forms import JobForm
from hub.jobs.models import Job, QuotaExceeded, Stage
from hub.jobs.presets import GPUS
from hub.jobs.targets import TargetRefused, normalize_endpoint, save_credential
from hub.parsing import ParseError, load_json
from hub.results.models import BenchmarkRun, EvalRun
from hub.suites.definition import SuiteRefused, read_uploads
from hub.suites.models import Suite, SuiteInUse


class Bearer(HttpBearer):
    """`Authorization: Bearer <token>`. With `optional`, a request without the header is served as
    anonymous; a header with a bad token is refused either way, never silently downgraded."""

    def __init__(self, optional: bool = False, write: bool = False) -> None:
        super().__init__()
        self.optional, self.write = optional, write

    def __call__(self, request: HttpRequest):
        if self.optional and not request.headers.get("Authorization"):
            return AnonymousUser()
        result = super().__call__(request)
        if result is None:
            raise AuthenticationError(message="a valid `Authorization: Bearer <token>` header is required")
        return result

    def authenticate(self, request: HttpRequest, token: str):
        api_token = ApiToken.authenticate(token)
        if api_token is None:
            raise AuthenticationError(message="unknown or revoked token")
        if self.write and not api_token.can_write:
            raise HttpError(403, "this token is read-only; issue one with the write scope")
        return api_token.user


class BoundedParser(Parser):
    """JSON bodies within hub.parsing's depth bound (Django bounds their size)."""

    def parse_body(self, request: HttpRequest):
        return load_json(request.body, "the request body", max_chars=None)


api = NinjaAPI(
    title="Model hub API",
    version="1",
    # the docs page renders this as Markdown under its title: its only way back to the site
    description="Models, variants, accuracy and speed results, and compression jobs.\n\n[Back to the hub](/)",
    urls_namespace="api-v1",
    auth=Bearer(optional=True),
    parser=BoundedParser(),
)


def error(request: HttpRequest, status: int, code: str, message: str, details=None) -> HttpResponse:
    body = {"error": {"code": code, "message": message, **({"details": details} if details is not None else {})}}
    return api.create_response(request, body, status=status)


CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    429: "throttled",
}


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    # ninja says only "Cannot parse request body"; the parser's own message says what is wrong
    message = str(exc.__cause__) if isinstance(exc.__cause__, ParseError) else str(exc)
    return error(
        request, exc.status_code, CODES.get(exc.status_code, "error"), message or CODES.get(exc.status_code, "error")
    )


@api.exception_handler(RequestDataTooBig)
def on_too_large(request, exc):
    return error(request, 413, "too_large", too_large_message())


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    return error(request, 422, "invalid", "the request is not valid", exc.errors)


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, "not_found", str(exc) or "not found")


@api.exception_handler(PermissionDenied)
def on_forbidden(request, exc):
    return error(request, 403, "forbidden", str(exc) or "forbidden")


@api.exception_handler(SuiteRefused)
def on_suite_refused(request, exc: SuiteRefused):
    return error(
        request,
        409 if isinstance(exc, SuiteInUse) else 422,
        "conflict" if isinstance(exc, SuiteInUse) else "invalid",
        str(exc),
    )


@api.exception_handler(QuotaExceeded)
def on_quota_exceeded(request, exc: QuotaExceeded):
    response = error(request, 429, "throttled", str(exc))
    response["Retry-After"] = str(exc.retry_after)
    return response


class Pagination(PageNumberPagination):
    class Input(Schema):
        # bounded so that page * page_size stays an OFFSET the database can take (a bigint)
        page: int = Field(1, ge=1, le=10**9)
        page_size: int | None = Field(None, ge=1, le=10**9)

    def __init__(self, **kwargs) -> None:
        super().__init__(page_size=settings.API_PAGE_SIZE, max_page_size=500, **kwargs)


class ErrorBody(Schema):
    code: str
    message: str
    details: list | dict | None = None


class ErrorOut(Schema):
    error: ErrorBody


ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}


# -- schemas ------------------------------------------------------------------------------------


class FileOut(Schema):
    path: str
    size: int
    sha256: str


class BaseModelOut(Schema):
    id: int
    name: str
    hf_repo_id: str
    on_this_hub: bool = Field(description="hf_repo_id is a repository of this hub, not of huggingface.co")
    revision: str
    resolved_sha: str
    status: str
    architecture: str
    num_parameters: int | None
    dtype: str
    license: str
    size_bytes: int | None
    private: bool
    created_at: datetime
    url: str

    @staticmethod
    def resolve_url(obj: BaseModel) -> str:
        return reverse("model", args=[obj.pk])


class BaseModelDetail(BaseModelOut):
    config: dict
    files: list[FileOut]
    variants: list[int]

    @staticmethod
    def resolve_variants(obj: BaseModel, context) -> list[int]:
        return list(obj.variants.visible_to(context["request"].auth).values_list("pk", flat=True))


class PublicationOut(Schema):
    endpoint: str
    repo_id: str
    commit_sha: str
    url: str
    created_at: datetime


class VariantOut(Schema):
    id: int
    name: str
    base: int = Field(alias="base_id")
    recipe: str
    scheme: str
    gate: str = Field(
        description="pending; validated (every task's 95% interval of the recovery clears the threshold); "
        "inconclusive (at this sample size: some interval straddles it, none lies below); failed (some task's "
        "interval lies below it)"
    )
    recovery: float | None = Field(None, description="worst task's recovery in the latest validation")
    speedup: float | None = Field(
        None,
        description="output tokens/s over the base's, in the same benchmark stage: the median of interleaved "
        "rounds (runs from before rounds: their one ratio)",
    )
    speedup_low: float | None = Field(None, description="the speedup's 95% interval, low end (none for one round)")
    speedup_high: float | None = Field(None, description="the speedup's 95% interval, high end (none for one round)")
    speedup_verdict: str | None = Field(
        None,
        description="faster, slower, or inconclusive (the interval includes 1 or the rounds disagree: the figure "
        "is this machine's noise); none for one round",
    )
    size_bytes: int | None
    private: bool
    job: int | None = Field(alias="job_id")
    created_at: datetime
    url: str

    @staticmethod
    def resolve_recipe(obj: Variant) -> str:
        return str(obj.recipe)

    @staticmethod
    def resolve_url(obj: Variant) -> str:
        return reverse("variant", args=[obj.pk])


class VariantDetail(VariantOut):
    files: list[FileOut]
    compression_report: dict
    gate_report: dict
    publications: list[PublicationOut]

    @staticmethod
    def resolve_publications(obj: Variant) -> list:
        return list(obj.publications.all())


class RecoveryOut(Schema):
    task: str
    metric: str
    base_value: float
    variant_value: float
    recovery: float
    recovery_low: float = Field(description="95% interval of the recovery, low end")
    recovery_high: float = Field(description="95% interval of the recovery, high end")
    diff: float
    diff_stderr: float | None
    ci_low: float | None = Field(description="95% interval of the difference, low end")
    ci_high: float | None = Field(description="95% interval of the difference, high end")
    threshold: float
    verdict: str = Field(
        description="validated (recovery_low >= threshold), failed (recovery_high < threshold), or inconclusive "
        "at this sample size (in between)"
    )
    documents_needed: int | None = Field(
        description="inconclusive only: about how many documents would settle it; none when more cannot"
    )
    verdict_note: str = Field(description="inconclusive only: what more documents would do, in words")
    base_run: int = Field(alias="base_run_id")


class EvalRunOut(Schema):
    id: int
    base_model: int | None = Field(alias="base_model_id")
    variant: int | None = Field(alias="variant_id")
    job: int | None = Field(alias="job_id")
    suite: str
    suite_version: str
    engine_version: str
    settings: dict
    metrics: dict
    duration_s: float | None
    created_at: datetime
    recoveries: list[RecoveryOut]

    @staticmethod
    def resolve_recoveries(obj: EvalRun) -> list:
        return list(obj.recoveries.all())


class BenchmarkRunOut(Schema):
    id: int
    base_model: int | None = Field(alias="base_model_id")
    variant: int | None = Field(alias="variant_id")
    job: int | None = Field(alias="job_id")
    stage: int | None = Field(alias="stage_id")
    profile: str
    profile_version: str
    engine_version: str
    hardware: dict
    settings: dict
    metrics: dict = Field(
        description="the headline round's latencies, throughput and memory; `rounds`: each round's; a variant's "
        "`speedup`: per figure the median of the rounds' ratios, `low`/`high` (95% interval), `verdict`, `summary`"
    )
    runnable: bool
    reason: str
    created_at: datetime


class StageOut(Schema):
    id: int
    kind: str
    recipe: str | None
    status: str
    progress: float
    message: str
    attempt: int
    worker: str
    queue: str
    error: str
    retry_helps: bool = Field(description="false: the stage fails this way on every run; edit and resubmit the job")
    outputs: dict
    depends_on: list[int]
    started_at: datetime | None
    finished_at: datetime | None

    @staticmethod
    def resolve_recipe(obj: Stage) -> str | None:
        return str(obj.recipe) if obj.recipe_id else None

    @staticmethod
    def resolve_depends_on(obj: Stage) -> list[int]:
        return [s.pk for s in obj.depends_on.all()]


class JobOut(Schema):
    id: int
    owner: str | None
    base_model: int = Field(alias="base_model_id")
    recipes: list[str]
    suite: str
    user_suite: int | None = Field(alias="user_suite_id", description="the id of the user suite version `suite` names")
    benchmark_profile: str
    publish_targets: list[str]
    rerun_of: int | None = Field(alias="rerun_of_id")
    status: str
    cancel_requested: bool
    private: bool
    error: str
    versions: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    variants: list[int]
    stages: list[StageOut]
    url: str

    @staticmethod
    def resolve_owner(obj: Job) -> str | None:
        return obj.owner.username if obj.owner_id else None

    @staticmethod
    def resolve_recipes(obj: Job) -> list[str]:
        return [str(r) for r in obj.recipes.all()]

    @staticmethod
    def resolve_variants(obj: Job) -> list[int]:
        return [v.pk for v in obj.variants.all()]

    @staticmethod
    def resolve_stages(obj: Job) -> list:
        return list(obj.stages.select_related("recipe").prefetch_related("depends_on"))

    @staticmethod
    def resolve_url(obj: Job) -> str:
        return reverse("job", args=[obj.pk])


class JobSummary(Schema):
    id: int
    owner: str | None
    base_model: int = Field(alias="base_model_id")
    status: str
    private: bool
    created_at: datetime
    finished_at: datetime | None

    @staticmethod
    def resolve_owner(obj: Job) -> str | None:
        return obj.owner.username if obj.owner_id else None


class JobIn(Schema):
    base: int | None = Field(None, description="id of a model in the catalog; or give hf_id")
    hf_id: str = Field(
        "",
        description="a Hugging Face model id, fetched by the job (a repository of this hub, when it has one by that id)",
    )
    revision: str = "main"
    presets: list[str] = Field(default_factory=list, description="recipe preset names")
    recipe_yaml: str = Field("", description="a recipe in llm-compressor's YAML shape")
    recipe_name: str = ""
    suite: str = Field(
        "quick",
        description="evaluation suite: a built-in one's name, or owner/name@version (owner/name: its newest "
        "version) of a suite you may read (GET /suites); empty skips validation",
    )
    benchmark_profile: str = Field("chat", description="benchmark profile; empty skips benchmarks")
    gpu: str = Field("", description="target GPU compute capability, e.g. 8.9; refuses schemes it cannot run")
    publish_targets: list[str] = Field(default_factory=list)
    private: bool = False
    rerun: bool = Field(False, description="run even if an identical job is queued, running or done (else 409)")


class RetryIn(Schema):
    stage: int | None = Field(None, description="the stage to retry from; every failed or cancelled stage when omitted")


class Filters(Schema):
    """Query filters. PostgreSQL text cannot hold NUL: refuse it here (422), not as a database error."""

    @field_validator("*", mode="before")
    @classmethod
    def no_nul(cls, value):
        if isinstance(value, str) and "\0" in value:
            raise ValueError("NUL characters are not allowed")
        return value


def one_of(value: str, choices: dict) -> str:
    if value and value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return value


class ModelFilters(Filters):
    q: str = ""
    architecture: str = ""
    size: str = Field("", description=f"parameter-count bucket: {', '.join(SIZES)}")

    @field_validator("size")
    @classmethod
    def known_size(cls, value: str) -> str:
        return one_of(value, SIZES)


class VariantFilters(Filters):
    base: int | None = None
    q: str = ""
    scheme: str = ""
    gpu: str = Field("", description=f"compute capability ({', '.join(GPUS)}): only variants whose scheme runs there")
    task: str = ""
    validated: bool = Field(False, description="only variants whose gate is validated (not inconclusive)")

    @field_validator("gpu")
    @classmethod
    def known_gpu(cls, value: str) -> str:
        return one_of(value, GPUS)


class ResultFilters(Filters):
    base: int | None = None
    variant: int | None = None


class JobFilters(Filters):
    status: str = ""
    mine: bool = False


# -- models and variants ------------------------------------------------------------------------


@api.get("/models", response=list[BaseModelOut], tags=["catalog"])
@paginate(Pagination)
def list_models(request, filters: Query[ModelFilters]):
    bases, _ = filtered(request.auth, filters.dict())
    return bases.order_by("-created_at", "-pk")


@api.get("/models/{model_id}", response={200: BaseModelDetail, **ERRORS}, tags=["catalog"])
def get_model(request, model_id: int):
    bases, _ = filtered(request.auth, {})
    return get_object_or_404(bases, pk=model_id)


@api.get("/variants", response=list[VariantOut], tags=["catalog"])
@paginate(Pagination)
def list_variants(request, filters: Query[VariantFilters]):
    _, variants = filtered(request.auth, filters.dict())
    if filters.base is not None:
        variants = variants.filter(base_id=filters.base)
    if filters.q:
        variants = variants.filter(name__icontains=filters.q)
    return with_measures(variants).select_related("recipe").order_by("-created_at", "-pk")


@api.get("/variants/{variant_id}", response={200: VariantDetail, **ERRORS}, tags=["catalog"])
def get_variant(request, variant_id: int):
    _, variants = filtered(request.auth, {})
    return get_object_or_404(with_measures(variants).select_related("recipe"), pk=variant_id)


# -- results ------------------------------------------------------------------------------------


def results_of(model: type, request, filters: ResultFilters) -> QuerySet:
    bases, variants = filtered(request.auth, {})
    rows = model.objects.filter(base_model__in=bases.values("pk")) | model.objects.filter(
        variant__in=variants.values("pk")
    )
    if filters.base is not None:
        rows = rows.filter(base_model_id=filters.base)
    if filters.variant is not None:
        rows = rows.filter(variant_id=filters.variant)
    return rows.order_by("-created_at", "-pk")


@api.get("/results/evals", response=list[EvalRunOut], tags=["results"])
@paginate(Pagination)
def list_evals(request, filters: Query[ResultFilters]):
    return results_of(EvalRun, request, filters).prefetch_related("recoveries")


@api.get("/results/benchmarks", response=list[BenchmarkRunOut], tags=["results"])
@paginate(Pagination)
def list_benchmarks(request, filters: Query[ResultFilters]):
    return results_of(BenchmarkRun, request, filters)


# -- jobs ---------------------------------------------------------------------------------------


def job_for(request, job_id: int, manage: bool = False) -> Job:
    job = get_object_or_404(Job.objects.select_related("base_model", "owner").visible_to(request.auth), pk=job_id)
    if manage and not job.manageable_by(request.auth):
        raise HttpError(403, "only the job's owner or staff can change it")
    return job


@api.get("/jobs", response=list[JobSummary], tags=["jobs"])
@paginate(Pagination)
def list_jobs(request, filters: Query[JobFilters]):
    jobs = Job.objects.select_related("base_model", "owner").visible_to(request.auth)
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.mine:
        jobs = jobs.filter(owner=request.auth) if request.auth.is_authenticated else jobs.none()
    return jobs.order_by("-created_at", "-pk")


@api.post(
    "/jobs", response={201: JobOut, 409: ErrorOut, 429: ErrorOut, **ERRORS}, auth=Bearer(write=True), tags=["jobs"]
)
def submit_job(request, payload: JobIn):
    """Submit a job: the same checks as the web form, with the same messages. Past a per-user
    limit (active jobs, submissions a minute) the answer is 429 with a Retry-After header; an
    identical job already queued, running or done is answered 409 with its id, unless `rerun`."""
    data = payload.dict()
    data["publish_targets"] = "\n".join(data["publish_targets"])
    form = JobForm(data=data, user=request.auth)
    if not form.is_valid():
        if form.duplicate and not payload.rerun:
            job = form.duplicate
            message = f"job {job.pk} ({job.status}) already runs this; send rerun: true to run it again"
            return error(request, 409, "duplicate", message, {"job": job.pk, "url": reverse("job", args=[job.pk])})
        return error(request, 422, "invalid", "the job cannot run as asked", form.errors.get_json_data())
    return Status(201, form.submit())


@api.get("/jobs/{job_id}", response={200: JobOut, **ERRORS}, tags=["jobs"])
def get_job(request, job_id: int):
    return job_for(request, job_id)


@api.post("/jobs/{job_id}/cancel", response={200: JobOut, **ERRORS}, auth=Bearer(write=True), tags=["jobs"])
def cancel_job(request, job_id: int):
    job = job_for(request, job_id, manage=True)
    job.cancel()
    return Job.objects.get(pk=job.pk)


@api.post(
    "/jobs/{job_id}/retry",
    response={200: JobOut, 409: ErrorOut, 429: ErrorOut, **ERRORS},
    auth=Bearer(write=True),
    tags=["jobs"],
)
def retry_job(request, job_id: int, payload: RetryIn | None = None):
    """Run a failed or cancelled stage again, and what its failure stopped; done stages stay done."""
    job = job_for(request, job_id, manage=True)
    if payload and payload.stage is not None:
        stages = [get_object_or_404(job.stages, pk=payload.stage)]
    else:
        stages = list(job.stages.filter(status__in=[Stage.Status.FAILED, Stage.Status.CANCELLED]))
        if not stages:
            return error(request, 409, "conflict", f"job {job.pk} has no failed or cancelled stage to retry")
    for stage in stages:
        stage.refresh_from_db()
        if stage.status in (Stage.Status.PENDING, Stage.Status.QUEUED) and len(stages) > 1:
            continue  # an earlier retry in this loop already reset it
        try:
            stage.retry(by=request.auth)
        except ValueError as exc:
            return error(request, 409, "conflict", str(exc))
    return Job.objects.get(pk=job.pk)


# -- suites -------------------------------------------------------------------------------------


class SuiteOut(Schema):
    id: int
    owner: str
    name: str
    version: int
    reference: str = Field(description="how a job names this version (`suite` of POST /jobs)")
    private: bool
    description: str
    recovery_threshold: float | None = Field(description="none: the recipe's default")
    fewshot_seed: int
    chat_template: bool
    tasks: list[dict] = Field(description="[{task, file, num_fewshot, limit, metric, filter, chat_template}]")
    files: list[dict] = Field(description="[{name, size, sha256}]")
    datasets: dict = Field(description="{repository id: {commit, files}}: the data it reads, pinned at upload")
    content_hash: str
    used: bool = Field(description="a job used it, so it never changes")
    created_at: datetime
    url: str

    @staticmethod
    def resolve_owner(obj: Suite) -> str:
        return obj.owner.username

    @staticmethod
    def resolve_url(obj: Suite) -> str:
        return reverse("suite", args=[obj.pk])


@api.get("/suites", response=list[SuiteOut], tags=["suites"])
@paginate(Pagination)
def list_suites(request):
    """The user suites you may read: public ones, your own, and for staff all."""
    return Suite.objects.visible_to(request.auth).select_related("owner").order_by("-created_at", "-pk")


@api.get("/suites/{suite_id}", response={200: SuiteOut, **ERRORS}, tags=["suites"])
def get_suite(request, suite_id: int):
    return get_object_or_404(Suite.objects.visible_to(request.auth).select_related("owner"), pk=suite_id)


@api.post(
    "/suites",
    response={200: SuiteOut, 201: SuiteOut, 409: ErrorOut, **ERRORS},
    auth=Bearer(write=True),
    tags=["suites"],
)
def upload_suite(
    request,
    suite: File[UploadedFile],
    files: File[list[UploadedFile]] = None,
    private: Form[bool] = False,
    replace: Form[bool] = False,
):
    """Upload a suite (multipart): `suite`, the suite YAML, and `files`, each task YAML and data
    file it names. Checked whole, every task built on its data, before anything is stored (422
    says what is refused, naming the file and key). 201: the next version of owner/name, or with
    `replace` the newest version in place (409 if a job used it); 200: identical to the newest
    version, which is returned."""
    name, data = read_uploads(suite, files or [])
    row, created = Suite.upload(request.auth, name, data, private, replace)
    return Status(201 if created else 200, row)


@api.delete(
    "/suites/{suite_id}", response={204: None, 409: ErrorOut, **ERRORS}, auth=Bearer(write=True), tags=["suites"]
)
def delete_suite(request, suite_id: int):
    """Delete a version of your suite that no job used (409 otherwise)."""
    row = get_object_or_404(Suite.objects.visible_to(request.auth).select_related("owner"), pk=suite_id)
    if not Suite.objects.manageable_by(request.auth).filter(pk=row.pk).exists():
        raise HttpError(403, "only the suite's owner or staff can delete it")
    row.delete_unused()
    return Status(204, None)


# -- your tokens for other hubs -----------------------------------------------------------------


class CredentialIn(Schema):
    endpoint: str = Field(description="scheme://host[:port], one of the endpoints this hub's jobs may publish to")
    token: str = Field(description="your own write token there: sent only there, for your jobs, never shown again")


class CredentialOut(Schema):
    endpoint: str
    updated_at: datetime


@api.get("/credentials", response={200: list[CredentialOut], **ERRORS}, auth=Bearer(), tags=["tokens"])
def list_credentials(request):
    """The endpoints you have given a token for (the tokens themselves are never shown)."""
    return list(request.auth.endpoint_credentials.all())


@api.put("/credentials", response={200: CredentialOut, **ERRORS}, auth=Bearer(write=True), tags=["tokens"])
def put_credential(request, payload: CredentialIn):
    """Give (or replace) your write token for an endpoint that jobs may publish to."""
    try:
        return save_credential(request.auth, payload.endpoint, payload.token)
    except TargetRefused as exc:
        return error(request, 422, "invalid", str(exc))


@api.delete("/credentials", response={204: None, **ERRORS}, auth=Bearer(write=True), tags=["tokens"])
def delete_credential(request, endpoint: str):
    """Forget your token for that endpoint."""
    try:
        request.auth.endpoint_credentials.filter(endpoint=normalize_endpoint(endpoint.strip())).delete()
    except TargetRefused as exc:
        return error(request, 422, "invalid", str(exc))
    return Status(204, None)
