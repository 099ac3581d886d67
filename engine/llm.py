"""The offline engine: `LLM.generate`, `LLM.stream` and `LLM.score` over one step loop."""

import time
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.work import CancelCheck, Cancelled, Progress
from engine.config import EngineConfig, ModelConfig, resolve_device, resolve_dtype, resolve_kv_cache_dtype
from engine.kv_cache import KVCacheManager
from engine.loader import load_model
from engine.runner import ModelRunner, StepOutput, kv_cache_bytes_per_block
from engine.sampling_params import SamplingParams
from engine.scheduler import ScheduledBatch, Scheduler
from engine.sequence import Sequence

_CPU_KV_CACHE_MEMORY = 1 << 30
_CPU_MAX_NUM_BATCHED_TOKENS = 512  # CPU matmuls run fastest on a few hundred rows at a time
_GPU_MAX_NUM_BATCHED_TOKENS = 8192
_GPU_MEMORY_UTILIZATION = 0.9


@dataclass
class RequestOutput:
    index: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (EOS, stop token or stop string) or "length"
    logprobs: list[dict[int, float]] | None
    arrival_time: float  # time.monotonic() seconds
    first_token_time: float | None
    token_times: list[float]
    num_cached_tokens: int


@dataclass
class StreamEvent:
    index: int  # position of the request in the prompts given to `stream`
    token_id: int
    text: str  # text added by this token (may be empty while a character is incomplete)
    time: float  # time.monotonic() when the step that produced the token ended
    finished: bool
    finish_reason: str | None = None


@dataclass
class ScoreResult:
    logprob: float  # sum of the continuation tokens' log-probs
    is_greedy: bool  # every continuation token is the argmax given what precedes it
    token_logprobs: list[float] = field(default_factory=list)


@dataclass
class EngineStats:
    steps: int = 0
    tokens_computed: int = 0  # prefill + decode tokens run through the model
    prefill_tokens: int = 0
    decode_tokens: int = 0
    prefix_cache_hit_tokens: int = 0
    preemptions: int = 0


