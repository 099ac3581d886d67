"""Turns a scheduled batch into model inputs, runs the model, and reads logits back.

Input preparation follows vLLM v1: tokens of all sequences are packed; positions continue
from each sequence's computed tokens; `slot_mapping` says where each token's K/V goes;
`query_start_loc` / `seq_lens` / `block_tables` tell attention what each sequence sees.
Only rows whose logits are needed (the last token of a sequence that samples next, and
the tokens a score request reads) go through the LM head.

On CUDA, decode-only steps (every sequence computes one token) replay CUDA graphs (nano-vllm's
scheme): one graph per batch size in `graph_batch_sizes`, captured over static input buffers;
a batch of n sequences replays the smallest captured size >= n, its padding rows storing no
K/V (slot -1) and attending to nothing (context length 0). Prefill and mixed steps run eagerly.
Inputs go up through pinned memory without blocking, so the one host-device sync of a step is
reading its sampled tokens (or scored log-probs).
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.config import EngineConfig
from engine.layers.attention import AttentionMetadata
from engine.layers.sampler import Sampler
from engine.models.llama import LlamaForCausalLM
from engine.scheduler import ScheduledBatch
from engine.sequence import Sequence

_SCORE_ROWS_PER_CHUNK = 1024
_MAX_GRAPH_BATCH = 512


def graph_batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 16, up to and including max_batch."""
    sizes = [s for s in (1, 2, 4, 8) if s < max_batch] + list(range(16, max_batch, 16))
    return sizes + [max_batch]


@dataclass
class StepOutput:
    # sequences that reached their last token this step, each with its next token
    sampled: list[tuple[Sequence, int, dict[int, float] | None]] = field(default_factory=list)
    # score requests: log-probs of the prompt tokens read this step and whether each was the argmax
    scored: list[tuple[Sequence, list[float], list[bool]]] = field(default_factory=list)


def kv_cache_bytes_per_block(cfg: EngineConfig) -> int:
    m = cfg.model
    return 2 * m.num_layers * cfg.block_size * m.num_kv_heads * m.head_dim * cfg.kv_cache_dtype.itemsize


