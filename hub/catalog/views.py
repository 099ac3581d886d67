"""The catalog: base models with their variants, a page per model, the compare view of a base's
variants, and file downloads. Whatever the stages have measured so far is shown; what they have
not is said to be "not measured" or "pending"."""

import hashlib
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Count, F, FloatField, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.forms.utils import flatatt
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from hub.catalog import charts
from hub.catalog.models import BaseModel, Publication, Variant, sources_state
from hub.catalog.queries import SIZES, filtered, with_measures
from hub.catalog.templatetags import hub as hub_filters
from hub.jobs.presets import GPUS
from hub.results.models import BenchmarkRun, EvalRun, Recovery
from hub.results.reproduce import task_setups
from hub.userfiles import confine, passive_type

SORTS = {"newest": "newest", "recovery": "recovery", "speedup": "speedup", "size": "size (smallest first)"}
# an inconclusive speedup ranks with the unmeasured: its median is the machine's noise
SORT_FIELDS = {"recovery": "recovery", "speedup": "speedup_rank"}
VARIANTS_PER_BASE = 6


class Select(forms.Select):
    """A select drawn with one format_html call: the catalog page shows seven on every request,
    and Django's per-option templates were a third of its rendering time."""

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        attrs = self.build_attrs(self.attrs, {**(attrs or {}), "name": name})
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((k, mark_safe(" selected") if str(k) == str(value or "") else "", label) for k, label in self.choices),
        )
        return format_html("<select{}>{}</select>", flatatt(attrs), options)


class CatalogFilter(forms.Form):
    q = forms.CharField(
        required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "name or architecture"})
    )
    architecture = forms.ChoiceField(required=False, widget=Select)
    size = forms.ChoiceField(
        required=False, widget=Select, choices=[("", "any size")] + [(k, v[0]) for k, v in SIZES.items()]
    )
    scheme = forms.ChoiceField(required=False, widget=Select)
    gpu = forms.ChoiceField(
        required=False, widget=Select, label="Runs on my GPU", choices=[("", "any GPU")] + list(GPUS.items())
    )
    task = forms.ChoiceField(required=False, widget=Select, label="Measured on task")
    validated = forms.BooleanField(required=False, label="validated only")
    sort = forms.ChoiceField(required=False, widget=Select, choices=list(SORTS.items()))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = filter_choices()
        self.fields["architecture"].choices = [("", "any architecture")] + [(a, a) for a in choices["architecture"]]
        self.fields["scheme"].choices = [("", "any scheme")] + [(s, s) for s in choices["scheme"]]
        self.fields["task"].choices = [("", "any task")] + [(t, t) for t in choices["task"]]


def filter_choices() -> dict[str, list[str]]:
    """Distinct architectures, schemes and tasks: cheap queries, but not for every request."""
    choices = cache.get("catalog-choices")
    if choices is None:

        def distinct(qs: QuerySet, field: str) -> list[str]:
            return sorted(v for v in qs.order_by().values_list(field, flat=True).distinct() if v)

        choices = {
            "architecture": distinct(BaseModel.objects.all(), "architecture"),
            "scheme": distinct(Variant.objects.all(), "scheme"),
            "task": distinct(Recovery.objects.all(), "task"),
        }
        cache.set("catalog-choices", choices, 30)
    return choices


def catalog(request: HttpRequest) -> HttpResponse:
    filters, results = cached_parts(request)
    if request.headers.get("HX-Request"):
        return HttpResponse(results)
    return render(request, "catalog/catalog.html", {"filters": filters, "results": results})


