"""Formatting shared by the catalog and job pages."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from hub.catalog.charts import number

register = template.Library()

# lm-eval's metrics, by the name before the ",filter" of its result keys ("acc_norm,none"): what
# the pages call each and what it measures, for readers who do not know lm-eval's names
METRICS: dict[str, tuple[str, str]] = {
    "acc": (
        "accuracy",
        "share of questions where the answer the model finds most likely is the right one; higher is better",
    ),
    "acc_norm": (
        "accuracy (length-normalised)",
        "accuracy with each answer's likelihood divided by its length, so long answers are not at a disadvantage; "
        "higher is better",
    ),
    "exact_match": (
        "exact match",
        "share of generated answers equal to the reference (GSM8K: the final number); higher is better",
    ),
    "word_perplexity": (
        "word perplexity",
        "how unexpected the model finds the text, per word; lower is better",
    ),
}


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.987 -> '98.7%'; missing values read 'not measured'."""
    if value is None or value == "":
        return "not measured"
    return f"{100 * float(value):.{int(digits)}f}%"


@register.filter
def count(value) -> str:
    """A parameter count the way model names say it: 260K, 135M, 8.0B."""
    if value is None:
        return "unknown"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)


@register.filter
def num(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "not measured"
    return number(float(value), digits=int(digits))


@register.filter
def times(value) -> str:
    """A speedup ratio: 1.83 -> '1.83x'."""
    if value is None:
        return "not measured"
    return f"{float(value):.2f}x"


def speedup_text(median, low=None, high=None, verdict=None) -> str:
    """A speedup as the benchmark stage judged it: '1.42x (95% interval 1.31-1.55)', or
    'inconclusive on this machine: 95% interval 0.71-14.00' with no figure in front, or, for a run measured once
    (before rounds), '1.20x (one round)'."""
    if median is None:
        return "not measured"
    if not verdict or verdict == "one round" or low is None or high is None:
        return f"{float(median):.2f}x (one round)"
    interval = f"95% interval {float(low):.2f}-{float(high):.2f}"
    if verdict == "inconclusive":
        return f"inconclusive on this machine: {interval}"
    return f"{float(median):.2f}x ({interval})"


@register.filter
def speedup_of(variant) -> str:
    """A variant annotated by `with_measures`, its speedup as `speedup_text` says it."""
    return speedup_text(
        getattr(variant, "speedup", None),
        getattr(variant, "speedup_low", None),
        getattr(variant, "speedup_high", None),
        getattr(variant, "speedup_verdict", None),
    )


@register.filter
def pct_of(value, whole) -> str:
    if not value or not whole:
        return "not measured"
    return f"{100 * value / whole:.0f}%"


@register.filter
def duration(value) -> str:
    """A timedelta as '1 h 05 min', '3 min 20 s' or '12 s'."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def metric_name(key: str) -> str:
    """lm-eval's "metric,filter" key as the pages name it: "accuracy (length-normalised)" for
    "acc_norm,none"; a metric not in METRICS is its key without the usual "none" filter."""
    metric, _, flt = key.partition(",")
    if metric not in METRICS:
        return key.removesuffix(",none")
    name = METRICS[metric][0]
    return f"{name} ({flt})" if flt and flt != "none" else name


@register.filter
def metric(key: str) -> SafeString:
    """A metric's readable name, lm-eval's key in its title."""
    return format_html('<span class="metric" title="{}">{}</span>', key, metric_name(key))


@register.inclusion_tag("catalog/_metric_glossary.html")
def metric_glossary(keys: list[str]) -> dict:
    """What each metric among `keys` measures, once each, in the order they appear."""
    unknown = "as lm-eval names it: see the task's definition"
    return {
        "entries": [
            (key, metric_name(key), METRICS.get(key.partition(",")[0], ("", unknown))[1]) for key in dict.fromkeys(keys)
        ]
    }
