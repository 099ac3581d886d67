"""Shared pieces of the engine tests: prompts and transformers references."""

import torch

STORY = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
    "One day, she saw a big red ball in the park. She ran to the ball and picked it up. "
    "Her friend Tom came to play with her. They threw the ball high in the sky and laughed. "
    "Then a small dog came and took the ball away. Lily and Tom ran after the dog. "
    'The dog was fast, but it stopped by a tree. Lily said, "Please give us the ball!" '
    "The dog dropped the ball and wagged its tail. They all played together until the sun went down. "
    "Mom called Lily home for dinner. She was happy and tired. She told Mom about the dog and the ball."
)


def mixed_prompts(tokenizer, n: int = 32) -> list[list[int]]:
    """n prompts of 2 to ~130 tokens: half are prefixes of one story (they share KV blocks), half
    start mid-story (they share nothing)."""
    ids = tokenizer(STORY).input_ids
    bos = ids[:1] if ids[0] == tokenizer.bos_token_id else []
    body = ids[len(bos) :]
    prompts = []
    for i in range(n):
        length = 1 + (i * 37) % min(len(body) - 40, 128)
        start = 0 if i % 2 == 0 else (i * 11) % 40
        prompts.append(bos + body[start : start + length])
    return prompts


def hf_greedy(model, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """transformers' own greedy generate, one prompt at a time (no padding)."""
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            gen = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
            )
            out.append(gen[0, len(p) :].tolist())
    return out


def hf_continuation_logprobs(model, context: list[int], continuation: list[int]) -> list[float]:
    with torch.inference_mode():
        ids = torch.tensor([context + continuation])
        logprobs = model(ids).logits[0].float().log_softmax(-1)
    rows = range(len(context) - 1, len(context) + len(continuation) - 1)
    return [logprobs[r, t].item() for r, t in zip(rows, continuation)]
