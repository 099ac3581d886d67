"""Formatting shared by the catalog and job pages."""

from django import template

register = template.Library()


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
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{int(digits)}g}"


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
