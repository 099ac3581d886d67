"""Small charts drawn on the server as inline SVG: the pages work without JavaScript and offline."""

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLORS = ("#8a8f98", "#2f6fdf", "#d9822b", "#2a9d5c", "#b04fc4", "#c23b3b")
# the text of a label at the 11px of hub.css, measured generously: a box too wide only spaces labels out,
# one too narrow lets them overlap
CHAR_WIDTH, LINE_HEIGHT, ASCENT = 6.5, 13, 10
POINT_RADIUS = 5


def number(value: float, decimals: int | None = None, digits: int = 3) -> str:
    """A figure as the pages write it, in tables and charts alike: 34207 -> '34,207', 12.5 -> '12.5',
    0.043 -> '0.043', thousands separated and never in scientific notation. `digits` significant
    digits, unless `decimals` fixes the places: an axis writes all its ticks with its step's, so
    that they line up and never read the same."""
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if value == 0 or abs(value) >= 10**digits:
        return f"{value:,.0f}"
    text = f"{value:,.{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ticks(lo: float, hi: float) -> tuple[list[float], int]:
    """4 to 6 round values, a step of 1, 2, 2.5 or 5 times a power of ten apart, from at or below `lo` to
    at or above `hi`; and the decimal places the step needs."""
    if hi <= lo:  # a single value: a span around it, so that its point sits mid-axis
        spread = abs(lo) / 10 or 1.0
        lo, hi = lo - spread, hi + spread
    # steps grow by at most 2x, so the first one giving at most 6 ticks gives at least 4
    exponent = math.floor(math.log10(hi - lo)) - 2
    while True:
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0**exponent
            # the tolerance keeps float noise (0.3 / 0.1 = 2.9999999999999996) from adding a tick
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last - first <= 5:
                decimals = max(0, -exponent + (1 if mantissa == 2.5 else 0))
                return [k * step for k in range(first, last + 1)], decimals
        exponent += 1


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: "Box") -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def holds(self, other: "Box") -> bool:
        return self.x0 <= other.x0 and other.x1 <= self.x1 and self.y0 <= other.y0 and other.y1 <= self.y1


@dataclass(frozen=True)
class Label:
    text: str
    x: float
    baseline: float
    anchor: str  # "start": the text runs rightwards from x; "end": leftwards
    shift: float = 0  # how far down (up, when negative) it moved to stay clear of the others

    def box(self) -> Box:
        width = CHAR_WIDTH * len(self.text)
        x0 = self.x if self.anchor == "start" else self.x - width
        return Box(x0, self.baseline - ASCENT, x0 + width, self.baseline + LINE_HEIGHT - ASCENT)


def place_labels(points: list[tuple[float, float, str]], area: Box) -> list[Label]:
    """A label for each point (x, y, text), beside it and above, each clear of the other labels and of every
    point, and inside `area`: a label that would collide moves to the other side of its point, then a line
    at a time further down or up, the nearest free place first."""
    placed: list[Box] = []
    obstacles = [Box(x - POINT_RADIUS, y - POINT_RADIUS, x + POINT_RADIUS, y + POINT_RADIUS) for x, y, _ in points]
    lines = math.ceil((area.y1 - area.y0) / LINE_HEIGHT)
    shifts = [0] + [s * LINE_HEIGHT for n in range(1, lines + 1) for s in (n, -n)]
    labels = []
    for x, y, text in points:
        # labels of points in the right half run leftwards first, so that they stay inside the chart
        sides = [(x - 7, "end"), (x + 7, "start")]
        if x <= (area.x0 + area.x1) / 2:
            sides.reverse()
        candidates = [Label(text, lx, y - 6 + shift, anchor, shift) for shift in shifts for lx, anchor in sides]
        # past what the chart can hold a label takes its first place, overlapping: the table lists every variant
        label = next(
            (c for c in candidates if area.holds(c.box()) and not any(c.box().overlaps(b) for b in placed + obstacles)),
            candidates[0],
        )
        placed.append(label.box())
        labels.append(label)
    return labels


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
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{number(value)}</text>'
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
    w, h = 520, 300
    left, right, top, bottom = 64, 24, 20, 44
    x_ticks, x_decimals = ticks(min(p["x"] for p in points), max(p["x"] for p in points))
    y_ticks, y_decimals = ticks(min(p["y"] for p in points), max(p["y"] for p in points))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + (w - left - right) * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return h - bottom - (h - top - bottom) * (y - y0) / (y1 - y0)

    out = [
        f'<svg class="chart" role="img" width="{w}" height="{h}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        '<g class="ticks x">',
        *(
            f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{h - bottom}" class="grid"/>'
            f'<text x="{px(t):.1f}" y="{h - bottom + 14}" text-anchor="middle">{number(t, x_decimals)}</text>'
            for t in x_ticks
        ),
        '</g><g class="ticks y">',
        *(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{w - right}" y2="{py(t):.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{number(t, y_decimals)}</text>'
            for t in y_ticks
        ),
        "</g>",
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" class="axis"/>',
        f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    front = sorted((p for p in points if p["front"]), key=lambda p: p["x"])
    if len(front) > 1:
        path = " ".join(f"{px(p['x']):.1f},{py(p['y']):.1f}" for p in front)
        out.append(f'<polyline points="{path}" class="front"/>')
    # labels may use the margin above the plot, not the tick labels' below and left of it
    area = Box(left, 0, w, h - bottom)
    labels = place_labels([(px(p["x"]), py(p["y"]), p["label"]) for p in points], area)
    for p, label in zip(points, labels):
        cls = "point reference" if p.get("reference") else "point front" if p["front"] else "point"
        x, y = px(p["x"]), py(p["y"])
        if abs(label.shift) > LINE_HEIGHT:  # a label moved away from its point points back to it
            box = label.box()
            out.append(
                f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{label.x:.1f}" y2="{(box.y0 + box.y1) / 2:.1f}" class="leader"/>'
            )
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{POINT_RADIUS}" class="{cls}"><title>{escape(p["label"])}</title></circle>'
            f'<text x="{label.x:.1f}" y="{label.baseline:.1f}" text-anchor="{label.anchor}" class="point-label">'
            f"{escape(p['label'])}</text>"
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