class LLM:
    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        kv_cache_dtype: str = "auto",
        block_size: int = 16,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int | None = None,
        max_model_len: int | None = None,
        num_kv_blocks: int | None = None,
        kv_cache_memory: int | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        enforce_eager: bool = False,
    ) -> None:
        """`kv_cache_dtype`: "fp8" stores K/V in FP8 E4M3 scaled per layer (the checkpoint's
        k_scale / v_scale, else 1.0), which holds 2x (bf16) or 4x (fp32) the tokens in the same
        memory, and is lossy; "auto" is FP8 where the checkpoint declares a kv_cache_scheme (as
        vLLM does), else the compute dtype; "bfloat16" / "float16" / "float32" store them so. `enforce_eager`: on CUDA, run decode steps
        eagerly instead of replaying CUDA graphs."""
        model_dir = Path(model)
        model_cfg = ModelConfig.from_pretrained(model_dir)
        dev = resolve_device(device)
        limit = model_cfg.max_position_embeddings
        if max_model_len is None:
            max_model_len = limit
        elif max_model_len > limit:
            raise ValueError(f"max_model_len {max_model_len} exceeds the model's max_position_embeddings ({limit})")
        if max_num_batched_tokens is None:
            max_num_batched_tokens = _GPU_MAX_NUM_BATCHED_TOKENS if dev.type == "cuda" else _CPU_MAX_NUM_BATCHED_TOKENS
        compute_dtype = resolve_dtype(dtype, model_cfg, dev)
        self.config = EngineConfig(
            model_dir=model_dir,
            model=model_cfg,
            dtype=compute_dtype,
            device=dev,
            block_size=block_size,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            max_model_len=max_model_len,
            num_kv_blocks=num_kv_blocks,
            kv_cache_memory=kv_cache_memory,
            enable_prefix_caching=enable_prefix_caching,
            seed=seed,
            kv_cache_dtype=resolve_kv_cache_dtype(kv_cache_dtype, compute_dtype, dev, model_cfg.quantization),
        )
        self.model = load_model(model_dir, self.config.dtype, dev, max_position=max_model_len)
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.num_kv_blocks = self._num_kv_blocks()
        self.kv_capacity_tokens = self.num_kv_blocks * block_size
        self.kv = KVCacheManager(self.num_kv_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.kv, max_num_seqs, max_num_batched_tokens)
        self.runner = ModelRunner(
            self.config,
            self.model,
            self.num_kv_blocks,
            torch.Generator(dev).manual_seed(seed),
            cuda_graphs=dev.type == "cuda" and not enforce_eager,
        )
        self.stats = EngineStats()
        self._tokenizer = None
        self._next_id = 0

    def _num_kv_blocks(self) -> int:
        cfg = self.config
        per_block = kv_cache_bytes_per_block(cfg)
        if cfg.num_kv_blocks is not None:
            blocks = cfg.num_kv_blocks
        elif cfg.kv_cache_memory is not None:
            blocks = cfg.kv_cache_memory // per_block
        elif cfg.device.type == "cuda":
            torch.cuda.empty_cache()  # memory cached but unused by this process counts as free
            free, total = torch.cuda.mem_get_info(cfg.device)
            m = cfg.model
            # room for one step's activations and logits next to the cache
            activations = (
                cfg.max_num_batched_tokens * (4 * m.hidden_size + 3 * m.intermediate_size) * cfg.dtype.itemsize * 2
                + cfg.max_num_seqs * m.vocab_size * 4 * 3
                + self._dequant_scratch_bytes()
            )
            blocks = int(free - (1 - _GPU_MEMORY_UTILIZATION) * total - activations) // per_block
        else:
            # enough for max_num_seqs full-length requests, within a modest budget
            wanted = cfg.max_num_seqs * -(-cfg.max_model_len // cfg.block_size)
            blocks = min(wanted, _CPU_KV_CACHE_MEMORY // per_block)
        if blocks < 1:
            raise ValueError("no memory left for the KV cache; lower max_num_batched_tokens or pass num_kv_blocks")
        return blocks

    def _dequant_scratch_bytes(self) -> int:
        """Packed int weights are expanded one layer at a time for products of many rows
        (`kernels.gemm_wna16`); the largest expanded weight must fit beside the cache."""
        sizes = [
            m.out_features * m.in_features
            for m in self.model.modules()
            if getattr(m, "weight_packed", None) is not None
        ]
        return max(sizes, default=0) * self.config.dtype.itemsize

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.config.model_dir)
        return self._tokenizer

    @property
    def _has_tokenizer(self) -> bool:
        d = self.config.model_dir
        return any((d / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))

    # ---- requests ----------------------------------------------------------------------------

    def _new_seq(self, token_ids: list[int], params: SamplingParams, score_from: int | None = None) -> Sequence:
        if not token_ids:
            raise ValueError("empty prompt")
        # a scored sequence is only read; a generating one needs room for at least one more token
        limit = self.config.max_model_len if score_from is not None else self.config.max_model_len - 1
        if len(token_ids) > limit:
            raise ValueError(f"{len(token_ids)} tokens do not fit max_model_len {self.config.max_model_len}")
        vocab = self.config.model.vocab_size
        if min(token_ids) < 0 or max(token_ids) >= vocab:
            raise ValueError(f"token ids must lie in [0, {vocab})")
        generator = None
        if params.seed is not None:
            generator = torch.Generator(self.config.device).manual_seed(params.seed)
        seq = Sequence(self._next_id, list(token_ids), params, score_from=score_from, generator=generator)
        self._next_id += 1
        self.scheduler.add(seq)
        return seq

    def _add_requests(
        self, prompts: Seq[str] | Seq[Seq[int]], params: SamplingParams | Seq[SamplingParams] | None
    ) -> list[Sequence]:
        if params is None:
            params = SamplingParams()
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        token_lists = [self.tokenizer(p).input_ids if isinstance(p, str) else list(p) for p in prompts]
        seqs = []
        try:
            for tokens, p in zip(token_lists, params):
                seqs.append(self._new_seq(tokens, p))
        except Exception:
            self.scheduler.abort_all()
            raise
        return seqs

    # ---- the step loop -----------------------------------------------------------------------

    def _step(self) -> list[tuple[Sequence, int, float]]:
        """Runs one scheduled step; returns (sequence, new token, time) for each sampled token."""
        batch = self.scheduler.schedule()
        if not batch.seqs:
            raise RuntimeError("the scheduler could not schedule any request (KV cache too small?)")
        self._count(batch)
        out = self.runner.execute(batch)
        now = time.monotonic()
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += n
        return self._apply(batch, out, now)

    def _count(self, batch: ScheduledBatch) -> None:
        s = self.stats
        s.steps += 1
        s.preemptions += len(batch.preempted)
        s.prefix_cache_hit_tokens += batch.num_cache_hit_tokens
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            s.tokens_computed += n
            if n == 1 and seq.num_computed_tokens >= seq.num_prompt_tokens:
                s.decode_tokens += 1
            else:
                s.prefill_tokens += n

    def _apply(self, batch: ScheduledBatch, out: StepOutput, now: float) -> list[tuple[Sequence, int, float]]:
        new_tokens = []
        for seq, token, logprobs in out.sampled:
            seq.token_ids.append(token)
            seq.token_times.append(now)
            if logprobs is not None:
                seq.logprobs.append(logprobs)
            reason = self._stop_reason(seq, token)
            if reason:
                self.scheduler.finish(seq, reason)
            new_tokens.append((seq, token, now))
        for seq, logprobs, greedy in out.scored:
            seq.score_logprobs.extend(logprobs)
            seq.score_greedy.extend(greedy)
        for seq in batch.seqs:
            if seq.score_from is not None and seq.num_computed_tokens == seq.num_tokens:
                self.scheduler.finish(seq, "length")
        return new_tokens

    def _stop_reason(self, seq: Sequence, token: int) -> str | None:
        p = seq.params
        if token in p.stop_token_ids or (not p.ignore_eos and token in self.config.model.eos_token_ids):
            return "stop"
        if p.stop:
            previous = len(seq.text)
            seq.text = self._decode(seq.output_token_ids)
            for stop in p.stop:
                at = seq.text.find(stop, max(0, previous - len(stop) + 1))
                if at >= 0:
                    seq.text = seq.text[:at]
                    return "stop"
        if len(seq.output_token_ids) >= p.max_tokens or seq.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True) if self._has_tokenizer else ""

    def _run(self, seqs: list[Sequence], progress: Progress | None, cancelled: CancelCheck | None) -> Iterator[list]:
        """Steps until `seqs` finish, yielding each step's new tokens; drops everything on error."""
        try:
            while self.scheduler.has_unfinished():
                if cancelled is not None and cancelled():
                    raise Cancelled("cancelled")  # the engine has dropped every unfinished request
                new_tokens = self._step()
                if progress is not None:
                    done = sum(s.is_finished for s in seqs)
                    progress(done / len(seqs), f"{done}/{len(seqs)} requests done")
                yield new_tokens
        finally:
            if self.scheduler.has_unfinished():
                self.scheduler.abort_all()

    # ---- public API --------------------------------------------------------------------------

    def generate(
        self,
        prompts: Seq[str] | Seq[Seq[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
        progress: Progress | None = None,
        cancelled: CancelCheck | None = None,
    ) -> list[RequestOutput]:
        seqs = self._add_requests(prompts, params)
        for _ in self._run(seqs, progress, cancelled):
            pass
        return [self._output(i, s) for i, s in enumerate(seqs)]

    def stream(
        self,
        prompts: Seq[str] | Seq[Seq[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
        cancelled: CancelCheck | None = None,
    ) -> Iterator[StreamEvent]:
        seqs = self._add_requests(prompts, params)
        index = {s.seq_id: i for i, s in enumerate(seqs)}
        texts = {s.seq_id: "" for s in seqs}
        for new_tokens in self._run(seqs, None, cancelled):
            for seq, token, t in new_tokens:
                text = self._text(seq)
                old = texts[seq.seq_id]
                stable = text
                if not seq.is_finished:
                    # hold back an incomplete multi-byte character, and whatever could still turn
                    # out to be the start of a stop string (which must not reach the caller)
                    stable = stable.rstrip("\ufffd")
                    if seq.params.stop:
                        stable = stable[: max(0, len(stable) - max(map(len, seq.params.stop)) + 1)]
                delta = stable[len(old) :] if stable.startswith(old) else ""
                if delta:
                    texts[seq.seq_id] = old + delta
                yield StreamEvent(index[seq.seq_id], token, delta, t, seq.is_finished, seq.finish_reason)

    def score(
        self,
        requests: Seq[tuple[Seq[int], Seq[int]]],
        progress: Progress | None = None,
        cancelled: CancelCheck | None = None,
    ) -> list[ScoreResult]:
        """log P(continuation | context) for each (context ids, continuation ids) pair. Requests that
        share a context share its KV-cache blocks (the context's last token is always recomputed)."""
        params = SamplingParams(max_tokens=1, temperature=0)
        seqs = []
        try:
            for context, continuation in requests:
                if not context or not continuation:
                    raise ValueError(
                        "score needs a non-empty context and continuation (prepend BOS to an empty context)"
                    )
                seqs.append(self._new_seq([*context, *continuation], params, score_from=len(context)))
        except Exception:
            self.scheduler.abort_all()
            raise
        for _ in self._run(seqs, progress, cancelled):
            pass
        return [ScoreResult(sum(s.score_logprobs), all(s.score_greedy), list(s.score_logprobs)) for s in seqs]

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix, between calls: greedy and scored requests that run next are
        scheduled and computed as on a freshly made engine (the same steps, so the same bits)."""
        self.kv.reset_prefix_cache()

    def _text(self, seq: Sequence) -> str:
        # with stop strings the text is already decoded (and cut before the stop string)
        if seq.params.stop:
            return seq.text
        ids = seq.output_token_ids
        if seq.finish_reason == "stop" and ids:
            ids = ids[:-1]  # the stop token (or EOS) that ended it
        return self._decode(ids)

    def _output(self, index: int, seq: Sequence) -> RequestOutput:
        return RequestOutput(
            index=index,
            prompt_token_ids=seq.token_ids[: seq.num_prompt_tokens],
            token_ids=seq.output_token_ids,
            text=self._text(seq),
            finish_reason=seq.finish_reason,
            logprobs=seq.logprobs if seq.params.logprobs is not None else None,
            arrival_time=seq.arrival_time,
            first_token_time=seq.token_times[0] if seq.token_times else None,
            token_times=list(seq.token_times),
            num_cached_tokens=seq.num_cached_tokens,
        )
