"""The catalog's queries, for its pages and the REST API alike: what the filters select, and the
measures (recovery, speedup) each variant is shown and sorted with."""

from django.db.models import Case, CharField, Exists, F, FloatField, Min, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from hub.catalog.models import BaseModel, Variant
from hub.results.models import BenchmarkRun, EvalRun, Recovery

SIZES = {  # parameter-count buckets, as the HF Hub's slider
    "lt1b": ("< 1B", None, 1e9),
    "1-3b": ("1B to 3B", 1e9, 3e9),
    "3-8b": ("3B to 8B", 3e9, 8e9),
    "8-15b": ("8B to 15B", 8e9, 15e9),
    "15-40b": ("15B to 40B", 15e9, 40e9),
    "gt40b": ("> 40B", 40e9, None),
}


def needs_newer_gpu(gpu: float) -> Q:
    """The variants whose scheme needs more than compute capability `gpu`, as a filter: the rule of
    `common.support.min_compute_capability`, in SQL."""
    q = Q(pk__in=[])
    if gpu < 8.9:
        q |= Q(scheme__icontains="FP8")
    if gpu < 8.0:
        q |= Q(scheme__contains="2:4")
    return q


def with_measures(variants: QuerySet) -> QuerySet:
    """Annotate each variant with `recovery` (its worst task's recovery in its latest validation)
    and its speedup in output tokens/s over its base's, measured in the same benchmark stage, so
    on the same hardware and profile:
    `speedup` (the median of the rounds' ratios), `speedup_low`/`speedup_high` (its 95% interval)
    and `speedup_verdict` (faster, slower or inconclusive). Runs from before rounds carry one
    ratio, taken from the two runs' throughputs, with no interval and no verdict: one round.
    `speedup_rank` is what the catalog sorts by: the median, except none for an inconclusive one."""
    latest_eval = EvalRun.objects.filter(variant=OuterRef("pk")).order_by("-created_at").values("pk")[:1]
    worst = (
        Recovery.objects.filter(variant_run=OuterRef("latest_eval"))
        .values("variant_run")
        .annotate(m=Min("recovery"))
        .values("m")
    )
    throughput = Cast(KT("metrics__output_throughput"), FloatField())
    runs = BenchmarkRun.objects.filter(variant=OuterRef("pk"), runnable=True).order_by("-created_at")
    base_runs = BenchmarkRun.objects.filter(
        base_model=OuterRef("base_id"), stage=OuterRef("bench_stage"), runnable=True
    ).annotate(tp=throughput)

    def interval(field: str, output_field=None) -> Subquery:
        value = KT(f"metrics__speedup__output_throughput__{field}")
        if output_field is None:
            value = Cast(value, FloatField())
        return Subquery(runs.annotate(x=value).values("x")[:1], output_field=output_field or FloatField())

    return (
        variants.annotate(
            latest_eval=Subquery(latest_eval),
            bench_stage=Subquery(runs.values("stage")[:1]),
            variant_tp=Subquery(runs.annotate(tp=throughput).values("tp")[:1]),
            speedup_median=interval("median"),
            speedup_low=interval("low"),
            speedup_high=interval("high"),
            speedup_verdict=interval("verdict", CharField()),
        )
        .annotate(recovery=Subquery(worst, output_field=FloatField()), base_tp=Subquery(base_runs.values("tp")[:1]))
        .annotate(
            speedup=Coalesce(
                F("speedup_median"),
                Case(When(base_tp__gt=0, then=F("variant_tp") / F("base_tp")), default=None, output_field=FloatField()),
                output_field=FloatField(),
            )
        )
        .annotate(
            speedup_rank=Case(
                When(speedup_verdict="inconclusive", then=None), default=F("speedup"), output_field=FloatField()
            )
        )
    )


def filtered(user, f: dict) -> tuple[QuerySet, QuerySet]:
    """The bases and the variants that match the filters and that the user may see."""
    bases = BaseModel.objects.visible_to(user)
    variants = Variant.objects.visible_to(user)
    if f.get("architecture"):
        bases = bases.filter(architecture=f["architecture"])
    if f.get("size"):
        _, low, high = SIZES[f["size"]]
        if low is not None:
            bases = bases.filter(num_parameters__gte=low)
        if high is not None:
            bases = bases.filter(num_parameters__lt=high)
    if f.get("scheme"):
        variants = variants.filter(scheme=f["scheme"])
    if f.get("gpu"):
        gpu = float(f["gpu"])
        variants = variants.exclude(needs_newer_gpu(gpu))
    if f.get("validated"):
        # validated only: an inconclusive variant has not shown that it keeps the threshold
        variants = variants.filter(gate=Variant.Gate.VALIDATED)
    if f.get("task"):
        variants = variants.filter(Exists(Recovery.objects.filter(variant_run__variant=OuterRef("pk"), task=f["task"])))
    if f.get("q"):
        q = f["q"]
        named = variants.filter(base=OuterRef("pk")).filter(Q(name__icontains=q) | Q(recipe__name__icontains=q))
        bases = bases.filter(
            Q(name__icontains=q) | Q(hf_repo_id__icontains=q) | Q(architecture__icontains=q) | Exists(named)
        )
    if any(f.get(k) for k in ("scheme", "gpu", "validated", "task")):
        bases = bases.filter(Exists(variants.filter(base=OuterRef("pk"))))
    return bases, variants