class ModelRunner:
    def __init__(
        self,
        cfg: EngineConfig,
        model: LlamaForCausalLM,
        num_blocks: int,
        generator: torch.Generator,
        cuda_graphs: bool = False,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.device = cfg.device
        self.block_size = cfg.block_size
        m = cfg.model
        # one allocation; layer i reads kv_cache[0, i] (K) and kv_cache[1, i] (V)
        self.kv_cache = torch.zeros(
            2,
            m.num_layers,
            num_blocks,
            cfg.block_size,
            m.num_kv_heads,
            m.head_dim,
            dtype=cfg.kv_cache_dtype,
            device=self.device,
        )
        for i, attn in enumerate(model.attention_layers()):
            attn.k_cache = self.kv_cache[0, i]
            attn.v_cache = self.kv_cache[1, i]
        self.sampler = Sampler(generator)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.num_graph_replays = 0
        if cuda_graphs:
            self._capture_graphs()

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    # ---- CUDA graphs for decode steps -------------------------------------------------------

    @torch.inference_mode()
    def _capture_graphs(self) -> None:
        cfg, dev = self.cfg, self.device
        max_batch = min(cfg.max_num_seqs, _MAX_GRAPH_BATCH)
        max_blocks = -(-cfg.max_model_len // cfg.block_size)
        self.graph_batch_sizes = graph_batch_sizes(max_batch)
        # static inputs every graph reads (its first rows) and the output it writes
        self._g_ids = torch.zeros(max_batch, dtype=torch.int64, device=dev)
        self._g_positions = torch.zeros(max_batch, dtype=torch.int64, device=dev)
        self._g_slots = torch.full((max_batch,), -1, dtype=torch.int64, device=dev)
        self._g_seq_lens = torch.zeros(max_batch, dtype=torch.int32, device=dev)
        self._g_block_tables = torch.zeros(max_batch, max_blocks, dtype=torch.int32, device=dev)
        self._g_query_start_loc = torch.arange(max_batch + 1, dtype=torch.int32, device=dev)
        self._g_hidden = torch.zeros(max_batch, cfg.model.hidden_size, dtype=cfg.dtype, device=dev)
        # pinned staging for the uploads; reused each step once the previous upload is done
        self._h_i64 = torch.zeros(3, max_batch, dtype=torch.int64).pin_memory()
        self._h_seq_lens = torch.zeros(max_batch, dtype=torch.int32).pin_memory()
        self._h_block_tables = torch.zeros(max_batch * max_blocks, dtype=torch.int32).pin_memory()
        self._uploaded = torch.cuda.Event()

        pool = None
        for size in reversed(self.graph_batch_sizes):  # largest first: the others fit in its pool
            # an eager run first compiles and loads the Triton kernels for this shape, which a
            # capture cannot do; with slots -1 and empty contexts it leaves the KV cache alone
            self._graph_forward(size)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool):
                self._graph_forward(size)
            pool = graph.pool()
            self.graphs[size] = graph
        torch.cuda.synchronize(dev)

    def _graph_forward(self, size: int) -> None:
        meta = AttentionMetadata(
            slot_mapping=self._g_slots[:size],
            block_tables=self._g_block_tables[:size],
            seq_lens=self._g_seq_lens[:size],
            query_start_loc=self._g_query_start_loc[: size + 1],
        )
        self._g_hidden[:size] = self.model(self._g_ids[:size], self._g_positions[:size], meta)

    def _replay(
        self,
        input_ids: np.ndarray,
        positions: np.ndarray,
        slot_mapping: np.ndarray,
        seq_lens: np.ndarray,
        block_tables: np.ndarray,
    ) -> torch.Tensor:
        n, width = block_tables.shape
        size = next(s for s in self.graph_batch_sizes if s >= n)
        self._uploaded.synchronize()  # the last upload has left the staging buffers
        h = self._h_i64.numpy()
        h[0, :n], h[1, :n], h[2, :n] = input_ids, positions, slot_mapping
        h[:2, n:size], h[2, n:size] = 0, -1
        lens = self._h_seq_lens.numpy()
        lens[:n], lens[n:size] = seq_lens, 0
        tables = self._h_block_tables[: size * width].view(size, width)
        tables_np = tables.numpy()
        tables_np[:n], tables_np[n:] = block_tables, 0
        self._g_ids[:size].copy_(self._h_i64[0, :size], non_blocking=True)
        self._g_positions[:size].copy_(self._h_i64[1, :size], non_blocking=True)
        self._g_slots[:size].copy_(self._h_i64[2, :size], non_blocking=True)
        self._g_seq_lens[:size].copy_(self._h_seq_lens[:size], non_blocking=True)
        # columns past `width` keep stale ids, which no sequence's context reaches
        self._g_block_tables[:size, :width].copy_(tables, non_blocking=True)
        self._uploaded.record()
        self.graphs[size].replay()
        self.num_graph_replays += 1
        return self._g_hidden[:n]

    def _rows(self, hidden: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """hidden[rows] (rows increasing) without a blocking upload of the index."""
        if rows[-1] - rows[0] == len(rows) - 1:
            return hidden[rows[0] : rows[-1] + 1]
        return hidden.index_select(0, self._to_device(np.asarray(rows, dtype=np.int64)))

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch) -> StepOutput:
        seqs, num_new = batch.seqs, np.asarray(batch.num_new_tokens, dtype=np.int64)
        starts = np.fromiter((s.num_computed_tokens for s in seqs), dtype=np.int64, count=len(seqs))
        ends = starts + num_new
        query_start_loc = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(num_new, out=query_start_loc[1:])
        total = int(query_start_loc[-1])

        input_ids = np.empty(total, dtype=np.int64)
        max_blocks = max(len(s.block_table) for s in seqs)
        block_tables = np.zeros((len(seqs), max_blocks), dtype=np.int32)
        for i, s in enumerate(seqs):
            input_ids[query_start_loc[i] : query_start_loc[i + 1]] = s.token_ids[starts[i] : ends[i]]
            block_tables[i, : len(s.block_table)] = s.block_table
        req_index = np.repeat(np.arange(len(seqs)), num_new)
        positions = np.arange(total, dtype=np.int64) - query_start_loc[req_index] + starts[req_index]
        slot_mapping = (
            block_tables[req_index, positions // self.block_size].astype(np.int64) * self.block_size
            + positions % self.block_size
        )
        sample_rows, sample_seqs, score_rows, score_targets, score_spans = self._logit_rows(
            seqs, starts, ends, query_start_loc
        )

        if self.graphs and total == len(seqs) and len(seqs) <= self.graph_batch_sizes[-1]:
            hidden = self._replay(input_ids, positions, slot_mapping, ends.astype(np.int32), block_tables)
        else:
            meta = AttentionMetadata(
                slot_mapping=self._to_device(slot_mapping),
                block_tables=self._to_device(block_tables),
                seq_lens=self._to_device(ends.astype(np.int32)),
                query_start_loc=self._to_device(query_start_loc.astype(np.int32)),
            )
            hidden = self.model(self._to_device(input_ids), self._to_device(positions), meta)

        out = StepOutput()
        if sample_rows:
            logits = self.model.compute_logits(self._rows(hidden, sample_rows))
            params = [s.params for s in sample_seqs]
            tokens = self.sampler(logits, params, [s.generator for s in sample_seqs]).tolist()
            logprobs = self._sampled_logprobs(logits, tokens, params)
            out.sampled = list(zip(sample_seqs, tokens, logprobs))
        if score_rows:
            token_lp, greedy = self._score(hidden, score_rows, score_targets)
            out.scored = [(s, token_lp[a:b], greedy[a:b]) for s, a, b in score_spans]
        return out

    def _score(self, hidden: torch.Tensor, rows: list[int], targets: list[int]) -> tuple[list[float], list[bool]]:
        token_lp: list[float] = []
        greedy: list[bool] = []
        # a whole window of rows times a large vocabulary would not fit in memory at once
        for i in range(0, len(rows), _SCORE_ROWS_PER_CHUNK):
            chunk = rows[i : i + _SCORE_ROWS_PER_CHUNK]
            logprobs = self.model.compute_logits(self._rows(hidden, chunk)).log_softmax(dim=-1)
            t = self._to_device(np.asarray(targets[i : i + _SCORE_ROWS_PER_CHUNK], dtype=np.int64))
            token_lp += logprobs.gather(1, t[:, None])[:, 0].tolist()
            greedy += (logprobs.argmax(dim=-1) == t).tolist()
        return token_lp, greedy

    @staticmethod
    def _logit_rows(seqs: list[Sequence], starts: np.ndarray, ends: np.ndarray, query_start_loc: np.ndarray):
        sample_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        score_rows: list[int] = []
        score_targets: list[int] = []
        score_spans: list[tuple[Sequence, int, int]] = []
        for i, s in enumerate(seqs):
            start, end = int(starts[i]), int(ends[i])
            if s.score_from is None:
                if end == s.num_tokens:
                    sample_rows.append(int(query_start_loc[i + 1]) - 1)
                    sample_seqs.append(s)
                continue
            # the logits at position p predict token p + 1
            first, last = max(start, s.score_from - 1), min(end, s.num_tokens - 1)
            if first < last:
                a = len(score_rows)
                base = int(query_start_loc[i]) - start
                score_rows.extend(range(base + first, base + last))
                score_targets.extend(s.token_ids[first + 1 : last + 1])
                score_spans.append((s, a, len(score_rows)))
        return sample_rows, sample_seqs, score_rows, score_targets, score_spans

    @staticmethod
    def _sampled_logprobs(logits: torch.Tensor, tokens: list[int], params: list) -> list[dict[int, float] | None]:
        wanted = [p.logprobs for p in params]
        if all(n is None for n in wanted):
            return [None] * len(tokens)
        # log-probs of the model's own distribution, before temperature and filters (as vLLM reports)
        logprobs = logits.log_softmax(dim=-1)
        top_n = max(n or 0 for n in wanted)
        top = logprobs.topk(top_n, dim=-1) if top_n else None
        out: list[dict[int, float] | None] = []
        for i, (token, n) in enumerate(zip(tokens, wanted)):
            if n is None:
                out.append(None)
                continue
            entry = {token: logprobs[i, token].item()}
            if n:
                entry.update(zip(top.indices[i, :n].tolist(), top.values[i, :n].tolist()))
            out.append(entry)
        return out
