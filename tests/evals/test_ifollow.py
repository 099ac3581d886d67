"""Our instruction-following checker on hand-written responses: each kind of instruction followed
and not, a prompt that counts only when all its instructions are followed, and the prompts file
we ship."""

import json

import pytest

from evals.ifollow import CHECKS, follows, load_prompts, process_results

# (instruction, a response that follows it, one that does not)
CASES = [
    ({"type": "lowercase"}, "the sun rose slowly over the quiet sea.", "The sun rose slowly over the quiet sea."),
    ({"type": "no_commas"}, "The sky turned pink and then gold.", "The sky turned pink, then gold."),
    ({"type": "min_words", "n": 5}, "One two three four five.", "One two three four."),
    ({"type": "max_words", "n": 5}, "Light scatters off the air.", "Blue light scatters more off the air."),
    ({"type": "keyword", "word": "practice"}, "Practice every day, slowly.", "Play every day; practical tips help."),
    (
        {"type": "end_phrase", "phrase": "Is there anything else I can help with?"},
        "A lazy morning and a long walk. Is there anything else I can help with?\n",
        "Is there anything else I can help with? A lazy morning and a long walk.",
    ),
    ({"type": "quoted"}, ' "Fresh bread, warm hearts." ', '"Fresh bread," warm hearts.'),
    ({"type": "bullets", "n": 3}, "* water\n* sleep\n- food", "* water\n* sleep\n* food\n* air"),
    (
        {"type": "json"},
        '```json\n{"title": "Emma", "author": "Jane Austen", "year": 1815}\n```',
        '{"title": "Emma", "author": "Jane Austen", year: 1815}',
    ),
]


@pytest.mark.parametrize(("instruction", "good", "bad"), CASES, ids=[c[0]["type"] for c in CASES])
def test_it_checks_each_kind_of_instruction(instruction, good, bad):
    assert follows(good, [instruction]) is True
    assert follows(bad, [instruction]) is False


def test_it_covers_every_instruction_it_knows():
    assert {c[0]["type"] for c in CASES} == set(CHECKS)


def test_it_counts_a_prompt_only_when_every_instruction_is_followed():
    instructions = [{"type": "lowercase"}, {"type": "max_words", "n": 4}]
    assert follows("rain on the roof", instructions)
    assert not follows("Rain on the roof", instructions)
    assert not follows("rain on the old roof", instructions)
    assert not follows("   ", [{"type": "no_commas"}])  # an empty answer follows nothing
    # as lm-eval hands a document over: the dataset's columns give every argument, unused ones None
    doc = {"instructions": [{"type": "keyword", "word": "sea", "n": None, "phrase": None}]}
    assert process_results(doc, ["The sea was calm."]) == {"prompt_level_strict_acc": True}
    assert process_results(doc, ["The lake was calm."]) == {"prompt_level_strict_acc": False}


def test_it_ships_forty_prompts_using_every_instruction():
    prompts = load_prompts()
    assert len(prompts) == 40 and len({p["key"] for p in prompts}) == 40
    assert {i["type"] for p in prompts for i in p["instructions"]} == set(CHECKS)
    assert all(1 <= len(p["instructions"]) <= 2 for p in prompts)


@pytest.mark.parametrize(
    ("instruction", "error"),
    [
        ({"type": "sentences", "n": 3}, "unknown instruction 'sentences'"),
        ({"type": "max_words"}, "max_words: missing a required argument: 'n'"),
        ({"type": "keyword", "word": "x", "count": 2}, "keyword: got an unexpected keyword argument 'count'"),
    ],
)
def test_it_refuses_a_prompts_file_with_an_instruction_it_cannot_check(tmp_path, instruction, error):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"key": 1, "prompt": "Say hello.", "instructions": [instruction]}) + "\n")
    with pytest.raises(ValueError, match=error):
        load_prompts(path)
