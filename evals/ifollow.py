"""`ifollow`: a small instruction-following task of our own, in the manner of IFEval.

IFEval's prompts (google/IFEval) are not on an air-gapped hub, and lm-eval's checker for them
downloads NLTK data as it is imported. These 40 prompts are ours (evals/data/ifollow.jsonl), each
with one or two instructions a program can check: all lowercase, no commas, at least or at most
N words, a keyword, an ending phrase, the whole answer in double quotes, exactly N bullet points,
valid JSON. A response scores 1 when it follows every instruction of its prompt (IFEval's
prompt-level strict accuracy), else 0. Words are runs of letters, digits and underscores, as
IFEval counts them.
"""

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "ifollow.jsonl"
METRIC = "prompt_level_strict_acc"
# long enough for the longest answer asked for (120 words and more)
MAX_GEN_TOKS = 256


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def lowercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.lower()


def no_commas(text: str) -> bool:
    return "," not in text


def min_words(text: str, n: int) -> bool:
    return _words(text) >= n


def max_words(text: str, n: int) -> bool:
    return _words(text) <= n


def keyword(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def end_phrase(text: str, phrase: str) -> bool:
    # as IFEval: nothing may follow the phrase but spaces; letter case does not matter
    return text.strip().lower().endswith(phrase.lower())


def quoted(text: str) -> bool:
    text = text.strip()
    return len(text) >= 2 and text[0] == text[-1] == '"'


def bullets(text: str, n: int) -> bool:
    # Markdown bullets: a line that starts with "* " or "- "
    return len(re.findall(r"^\s*[*-]\s+\S", text, re.MULTILINE)) == n


def valid_json(text: str) -> bool:
    # a model may fence its JSON as a Markdown code block; IFEval accepts that too
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.IGNORECASE)
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


CHECKS: dict[str, Callable[..., bool]] = {
    "lowercase": lowercase,
    "no_commas": no_commas,
    "min_words": min_words,
    "max_words": max_words,
    "keyword": keyword,
    "end_phrase": end_phrase,
    "quoted": quoted,
    "bullets": bullets,
    "json": valid_json,
}


def follows(response: str, instructions: list[dict]) -> bool:
    """Whether `response` follows every instruction ({"type": ..., and its arguments})."""
    if not response.strip():
        return False
    return all(CHECKS[i["type"]](response, **_arguments(i)) for i in instructions)


def _arguments(instruction: dict) -> dict:
    # a dataset's rows share one set of columns: arguments of other instructions come as None
    return {k: v for k, v in instruction.items() if k != "type" and v is not None}


def process_results(doc: dict, results: list[str]) -> dict[str, bool]:
    """lm-eval's hook for the task's metric: one generated response per document."""
    return {METRIC: follows(results[0], doc["instructions"])}


def load_prompts(path: Path = DATA) -> list[dict]:
    """The prompts, each checked: a key, a prompt, and instructions the checker knows, with their
    arguments (a mistake in the file would otherwise score as a model's failure)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        instructions = row.get("instructions")
        if not isinstance(row.get("prompt"), str) or not isinstance(instructions, list) or not instructions:
            raise ValueError(f"{path}:{number}: a prompt needs `prompt` text and a list of `instructions`")
        for i in instructions:
            check = CHECKS.get(i.get("type"))
            if check is None:
                raise ValueError(f"{path}:{number}: unknown instruction {i.get('type')!r}; known: {', '.join(CHECKS)}")
            try:
                inspect.signature(check).bind("", **_arguments(i))
            except TypeError as exc:
                raise ValueError(f"{path}:{number}: {i['type']}: {exc}") from None
        rows.append({"key": row["key"], "prompt": row["prompt"], "instructions": instructions})
    return rows
