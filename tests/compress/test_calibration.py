"""Calibration windows from local files (and the errors when the data cannot serve)."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from compress import CalibrationConfig, CalibrationError
from compress.calibration import load_calibration


@pytest.fixture(scope="module")
def tokenizer(stories260k):
    return AutoTokenizer.from_pretrained(stories260k)


def test_it_cuts_full_windows_that_start_with_bos(tokenizer, lambada):
    ids = load_calibration(tokenizer, CalibrationConfig(str(lambada), 5, 100).resolved("cpu"))
    assert ids.shape == (5, 100) and ids.dtype == torch.long
    assert (ids[:, 0] == tokenizer.bos_token_id).all() and (ids[:, 1:] != tokenizer.bos_token_id).all()
    again = load_calibration(tokenizer, CalibrationConfig(str(lambada), 5, 100).resolved("cpu"))
    other_seed = load_calibration(tokenizer, CalibrationConfig(str(lambada), 5, 100, seed=1).resolved("cpu"))
    assert torch.equal(ids, again) and not torch.equal(ids, other_seed)


def test_defaults_are_smaller_on_the_cpu():
    assert (CalibrationConfig().resolved("cpu").num_samples, CalibrationConfig().resolved("cpu").seq_len) == (64, 512)
    gpu = CalibrationConfig().resolved("cuda")
    assert (gpu.num_samples, gpu.seq_len, gpu.dataset, gpu.chat_template) == (
        512,
        2048,
        "HuggingFaceH4/ultrachat_200k",
        True,
    )


def test_it_reads_text_files_folders_and_named_columns(tokenizer, tmp_path, fixtures_dir):
    wikitext = fixtures_dir / "datasets" / "wikitext2_raw"
    from_folder = load_calibration(tokenizer, CalibrationConfig(str(wikitext), 2, 50).resolved("cpu"))
    expected = tokenizer.encode((wikitext / "test.txt").read_text(), add_special_tokens=False)[:98]
    assert from_folder[:, 1:].flatten().tolist() == expected
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"body": f"Once upon a time there was a cat number {i}."}) + "\n" for i in range(40))
    )
    ids = load_calibration(tokenizer, CalibrationConfig(str(rows), 3, 40, text_column="body").resolved("cpu"))
    assert ids.shape == (3, 40)
    with pytest.raises(CalibrationError, match="text column 'text'"):
        load_calibration(tokenizer, CalibrationConfig(str(rows), 3, 40).resolved("cpu"))


def test_it_renders_chat_messages_with_the_tokenizer_template(tokenizer, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    rows = tmp_path / "chat.jsonl"
    talk = [{"role": "user", "content": "Where is the dog?"}, {"role": "assistant", "content": "In the garden."}]
    rows.write_text(json.dumps({"messages": talk}) + "\n")
    ids = load_calibration(tokenizer, CalibrationConfig(str(rows), 1, 12, chat_template=True).resolved("cpu"))
    rendered = "[user] Where is the dog?\n[assistant] In the garden.\n"
    assert ids[0, 1:].tolist() == tokenizer.encode(rendered, add_special_tokens=False)[:11]


def test_it_says_how_much_data_is_missing(tokenizer, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Lily went to the park. " * 20)
    with pytest.raises(CalibrationError, match=r"has \d+ tokens, but 64 samples of 512 tokens need"):
        load_calibration(tokenizer, CalibrationConfig(str(short)).resolved("cpu"))
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tokenizer, CalibrationConfig(str(tmp_path / "missing.jsonl")).resolved("cpu"))
