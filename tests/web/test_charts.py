"""Charts: figures written as the tables write them, axes with round ticks, point labels that never
overlap; and code snippets that scroll rather than break words."""

import math
import re
import xml.etree.ElementTree as ET
from itertools import combinations

from django.conf import settings

from hub.catalog.charts import Box, Label, bars, number, place_labels, scatter, ticks


def test_it_writes_figures_as_the_tables_do():
    assert number(34207) == "34,207"
    assert number(12.5) == "12.5"
    assert number(0.043) == "0.043"
    assert number(999.7) == "1,000"
    assert number(0.0000123) == "0.0000123"
    assert number(1.5, decimals=2) == "1.50"
    svg = bars("Output throughput", "tokens/s", [("chat", [("base", 34207.0), ("variant", 41000.5)])])
    assert ">34,207<" in svg and ">41,000<" in svg and "e+" not in svg


def tick_labels(svg: str, axis: str) -> list[str]:
    return [t.text for t in ET.fromstring(svg).find(f"g[@class='ticks {axis}']").iter("text")]


def test_it_draws_round_ticks_on_both_axes_of_a_scatter():
    points = [
        {"x": 667.6, "y": 0.976, "label": "w4a16", "front": True},
        {"x": 1239.8, "y": 0.999, "label": "fp8", "front": True},
        {"x": 2288.8, "y": 1.0, "label": "base", "front": False, "reference": True},
    ]
    svg = scatter("Accuracy against size", "size (MB)", "worst-task recovery", points)
    assert tick_labels(svg, "x") == ["500", "1,000", "1,500", "2,000", "2,500"]
    assert tick_labels(svg, "y") == ["0.975", "0.980", "0.985", "0.990", "0.995", "1.000"]
    assert svg.count('class="grid"') == 11 and "size (MB)" in svg

    for lo, hi in ((0.91, 1.0), (1.0, 1.0), (3.2, 1870.0), (0.0012, 0.0031), (12_000.0, 98_500.0)):
        values, _ = ticks(lo, hi)
        step = values[1] - values[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert 4 <= len(values) <= 6 and values[0] <= lo and values[-1] >= hi
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
        assert all(math.isclose(b - a, step) for a, b in zip(values, values[1:]))


def test_it_keeps_point_labels_apart():
    area = Box(64, 0, 520, 256)
    # four variants of nearly the same size and accuracy: each default label would sit on the next
    points = [(300 + i, 120 + 2 * i, f"org/llama-1b-variant-{i}") for i in range(4)]
    boxes = [label.box() for label in place_labels(points, area)]
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))
    assert all(area.holds(b) for b in boxes)
    dots = [Box(x - 5, y - 5, x + 5, y + 5) for x, y, _ in points]
    assert not any(b.overlaps(d) for b in boxes for d in dots)

    # the same, drawn: three variants a few MB apart beside a base far off
    near = [{"x": 700.0 + 10 * i, "y": 1.5, "label": f"org/llama-1b-variant-{i}", "front": False} for i in range(3)]
    svg = scatter(
        "Speed against size", "size (MB)", "speedup", [*near, {"x": 2300.0, "y": 1.0, "label": "base", "front": False}]
    )
    drawn = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)" class="point-label">([^<]+)<', svg)
    boxes = [Label(text, float(x), float(y), anchor).box() for x, y, anchor, text in drawn]
    assert len(boxes) == 4 and not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_it_lets_code_snippets_scroll_rather_than_break_words():
    css = (settings.BASE_DIR / "static/hub/hub.css").read_text()
    rules = dict(re.findall(r"^([^{}\n]+?)\s*\{([^}]*)\}", css, re.M))
    assert "overflow-x: auto" in rules["pre"]
    wrapping = [s for s, body in rules.items() if re.search(r"\bpre\b", s) and re.search(r"pre-wrap|break-all", body)]
    assert wrapping == []