def cached_parts(request: HttpRequest) -> tuple[SafeString, SafeString]:
    """The filter form and the list under it, rendered. Many people ask for the same few filters
    and the catalog changes only when a stage ends, so both are kept for CATALOG_CACHE_SECONDS per
    query, per audience (anonymous, each user, staff) and per visibility of the repositories
    catalog rows were copied from: a page lags new rows by that much, never a repository's change."""
    user = request.user
    audience = "staff" if user.is_staff else f"user{user.pk}" if user.is_authenticated else "anonymous"
    query = urlencode(sorted((k, v) for k, values in request.GET.lists() for v in values))
    # a source repository turning private must hide its catalog copies at once, not a cache later
    key = "catalog:" + hashlib.sha256(f"{audience}?{query}#{sources_state()}".encode()).hexdigest()
    if settings.CATALOG_CACHE_SECONDS and (parts := cache.get(key)) is not None:
        return mark_safe(parts[0]), mark_safe(parts[1])
    form = CatalogFilter(request.GET)
    f = form.cleaned_data if form.is_valid() else {}
    bases, variants = filtered(user, f)
    sort = f.get("sort") or "newest"
    page = Paginator(sorted_bases(bases, variants, sort), settings.CATALOG_PAGE_SIZE).get_page(request.GET.get("page"))
    groups = variant_groups([b.pk for b in page], variants, sort)
    entries = []
    for base in page:
        shown, total = groups.get(base.pk, ([], 0))
        entries.append((base, format_html_join("", "{}", ((variant_row(v),) for v in shown)), len(shown), total))
    params = request.GET.copy()
    params.pop("page", None)
    parts = (
        render_to_string("catalog/_filters.html", {"form": form}),
        render_to_string(
            "catalog/_results.html",
            {
                "page": page,
                "entries": entries,
                "query": params.urlencode(),
                "filtered": filters_on(f),
            },
        ),
    )
    if settings.CATALOG_CACHE_SECONDS:
        cache.set(key, parts, settings.CATALOG_CACHE_SECONDS)
    return mark_safe(parts[0]), mark_safe(parts[1])


def filters_on(f: dict) -> bool:
    return any(f.get(k) for k in ("q", "architecture", "size", "scheme", "gpu", "task", "validated"))


def sorted_bases(bases: QuerySet, variants: QuerySet, sort: str) -> QuerySet:
    if sort in ("recovery", "speedup"):
        best = (
            with_measures(variants.filter(base=OuterRef("pk")))
            .order_by(F(SORT_FIELDS[sort]).desc(nulls_last=True))
            .values(SORT_FIELDS[sort])[:1]
        )
        return bases.annotate(best=Subquery(best, output_field=FloatField())).order_by(
            F("best").desc(nulls_last=True), "-created_at"
        )
    if sort == "size":
        return bases.order_by(F("num_parameters").asc(nulls_last=True), "name")
    return bases.order_by("-created_at", "-pk")


def variant_groups(base_ids: list[int], variants: QuerySet, sort: str) -> dict[int, tuple[list[Variant], int]]:
    """The first variants of each base on the page, in the chosen order, and how many there are:
    the database ranks them, so a base with hundreds of variants costs no more than one with six."""
    order = {
        "recovery": [F("recovery").desc(nulls_last=True)],
        "speedup": [F("speedup_rank").desc(nulls_last=True)],
        "size": [F("size_bytes").asc(nulls_last=True)],
    }.get(sort, []) + [F("created_at").desc()]
    rows = (
        with_measures(variants.filter(base_id__in=base_ids))
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("base_id")], order_by=order),
            total=Window(Count("pk"), partition_by=[F("base_id")]),
        )
        .filter(rank__lte=VARIANTS_PER_BASE)
        .order_by("base_id", "rank")
    )
    groups: dict[int, tuple[list[Variant], int]] = {}
    for v in rows:
        groups.setdefault(v.base_id, ([], v.total))[0].append(v)
    return groups


def variant_row(v: Variant) -> SafeString:
    """One line of a base's variant tree. Built here rather than in the template: the catalog
    draws up to a hundred of them per page, and this is most of its rendering time."""
    return format_html(
        '<li class="variant" data-name="{}"><a href="{}">{}</a> <span class="tag">{}</span> '
        '<span class="gate gate-{}">{}</span> <span title="worst task\'s recovery">recovery {}</span> '
        '<span title="output tokens/s over the base\'s, same stage: the median of interleaved rounds">'
        "speedup {}</span> <span>{}</span></li>",
        v.name,
        reverse("variant", args=[v.pk]),
        v.name,
        v.scheme or "?",
        v.gate,
        v.get_gate_display(),
        hub_filters.pct(v.recovery),
        hub_filters.speedup_of(v),
        filesizeformat(v.size_bytes) if v.size_bytes else "",
    )


# -- model pages -------------------------------------------------------------------------------


