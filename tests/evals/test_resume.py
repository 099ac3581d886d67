"""An evaluation stopped part way (as a kill stops it) and run again scores only what its request
store lacks, and ends with exactly the results of an uninterrupted run."""

import os
import time

import pytest
from lm_eval.api.instance import Instance

from engine import LLM
from evals import Cancelled, EvalOptions, EvalResult, Suite, prepare, run
from evals.backend import EngineLM
from evals.store import MAX_AGE_S, RequestStore
from tests.evals.conftest import TINY

# TINY without hellaswag, whose document preparation alone outlasts the scoring here
SUITE = Suite("resume", "1", "test suite", tuple(t for t in TINY.tasks if t.name != "hellaswag"))


@pytest.fixture(scope="module")
def plan(stories260k, data_dir):
    return prepare(stories260k, SUITE, EvalOptions(data_dir=data_dir))


@pytest.fixture(scope="module")
def uninterrupted(plan) -> EvalResult:
    return run(plan)


def test_it_scores_only_what_an_interrupted_run_left_and_ends_as_an_uninterrupted_run(plan, uninterrupted, tmp_path):
    total = uninterrupted.requests["scored"]
    assert uninterrupted.requests == {"scored": total, "restored": 0}
    store = RequestStore.open(tmp_path, "stories260k", plan.settings_key)
    with pytest.raises(Cancelled):
        run(plan, cancelled=lambda: len(store) >= total // 2, store=store)
    kept = len(store)
    assert total // 2 <= kept < total

    # as a new process would: the store opened again from its folder
    messages = []
    again = run(
        plan,
        progress=lambda done, message: messages.append(message),
        store=RequestStore.open(tmp_path, "stories260k", plan.settings_key),
    )
    assert again.requests == {"scored": total - kept, "restored": kept}
    assert f"loglikelihood: {total}/{total} requests, {kept} restored" in messages
    # bit for bit: every score, every per-sample log, every metric
    assert again.samples == uninterrupted.samples
    assert again.results["results"] == uninterrupted.results["results"]
    assert again.metrics == uninterrupted.metrics


def test_it_resumes_generations_a_unit_at_a_time(stories260k, tmp_path):
    prompts = ["Once upon a time", "The cat sat", "Lily went to", "Once upon a time", "Tom saw a"]
    # the same request twice (lm-eval's repeats) is two requests, stored apart
    requests = [
        Instance("generate_until", {}, (p, {"until": ["."], "max_gen_toks": 12}), i) for i, p in enumerate(prompts)
    ]

    def backend(store=None, cancelled=None) -> EngineLM:
        # a unit fills the engine's batch: here 2 requests, so 5 make three units
        return EngineLM(llm=LLM(stories260k, max_num_seqs=2), store=store, cancelled=cancelled)

    reference = backend().generate_until(requests)
    store = RequestStore.open(tmp_path, "stories260k", "key")
    with pytest.raises(Cancelled):
        backend(store, cancelled=lambda: len(store) >= 2).generate_until(requests)
    assert len(store) == 2

    again = backend(RequestStore.open(tmp_path, "stories260k", "key"))
    assert again.generate_until(requests) == reference
    assert again.counts == {"scored": 3, "restored": 2}


def test_it_never_reads_back_requests_of_another_model_or_other_settings(plan, tmp_path):
    request, key = ((1, 2, 3), (4,)), plan.settings_key
    store = RequestStore.open(tmp_path, "model-a", key)
    store.put("loglikelihood", {request: (-1.5, True)})
    assert RequestStore.open(tmp_path, "model-a", key).get("loglikelihood", [request]) == {request: [-1.5, True]}
    assert RequestStore.open(tmp_path, "model-a", key).get("loglikelihood_rolling", [request]) == {}
    assert RequestStore.open(tmp_path, "model-b", key).get("loglikelihood", [request]) == {}
    other = RequestStore.open(tmp_path, "model-a", "other settings")
    assert other.get("loglikelihood", [request]) == {}
    with pytest.raises(ValueError, match="the request store holds settings"):
        run(plan, store=other)

    # a file at a store's place that is not that store is replaced, not read
    other.path.write_bytes(b"not a database")
    assert len(RequestStore.open(tmp_path, "model-a", "other settings")) == 0

    # a store left by a stage nobody retried goes after MAX_AGE_S; a removed one is gone at once
    stale = time.time() - MAX_AGE_S - 60
    os.utime(other.path, (stale, stale))
    done = RequestStore.open(tmp_path, "model-c", key)
    done.remove()
    assert not other.path.exists() and not done.path.exists() and store.path.exists()
