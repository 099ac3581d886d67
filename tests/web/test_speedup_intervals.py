"""Speedups measured in interleaved rounds, as the pages and the API show them: the median with
its 95% interval, "inconclusive on this machine" and no figure where the rounds cannot tell, and
runs from before rounds labelled as one round."""

import pytest

from hub.catalog.models import Variant
from hub.jobs.models import Recipe, Stage
from hub.results.models import BenchmarkRun
from tests.web.conftest import bench_metrics


def interval(median: float, low: float, high: float, verdict: str) -> dict:
    return {"median": median, "low": low, "high": high, "verdict": verdict, "ratios": [median] * 3}


def measured_variant(catalog, preset: str, base_tps: float, speedup: dict) -> Variant:
    """A variant of llama with its own benchmark stage: three rounds of base and variant."""
    variant = Variant.objects.create(
        base=catalog.llama,
        recipe=Recipe.for_preset(preset),
        job=catalog.job,
        name=f"org/llama-1b-{preset}",
        scheme="W8A8",
    )
    stage = catalog.job.add_stage(Stage.Kind.BENCHMARK, variant.recipe)
    cpu = {"device": "cpu", "cpu": "AMD EPYC", "cpu_cores": 2}
    rounds = [{**bench_metrics(50.0, 10.0, base_tps), "round": r, "load_average": [1.0, 1.2]} for r in range(3)]
    common = dict(stage=stage, job=catalog.job, profile="chat", profile_version="1", engine_version="0.2", hardware=cpu)
    BenchmarkRun.objects.create(
        base_model=catalog.llama, **common, metrics={**rounds[1], "headline_round": 1, "rounds": rounds}
    )
    tps = base_tps * speedup["output_throughput"]["median"]
    BenchmarkRun.objects.create(
        variant=variant,
        **common,
        metrics={**bench_metrics(40.0, 8.0, tps), "headline_round": 1, "rounds": rounds, "speedup": speedup},
    )
    return variant


@pytest.fixture
def rounds(catalog) -> tuple[Variant, Variant]:
    steady = measured_variant(
        catalog, "w8a8-int8", 100.0, {"output_throughput": interval(1.42, 1.31, 1.55, "faster"), "rounds": 3}
    )
    # the base once ran three times slower than in the other rounds
    noisy = measured_variant(
        catalog, "w8a16", 20.0, {"output_throughput": interval(3.0, 0.71, 14.0, "inconclusive"), "rounds": 3}
    )
    return steady, noisy


def test_it_lists_the_interval_and_never_a_bare_figure_for_an_inconclusive_speedup(client, catalog, rounds):
    html = client.get("/").content.decode()
    assert "speedup 1.42x (95% interval 1.31-1.55)" in html
    assert "speedup inconclusive on this machine: 95% interval 0.71-14.00" in html
    assert "3.00x" not in html
    assert "speedup 1.50x (one round)" in html  # w4, measured before rounds


def test_it_ranks_an_inconclusive_speedup_with_the_unmeasured(client, catalog, rounds):
    steady, noisy = rounds
    html = client.get("/?sort=speedup").content.decode()
    order = [html.index(f'data-name="{v.name}"') for v in (catalog.w4, steady, noisy)]
    assert order == sorted(order)


def test_it_shows_the_interval_on_the_variant_and_model_pages(client, catalog, rounds):
    steady, noisy = rounds
    html = client.get(f"/models/variants/{noisy.pk}/").content.decode()
    assert "inconclusive on this machine: 95% interval 0.71-14.00" in html
    assert "this variant: inconclusive on this machine" in html and "3.00x" not in html
    assert "3 rounds</span>" in html
    html = client.get(f"/models/variants/{steady.pk}/").content.decode()
    assert "1.42x (95% interval 1.31-1.55)" in html and "this variant: 1.42x (95% interval 1.31-1.55)" in html
    html = client.get(f"/models/variants/{catalog.w4.pk}/").content.decode()
    assert "1.50x (one round)" in html and "this variant (1.50x), one round" in html

    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert "speedup inconclusive on this machine" in html and "speedup 1.42x (95% interval" in html
    html = client.get(f"/models/{catalog.llama.pk}/compare/").content.decode()
    assert "inconclusive on this machine: 95% interval 0.71-14.00" in html and "3.00x" not in html


def test_it_gives_the_interval_and_verdict_in_the_api(client, catalog, rounds):
    steady, noisy = rounds
    items = {v["name"]: v for v in client.get("/api/v1/variants").json()["items"]}
    assert items[noisy.name]["speedup_verdict"] == "inconclusive"
    assert (items[noisy.name]["speedup_low"], items[noisy.name]["speedup_high"]) == (0.71, 14.0)
    assert items[steady.name]["speedup"] == pytest.approx(1.42) and items[steady.name]["speedup_verdict"] == "faster"
    w4 = items[catalog.w4.name]
    assert w4["speedup"] == pytest.approx(1.5) and w4["speedup_verdict"] is None and w4["speedup_low"] is None
