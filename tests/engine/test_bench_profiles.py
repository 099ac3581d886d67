"""Workload profiles: the hub offers exactly the engine's, and scaling down for a CPU is recorded."""

import pytest

from engine.profiles import CPU_SCALE, PROFILES, get_profile, parse_concurrency
from hub.jobs import presets


def test_it_offers_the_same_profiles_as_the_hub():
    assert {name: p.description for name, p in PROFILES.items()} == presets.PROFILES


def test_it_defines_the_issue_workloads():
    shapes = {name: (p.input_len, p.output_len) for name, p in PROFILES.items()}
    assert shapes == {
        "chat": (512, 256),
        "rag": (4096, 256),
        "summarization": (2048, 512),
        "code": (256, 1024),
        "single-stream": (512, 128),
        "sweep": (512, 128),
    }
    assert PROFILES["single-stream"].concurrency == (1,)
    sweep = PROFILES["sweep"]
    assert sweep.concurrency == (1, 4, 16, 64, None)
    assert [sweep.requests_at(c) for c in sweep.concurrency] == [4, 16, 64, 256, 512]
    assert all(p.version for p in PROFILES.values())


def test_it_scales_a_profile_down_and_records_the_factor():
    chat = get_profile("chat").scaled(CPU_SCALE)
    assert (chat.input_len, chat.output_len, chat.num_requests, chat.scale) == (64, 32, 32, 0.125)
    assert chat.settings()["scale"] == 0.125 and chat.settings()["profile_version"] == "1"
    tiny = get_profile("single-stream").scaled(1 / 1000)
    assert (tiny.input_len, tiny.output_len, tiny.num_requests) == (1, 2, 4)  # TPOT needs two tokens
    assert get_profile("rag").scaled(1.0) is get_profile("rag")
    with pytest.raises(ValueError, match="scale"):
        get_profile("rag").scaled(2.0)


def test_it_refuses_unknown_names_and_levels():
    with pytest.raises(ValueError, match="unknown benchmark profile 'chatty'; known: chat, rag"):
        get_profile("chatty")
    assert parse_concurrency("1, 4,max") == (1, 4, None)
    with pytest.raises(ValueError, match="'0'"):
        parse_concurrency("0,4")
