"""An lm-eval model backend on our engine (`--model hub-engine`).

Tokenization follows lm-eval's `hf` backend exactly (its `TemplateLM` pairs encoding, BOS as
the tokenizer adds it unless `add_bos_token` says otherwise, BOS (else EOS) as the context of
an empty one), so the two backends score the same token sequences. Scoring goes through
`LLM.score` in waves ordered so that requests sharing a prefix (the choices of one question,
the few-shot examples of a subject) reuse the KV cache of the first request that computed it:
requests scheduled in the same engine step cannot share what neither has computed yet.

Each kind of request runs in units (about 1/64 of its requests), each from an empty prefix
cache: a unit's results then depend on its own requests only, bit for bit. Given a
`RequestStore`, each unit is stored as it completes and a unit found there is not run again, so
an evaluation killed and run again scores only the missing units and ends with exactly the
results of an uninterrupted run.
"""

import bisect
from pathlib import Path

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    _add_special_kwargs,
    handle_stop_sequences,
    has_bos_prefix,
    maybe_truncate,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from common.work import CancelCheck, Progress
from evals.store import RequestStore


@register_model("hub-engine")
class EngineLM(TemplateLM):
    """`pretrained`: a checkpoint directory (or pass a ready `llm`). `progress(fraction, message)`
    is told how far each batch of requests of one kind has got; `cancelled()` is checked by the
    engine between steps. `store`: where results are kept as they complete and found again;
    `counts` says how many requests the engine scored and how many came from the store."""

    def __init__(
        self,
        pretrained: str | Path | None = None,
        *,
        llm=None,
        dtype: str = "auto",
        device: str = "auto",
        add_bos_token: bool | None = None,
        max_model_len: int | None = None,
        max_gen_toks: int = 256,
        progress: Progress | None = None,
        cancelled: CancelCheck | None = None,
        store: RequestStore | None = None,
        **engine_kwargs,
    ) -> None:
        super().__init__()
        if llm is None:
            if pretrained is None:
                raise ValueError("hub-engine needs pretrained=<checkpoint dir> (or an LLM)")
            from engine import LLM

            engine_kwargs = {k: v for k, v in engine_kwargs.items() if k not in ("batch_size", "max_batch_size")}
            llm = LLM(pretrained, dtype=dtype, device=device, max_model_len=max_model_len, **engine_kwargs)
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.add_bos_token = add_bos_token
        self._max_gen_toks = int(max_gen_toks)
        self.progress = progress or (lambda done, message: None)
        self.cancelled = cancelled
        self.store = store
        self.counts = {"scored": 0, "restored": 0}

    # ---- what TemplateLM and lm-eval's evaluator ask of a backend ------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self.llm.config.max_model_len

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        # a string that already starts with BOS (a chat template's output) gets no second one
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        return self.tokenizer.encode(string, **special)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def get_model_info(self) -> dict:
        cfg = self.llm.config
        return {
            "model_dir": str(cfg.model_dir),
            "dtype": str(cfg.dtype).removeprefix("torch."),
            "device": str(cfg.device),
        }

    # ---- scoring -------------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: ((context, continuation) | None, context ids, continuation ids)."""
        pairs = [self._fit(ctx, cont) for _, ctx, cont in requests]
        results = self.score_pairs(pairs, "loglikelihood")
        return [results[p] for p in pairs]

    def _fit(self, context: list[int], continuation: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Left-truncate context + continuation to the engine's length, as lm-eval's backends do."""
        limit = self.max_length
        if len(continuation) >= limit:
            raise ValueError(
                f"a continuation of {len(continuation)} tokens leaves no context within max_model_len {limit}"
            )
        whole = (context + continuation)[-limit:]
        return tuple(whole[: len(whole) - len(continuation)]), tuple(continuation)

    def score_pairs(self, pairs: list[tuple[tuple, tuple]], kind: str) -> dict[tuple, tuple[float, bool]]:
        unique = sorted(set(pairs), key=lambda p: p[0] + p[1])
        results: dict[tuple, tuple[float, bool]] = {}
        done = restored = 0
        self._say(kind, 0, len(unique), 0)
        for unit in self._units(unique):
            found = self._restore(kind, unit)
            if found is not None:
                results.update((pair, (logprob, greedy)) for pair, (logprob, greedy) in zip(unit, found))
                done += len(unit)
                restored += len(unit)
                self._say(kind, done, len(unique), restored)
                continue
            self.llm.reset_prefix_cache()
            scored = {}
            for chunk in self._chunks(unit):
                for wave in _waves(chunk, self.llm.config.block_size):

                    def step(fraction: float, message: str, base: int = done, size: int = len(wave)) -> None:
                        self._say(kind, base + round(fraction * size), len(unique), restored)

                    scores = self.llm.score(wave, progress=step, cancelled=self.cancelled)
                    scored.update((pair, (s.logprob, s.is_greedy)) for pair, s in zip(wave, scores))
                    done += len(wave)
            self._keep(kind, scored)
            results.update(scored)
        self._say(kind, len(unique), len(unique), restored)
        return results

    def _say(self, kind: str, done: int, total: int, restored: int) -> None:
        note = f", {restored} restored" if restored else ""
        self.progress(done / max(total, 1), f"{kind}: {done}/{total} requests{note}")

    def _units(self, pairs: list[tuple[tuple, tuple]]):
        """Runs of prefix-sorted requests holding at least 1/_UNITS of them and at least one
        engine step's worth of distinct tokens (fewer would leave steps half empty)."""
        least = -(-len(pairs) // _UNITS)
        budget = self.llm.config.max_num_batched_tokens
        unit, used, previous = [], 0, ()
        for pair in pairs:
            tokens = pair[0] + pair[1]
            if len(unit) >= least and used >= budget:
                yield unit
                unit, used, previous = [], 0, ()
            unit.append(pair)
            used += len(tokens) - _common_prefix(previous, tokens)
            previous = tokens
        if unit:
            yield unit

    def _restore(self, kind: str, requests: list) -> list | None:
        """The stored results of a whole unit, in order, or None when any is missing: a unit runs
        entirely or not at all, so its results come out as an uninterrupted run's."""
        if self.store is None:
            return None
        found = self.store.get(kind, requests)
        if len(found) < len(requests):
            return None
        self.counts["restored"] += len(requests)
        return [found[r] for r in requests]

    def _keep(self, kind: str, results: dict) -> None:
        self.counts["scored"] += len(results)
        if self.store is not None:
            self.store.put(kind, results)

    def _chunks(self, pairs: list[tuple[tuple, tuple]]):
        """Runs of prefix-sorted requests whose distinct tokens fit half the KV cache, so what one
        wave computed is still cached when the next wave of the run needs it."""
        budget = max(self.llm.kv_capacity_tokens // 2, 1)
        chunk, used, previous = [], 0, ()
        for pair in pairs:
            tokens = pair[0] + pair[1]
            new = len(tokens) - _common_prefix(previous, tokens)
            if chunk and used + new > budget:
                yield chunk
                chunk, used = [], 0
                new = len(tokens)
            chunk.append(pair)
            used += new
            previous = tokens
        if chunk:
            yield chunk

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        # windows of max_model_len - 1 predicted tokens: the engine scores context + continuation
        # within max_model_len, and each window carries one token of context
        windows = []
        for req in requests:
            (string,) = req.args
            tokens = self.tok_encode(string)
            windows.append(
                [
                    (tuple(ctx), tuple(cont))
                    for ctx, cont in map(
                        make_disjoint_window,
                        get_rolling_token_windows(tokens, self.prefix_token_id, self.max_length - 1, 1),
                    )
                ]
            )
        results = self.score_pairs([w for doc in windows for w in doc], "loglikelihood_rolling")
        out = []
        for req, doc in zip(requests, windows):
            total = sum(results[w][0] for w in doc)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return out

    # ---- generation ----------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from engine import SamplingParams

        eos = self.tokenizer.decode(self.eot_token_id) or self.tokenizer.eos_token
        prompts, params, stops, keys = [], [], [], []
        seen: dict[tuple, int] = {}
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(gen_kwargs, default_max_gen_toks=self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_tokens = int(kwargs.pop("max_gen_toks"))
            tokens, max_tokens = maybe_truncate(self.tok_encode(context), max_tokens, self.max_length - 1)
            do_sample = kwargs.pop("do_sample", False)
            p = SamplingParams(
                max_tokens=max_tokens,
                temperature=float(kwargs.get("temperature", 0.0)) if do_sample else 0.0,
                top_p=float(kwargs.get("top_p", 1.0)),
                top_k=int(kwargs.get("top_k", 0) or 0),
                seed=kwargs.get("seed"),
                stop=[s for s in until if s],
            )
            prompts.append(tokens)
            params.append(p)
            stops.append(until)
            # repeats of one request (lm-eval's `repeats`) are told apart by their occurrence
            key = (tuple(tokens), p.max_tokens, p.temperature, p.top_p, p.top_k, p.seed, tuple(p.stop))
            seen[key] = seen.get(key, -1) + 1
            keys.append((*key, seen[key]))
        # a decode step batches every running request: a unit fills the engine's batch
        size = max(-(-len(prompts) // _UNITS), self.llm.config.max_num_seqs)
        generated: list[str] = []
        restored = 0
        self._say("generate_until", 0, len(prompts), 0)
        for start in range(0, len(prompts), size):
            unit = slice(start, start + size)
            found = self._restore("generate_until", keys[unit])
            if found is None:
                self.llm.reset_prefix_cache()

                def step(fraction: float, message: str, base: int = start, n: int = len(keys[unit])) -> None:
                    self._say("generate_until", base + round(fraction * n), len(prompts), restored)

                outputs = self.llm.generate(prompts[unit], params[unit], progress=step, cancelled=self.cancelled)
                found = [out.text for out in outputs]
                self._keep("generate_until", dict(zip(keys[unit], found)))
            else:
                restored += len(found)
            generated += found
            self._say("generate_until", len(generated), len(prompts), restored)
        texts = []
        for req, text, until in zip(requests, generated, stops):
            text = postprocess_generated_text(text, until, None)
            texts.append(text)
            self.cache_hook.add_partial("generate_until", req.args, text)
        return texts


def _common_prefix(a: tuple, b: tuple) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# a unit holds at least 1/_UNITS of a kind's requests: a kill loses at most the unit in flight,
# and a unit's empty prefix cache recomputes a shared prefix at most _UNITS times more per kind
_UNITS = 64

# fewer shared tokens than this are not worth holding a request back a wave for
_MIN_SHARED = 8


def _waves(pairs: list[tuple[tuple, tuple]], block_size: int) -> list[list]:
    """Split prefix-sorted requests into waves: a request waits one wave after the first request
    (in sorted order) that holds at least one full KV block of its prefix, so that block is cached
    by the time it runs. MMLU's shape, for instance (one few-shot prefix, many questions, four
    answers each), takes three waves; requests that share less than a block (or than
    `_MIN_SHARED` tokens) run in the first."""
    tokens = [c + k for c, k in pairs]
    # lcp[i]: prefix shared by request i with request i-1; in sorted order that is the longest it
    # shares with any earlier request, and the first request holding a prefix of length t is the
    # last k <= i with lcp[k] < t: kept findable on a stack of strictly increasing lcp values
    lcp = [0] + [_common_prefix(tokens[i - 1], tokens[i]) for i in range(1, len(tokens))]
    waves: list[int] = []
    stack: list[int] = []
    values: list[int] = []
    for i in range(len(pairs)):
        while values and values[-1] >= lcp[i]:
            stack.pop()
            values.pop()
        stack.append(i)
        values.append(lcp[i])
        # blocks of the context only: the engine recomputes the context's last token, and the
        # continuation's tokens are what is scored
        shared = min(lcp[i], len(pairs[i][0]) - 1)
        if shared < max(block_size, _MIN_SHARED):
            waves.append(0)
            continue
        leader = stack[bisect.bisect_left(values, shared) - 1]
        waves.append(waves[leader] + 1)
    out: list[list] = [[] for _ in range(max(waves, default=-1) + 1)]
    for pair, wave in zip(pairs, waves):
        out[wave].append(pair)
    return out
