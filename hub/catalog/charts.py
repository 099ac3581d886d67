"""Small charts drawn on the server as inline SVG: the pages work without JavaScript and offline."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLORS = ("#8a8f98", "#2f6fdf", "#d9822b", "#2a9d5c", "#b04fc4", "#c23b3b")


def bars(title: str, unit: str, groups: list[tuple[str, list[tuple[str, float | None]]]]) -> SafeString:
    """Grouped horizontal bars: one group per label (a profile), one bar per series (base, variant)."""
    values = [v for _, series in groups for _, v in series if v is not None]
    if not values:
        return mark_safe("")
    top = max(values) or 1.0
    row, label_w, bar_w = 18, 150, 260
    rows = sum(len(series) + 1 for _, series in groups)
    height = 24 + rows * row
    out = [
        f'<svg class="chart" role="img" width="{label_w + bar_w + 90}" height="{height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="0" y="14" class="chart-title">{escape(title)} ({escape(unit)})</text>'
    ]
    y = 24
    for label, series in groups:
        out.append(f'<text x="0" y="{y + 13}" class="chart-group">{escape(label)}</text>')
        y += row
        for i, (name, value) in enumerate(series):
            out.append(f'<text x="12" y="{y + 12}">{escape(name)}</text>')
            if value is None:
                out.append(f'<text x="{label_w}" y="{y + 12}" class="muted">not measured</text>')
            else:
                w = max(1.0, bar_w * value / top)
                out.append(
                    f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{COLORS[i % len(COLORS)]}"/>'
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{value:,.4g}</text>'
                )
            y += row
    out.append("</svg>")
    return mark_safe("".join(out))


def scatter(title: str, x_label: str, y_label: str, points: list[dict]) -> SafeString:
    """Points {x, y, label, front, reference?}: the Pareto front drawn filled and joined by a
    line; a reference point (the base) drawn hollow, outside the front."""
    points = [p for p in points if p["x"] is not None and p["y"] is not None]
    if not points:
        return mark_safe("")
    w, h, pad = 520, 300, 48
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 0.01)

    def px(x: float) -> float:
        return pad + (w - 2 * pad) * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return h - pad - (h - 2 * pad) * (y - y0) / (y1 - y0)

    out = [
        f'<svg class="chart" role="img" width="{w}" height="{h}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" class="axis"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" class="axis"/>',
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">{escape(y_label)}</text>',
        f'<text x="{pad}" y="{h - pad + 14}" text-anchor="middle" class="muted">{x0:,.3g}</text>',
        f'<text x="{w - pad}" y="{h - pad + 14}" text-anchor="middle" class="muted">{x1:,.3g}</text>',
        f'<text x="{pad - 4}" y="{h - pad}" text-anchor="end" class="muted">{y0:,.3g}</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end" class="muted">{y1:,.3g}</text>',
    ]
    front = sorted((p for p in points if p["front"]), key=lambda p: p["x"])
    if len(front) > 1:
        path = " ".join(f"{px(p['x']):.1f},{py(p['y']):.1f}" for p in front)
        out.append(f'<polyline points="{path}" class="front"/>')
    for p in points:
        cls = "point reference" if p.get("reference") else "point front" if p["front"] else "point"
        x, y = px(p["x"]), py(p["y"])
        # labels of points in the right half run leftwards, so that none leaves the chart
        label_x, anchor = (x - 7, "end") if x > w / 2 else (x + 7, "start")
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" class="{cls}"><title>{escape(p["label"])}</title></circle>'
            f'<text x="{label_x:.1f}" y="{y - 6:.1f}" text-anchor="{anchor}" class="point-label">{escape(p["label"])}</text>'
        )
    out.append("</svg>")
    return mark_safe("".join(out))


def pareto_front(rows: list[dict], maximize: tuple[str, ...], minimize: tuple[str, ...]) -> set[int]:
    """Indexes of rows no other row beats on every objective (rows missing a value are left out)."""
    keys = maximize + minimize
    complete = [i for i, r in enumerate(rows) if all(r.get(k) is not None for k in keys)]

    def beats(a: dict, b: dict) -> bool:
        ge = all(a[k] >= b[k] for k in maximize) and all(a[k] <= b[k] for k in minimize)
        gt = any(a[k] > b[k] for k in maximize) or any(a[k] < b[k] for k in minimize)
        return ge and gt

    return {i for i in complete if not any(beats(rows[j], rows[i]) for j in complete if j != i)}