def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    base = get_object_or_404(BaseModel.objects.visible_to(request.user), pk=pk)
    variants = with_measures(base.variants.visible_to(request.user)).select_related("recipe")
    baseline = EvalRun.objects.filter(base_model=base).order_by("-created_at")
    latest = baseline.first()
    benchmarks = BenchmarkRun.objects.filter(base_model=base).order_by("profile", "-created_at")
    files = file_rows(base.files, reverse("base-file", args=[base.pk, "_"])[:-1])
    return render(
        request,
        "catalog/model.html",
        {
            "base": base,
            "variants": variants,
            "baseline": latest,
            "metrics": [m["metric"] for m in latest.metrics.values()] if latest else [],
            "eval_runs": baseline[:10],
            "benchmarks": [{**bench_row(r), "label": base.name} for r in benchmarks[:20]],
            "files": files,
            "snippets": snippets(
                base.hf_repo_id,
                settings.SITE_URL.rstrip("/") if base.on_this_hub else settings.HF_ENDPOINT,
                base.resolved_sha if base.hf_repo_id else "",
                private=base.private,
                name=base.name,
                files=files,
            ),
            "config": json.dumps(base.config, indent=2, sort_keys=True),
        },
    )


def variant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    variant = get_object_or_404(
        with_measures(Variant.objects.select_related("base", "recipe", "job").visible_to(request.user)), pk=pk
    )
    eval_run = EvalRun.objects.filter(variant=variant).order_by("-created_at").first()
    recoveries = list(eval_run.recoveries.select_related("base_run")) if eval_run else []
    runs = BenchmarkRun.objects.filter(variant=variant).order_by("profile", "-created_at")
    bench = []
    seen_profiles = set()
    for run in runs:
        if run.profile in seen_profiles:
            continue  # the latest run per profile
        seen_profiles.add(run.profile)
        base_run = (
            BenchmarkRun.objects.filter(base_model=variant.base_id, stage=run.stage_id, profile=run.profile).first()
            if run.stage_id
            else None
        )
        bench.append({"variant": bench_row(run), "base": bench_row(base_run) if base_run else None})
    publications = list(variant.publications.all())
    published = next((p for p in publications if p.endpoint == Publication.LOCAL), None) or next(
        iter(publications), None
    )
    endpoint = (
        (settings.SITE_URL.rstrip("/") if published.endpoint == Publication.LOCAL else published.endpoint)
        if published
        else None
    )
    local = Path(variant.local_path) if variant.local_path else None
    files = file_rows(variant.files, reverse("variant-file", args=[variant.pk, "_"])[:-1])
    # the lm-eval commands read the model where the snippets below fetch it from
    pretrained = published.repo_id if published else variant.name.split("/")[-1]
    return render(
        request,
        "catalog/variant.html",
        {
            "variant": variant,
            "base": variant.base,
            "eval_run": eval_run,
            "recoveries": recoveries,
            "metrics": [r.metric for r in recoveries],
            "setups": list(task_setups(eval_run, pretrained).values()) if eval_run else [],
            "setup_env": client_env(endpoint, variant.private) if published else "",
            "bench_rows": [
                row
                for pair in bench
                for row in ([{**pair["base"], "label": "base"}] if pair["base"] else [])
                + [{**pair["variant"], "label": "this variant" + speedup_note(pair)}]
            ],
            "charts": bench_charts(bench),
            "publications": publications,
            "published": published,
            "files": files,
            "snippets": snippets(
                published.repo_id if published else "",
                endpoint,
                published.commit_sha if published else "",
                private=variant.private,
                checksums=any(f["path"] == "SHA256SUMS" for f in variant.files),
                name=variant.name,
                files=files,
            ),
            "card": read_text(local / "README.md") if local else "",
            "recipe_yaml": read_text(local / "recipe.yaml") if local else variant.recipe.yaml,
            "report": json.dumps(variant.compression_report, indent=2, sort_keys=True)
            if variant.compression_report
            else "",
            "gate_report": json.dumps(variant.gate_report, indent=2, sort_keys=True) if variant.gate_report else "",
            "eval_settings": json.dumps(eval_run.settings, indent=2, sort_keys=True) if eval_run else "",
            "versions": json.dumps(variant.job.versions, indent=2, sort_keys=True)
            if variant.job and variant.job.versions
            else "",
        },
    )


def compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Every variant of a base on accuracy, speed and memory, with the Pareto front marked."""
    base = get_object_or_404(BaseModel.objects.visible_to(request.user), pk=pk)
    variants = list(with_measures(base.variants.visible_to(request.user)).select_related("recipe"))
    # the front and the chart take only speedups that stand: an inconclusive one counts as unmeasured
    rows = [{"variant": v, "recovery": v.recovery, "speedup": v.speedup_rank, "size": v.size_bytes} for v in variants]
    front = charts.pareto_front(rows, maximize=("recovery", "speedup"), minimize=("size",))
    for i, row in enumerate(rows):
        row["front"] = i in front
    mb = 1 << 20  # as filesizeformat counts the table's sizes
    # the base at 100% and 1.0x, for scale: what each variant gives up and gains
    reference = (
        [
            {
                "x": base.size_bytes / mb,
                "recovery": 1.0,
                "speedup": 1.0,
                "label": "base",
                "front": False,
                "reference": True,
            }
        ]
        if base.size_bytes
        else []
    )
    points = reference + [
        {
            "x": r["size"] / mb if r["size"] else None,
            "recovery": r["recovery"],
            "speedup": r["speedup"],
            "label": r["variant"].name,
            "front": r["front"],
        }
        for r in rows
    ]
    return render(
        request,
        "catalog/compare.html",
        {
            "base": base,
            "rows": rows,
            "chart": charts.scatter(
                "Accuracy against size", "size (MB)", "worst-task recovery", [{**p, "y": p["recovery"]} for p in points]
            ),
            "speed_chart": charts.scatter(
                "Speed against size",
                "size (MB)",
                "speedup (output tokens/s)",
                [{**p, "y": p["speedup"]} for p in points],
            ),
        },
    )


def base_file(request: HttpRequest, pk: int, path: str) -> FileResponse:
    base = get_object_or_404(BaseModel.objects.visible_to(request.user), pk=pk)
    return serve_file(base.local_path, base.files, path)


def variant_file(request: HttpRequest, pk: int, path: str) -> FileResponse:
    variant = get_object_or_404(Variant.objects.visible_to(request.user), pk=pk)
    return serve_file(variant.local_path, variant.files, path)


def serve_file(root: str, files: list[dict], path: str) -> FileResponse:
    """Stream one recorded file, as an inert download (the files came from whoever uploaded the
    model); only paths in the row's file list are served, so nothing outside the checkpoint
    folder can be asked for."""
    entry = next((f for f in files if f["path"] == path), None)
    if not root or entry is None or not (Path(root) / path).is_file():
        raise Http404(f"no file {path!r}")
    response = FileResponse((Path(root) / path).open("rb"), as_attachment=True, filename=Path(path).name)
    confine(response, passive_type(path))
    response["X-Checksum-Sha256"] = entry["sha256"]
    return response


# -- helpers for the pages ---------------------------------------------------------------------


def file_rows(files: list[dict], url_prefix: str) -> list[dict]:
    return [{**f, "url": url_prefix + f["path"]} for f in sorted(files, key=lambda f: f["path"])]


def read_text(path: Path, limit: int = 200_000) -> str:
    try:
        return path.read_text(errors="replace")[:limit]
    except OSError:
        return ""


def pick(metrics: dict, key: str, stat: str | None = None) -> float | None:
    value = metrics.get(key)
    if stat is not None:
        value = value.get(stat) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def bench_row(run: BenchmarkRun) -> dict:
    m = run.metrics or {}
    hw = run.hardware or {}
    return {
        "run": run,
        "hardware": hw.get("gpu_name")
        or hw.get("name")
        or hw.get("cpu")
        or ", ".join(f"{k}: {v}" for k, v in hw.items()),
        "ttft": pick(m, "ttft_ms", "median"),
        "tpot": pick(m, "tpot_ms", "median"),
        "itl": pick(m, "itl_ms", "median"),
        "e2el": pick(m, "e2el_ms", "median"),
        "e2el_p99": pick(m, "e2el_ms", "p99"),
        "rps": pick(m, "request_throughput"),
        "tps": pick(m, "output_throughput"),
        "weights": pick(m, "weights_bytes"),
        "kv_tokens": pick(m, "kv_capacity_tokens"),
        "load": max((x for x in m.get("load_average") or [] if isinstance(x, (int, float))), default=None),
        "rounds": len(m.get("rounds") or []) or None,
    }


def speedup_note(pair: dict) -> str:
    """The variant's output tokens/s over the base's beside its row: the stage's interval over
    rounds when it recorded one, else the one ratio of the two runs, labelled as such."""
    base, variant = pair["base"], pair["variant"]
    gains = (variant["run"].metrics or {}).get("speedup") or {}
    tp = gains.get("output_throughput")
    if isinstance(tp, dict) and "median" in tp:
        return ": " + hub_filters.speedup_text(tp["median"], tp.get("low"), tp.get("high"), tp.get("verdict"))
    if base and base["tps"] and variant["tps"]:
        return f" ({variant['tps'] / base['tps']:.2f}x), one round"
    return ""


def bench_charts(bench: list[dict]) -> list:
    out = []
    for key, title, unit in (
        ("ttft", "Time to first token, median", "ms"),
        ("tpot", "Time per output token, median", "ms"),
        ("tps", "Output throughput", "tokens/s"),
    ):
        groups = [
            (
                pair["variant"]["run"].profile,
                [("base", pair["base"][key] if pair["base"] else None), ("variant", pair["variant"][key])],
            )
            for pair in bench
            if pair["variant"]["run"].runnable
        ]
        chart = charts.bars(title, unit, groups)
        if chart:
            out.append(chart)
    return out


def client_env(endpoint: str | None, private: bool) -> str:
    """The variables a Hub client (hf, transformers, lm-eval) needs to reach a repository:
    its hub (None is huggingface.co), and a token when it is private, which answers 404 to
    a client without one that may read it."""
    return (f"HF_ENDPOINT={endpoint} " if endpoint else "") + ("HF_TOKEN=<a token of yours> " if private else "")


def snippets(
    repo_id: str,
    endpoint: str | None,
    revision: str = "",
    private: bool = False,
    checksums: bool = False,
    name: str = "",
    files: Sequence[dict] = (),
) -> list[tuple[str, str]]:
    """How to run the model: the Hub client (pointed at `endpoint`; None is huggingface.co), our
    engine, vLLM and transformers. With `checksums`, the download is checked against the
    repository's SHA256SUMS. Without a repo, `files` (rows of `file_rows`) are fetched by their
    links into a folder named after the model `name` and checked against their sha256."""
    folder = (repo_id or name).split("/")[-1]
    if repo_id:
        env = client_env(endpoint, private)
        rev = f" --revision {revision}" if revision else ""
        python_env = (f"os.environ['HF_ENDPOINT'] = '{endpoint}'\n" if endpoint else "") + (
            "os.environ['HF_TOKEN'] = '<a token of yours>'\n" if private else ""
        )
        python_env = f"import os\n{python_env}" if python_env else ""
        python_rev = f", revision='{revision}'" if revision else ""
        # `hf` is huggingface_hub's command line since 1.0, which dropped `huggingface-cli`
        fetch = [
            (
                "hf (huggingface_hub)",
                f"{env}hf download {repo_id}{rev} --local-dir {folder}"
                + (f"\n(cd {folder} && sha256sum -c SHA256SUMS)" if checksums else ""),
            )
        ]
    else:
        env = rev = python_env = python_rev = ""
        if private:
            download = f"# a private model's links answer only a signed-in browser:\n# save each file listed above into {folder}/"
        else:
            site = settings.SITE_URL.rstrip("/")
            curls = "".join(
                f"curl -fL --create-dirs -o {shlex.quote(folder + '/' + f['path'])} {shlex.quote(site + quote(f['url']))}\n"
                for f in files
            )
            sums = "".join(f"{f['sha256']}  {folder}/{f['path']}\n" for f in files)
            download = f"{curls}sha256sum -c <<'EOF'\n{sums}EOF"
        fetch = [("download", download)] if files else []
    source = repo_id or folder
    return fetch + [
        ("our engine", f"python -m engine generate {folder} --prompt 'Once upon a time'"),
        ("vLLM", f"{env}vllm serve {source}{rev}"),
        (
            "transformers",
            (
                f"{python_env}from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                f"model = AutoModelForCausalLM.from_pretrained('{source}'{python_rev})\n"
                f"tokenizer = AutoTokenizer.from_pretrained('{source}'{python_rev})"
            ),
        ),
    ]
