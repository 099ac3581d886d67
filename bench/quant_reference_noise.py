"""How far transformers agrees with itself on an activation-quantized checkpoint, next to how
far the engine agrees with it: the evidence behind the tolerance of
tests/engine/test_quant_smollm2.py. For each of 32 prompts (the test's, cut to 48 tokens), 6
greedy tokens from transformers' `generate` (incremental, KV cache) are checked against the
argmax of one full forward pass over the same tokens; the engine's tokens likewise. Prints the
prompts that agree at every step and the largest logit gap on each path.

    python -m bench.quant_reference_noise CHECKPOINT_DIR [CHECKPOINT_DIR ...]
"""

import sys
from pathlib import Path

import torch

from engine import LLM
from tests.engine.helpers import hf_greedy, mixed_prompts
from tests.engine.test_quant import load_transformers
from tests.engine.test_quant_smollm2 import GREEDY, PROMPT_TOKENS, transformers_steps


def agreement(steps: list[torch.Tensor], outputs: list[list[int]]) -> tuple[int, float]:
    equal = sum(logits.argmax(-1).tolist() == out for logits, out in zip(steps, outputs))
    gap = max(
        (logits.max(-1).values - logits[range(len(out)), out]).max().item() for logits, out in zip(steps, outputs)
    )
    return equal, gap


def main() -> None:
    torch.set_num_threads(1)
    for path in map(Path, sys.argv[1:]):
        llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64, max_num_batched_tokens=512)
        prompts = [p[:PROMPT_TOKENS] for p in mixed_prompts(llm.tokenizer, 32)]
        engine = [o.token_ids for o in llm.generate(prompts, GREEDY)]
        del llm
        hf = load_transformers(path)
        generated = hf_greedy(hf, prompts, GREEDY.max_tokens)
        self_equal, self_gap = agreement(transformers_steps(hf, prompts, generated), generated)
        engine_equal, engine_gap = agreement(transformers_steps(hf, prompts, engine), engine)
        same = sum(a == b for a, b in zip(engine, generated))
        print(
            f"{path.name}: transformers generate vs its full forward: {self_equal}/32 prompts agree, largest gap "
            f"{self_gap:.3f}; engine vs transformers' full forward: {engine_equal}/32, largest gap {engine_gap:.3f}; "
            f"engine tokens = transformers generate on {same}/32"
        )


if __name__ == "__main__":
    main()
