"""The paged KV cache's bookkeeping: a pool of fixed-size blocks with reference counts, and a
prefix cache that maps the chained hash of every full block to the block holding its K/V.

Eviction is lazy: a freed block keeps its hash and stays findable until the pool hands it out
again. Free blocks form a doubly linked list so a cache hit can pull a block out of the middle
in O(1); the front is reused first, so unhashed blocks go to the front and hashed ones to the
back (least recently used first), and a request's blocks are freed tail first, because a tail
block is only useful to a request that also shares everything before it.
"""

import hashlib
from array import array

from engine.sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_cnt", "hash", "prev", "next")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_cnt = 0
        self.hash: bytes | None = None
        self.prev: Block | None = None
        self.next: Block | None = None


class FreeBlockQueue:
    def __init__(self, blocks: list[Block]) -> None:
        self.head, self.tail = Block(-1), Block(-1)
        self.head.next, self.tail.prev = self.tail, self.head
        self.size = 0
        for block in blocks:
            self.append(block)

    def __len__(self) -> int:
        return self.size

    def _insert_after(self, anchor: Block, block: Block) -> None:
        block.prev, block.next = anchor, anchor.next
        anchor.next.prev = block
        anchor.next = block
        self.size += 1

    def append(self, block: Block) -> None:
        self._insert_after(self.tail.prev, block)

    def appendleft(self, block: Block) -> None:
        self._insert_after(self.head, block)

    def remove(self, block: Block) -> None:
        block.prev.next, block.next.prev = block.next, block.prev
        block.prev = block.next = None
        self.size -= 1

    def popleft(self) -> Block:
        if self.size == 0:
            raise RuntimeError("no free KV-cache block")
        block = self.head.next
        self.remove(block)
        return block

    def __iter__(self):
        block = self.head.next
        while block is not self.tail:
            yield block
            block = block.next


class BlockPool:
    def __init__(self, num_blocks: int) -> None:
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free = FreeBlockQueue(self.blocks)
        self.cached: dict[bytes, Block] = {}

    @property
    def num_free(self) -> int:
        return len(self.free)

    def get_new_blocks(self, n: int) -> list[Block]:
        if n > len(self.free):
            raise RuntimeError(f"asked for {n} KV-cache blocks, {len(self.free)} free")
        out = []
        for _ in range(n):
            block = self.free.popleft()
            if block.hash is not None:  # the lazy eviction happens here
                if self.cached.get(block.hash) is block:
                    del self.cached[block.hash]
                block.hash = None
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: list[Block]) -> None:
        for block in blocks:
            if block.ref_cnt == 0:
                self.free.remove(block)
            block.ref_cnt += 1

    def free_blocks(self, blocks: list[Block]) -> None:
        """Releases one reference to each block, in the order given (callers pass tail first)."""
        for block in blocks:
            if block.ref_cnt <= 0:
                raise RuntimeError(f"block {block.block_id} freed more often than taken")
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                if block.hash is None:
                    self.free.appendleft(block)
                else:
                    self.free.append(block)

    def cache(self, block: Block, block_hash: bytes) -> None:
        # a block whose content is already cached elsewhere stays unhashed: block tables are
        # append-only, so the duplicate cannot be swapped for the cached one
        if block_hash not in self.cached:
            block.hash = block_hash
            self.cached[block_hash] = block


def hash_block(parent: bytes | None, token_ids: list[int]) -> bytes:
    """Chained hash: a block's hash covers every token before it, not just its own."""
    h = hashlib.sha256(parent or b"")
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks)
        self.seq_blocks: dict[int, list[Block]] = {}
        self.num_hashed: dict[int, int] = {}  # per sequence, how many of its blocks went to the cache

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _block_hashes(self, seq: Sequence, num_blocks: int) -> list[bytes]:
        bs = self.block_size
        while len(seq.block_hashes) < num_blocks:
            i = len(seq.block_hashes)
            parent = seq.block_hashes[-1] if i else None
            seq.block_hashes.append(hash_block(parent, seq.token_ids[i * bs : (i + 1) * bs]))
        return seq.block_hashes

    def computed_blocks(self, seq: Sequence) -> list[Block]:
        """The longest run of the sequence's leading full blocks already in the cache."""
        if not self.enable_prefix_caching:
            return []
        n = seq.max_cached_tokens // self.block_size
        hits = []
        for block_hash in self._block_hashes(seq, n)[:n]:
            block = self.pool.cached.get(block_hash)
            if block is None:
                break
            hits.append(block)
        return hits

    def allocate(self, seq: Sequence, num_new_tokens: int, computed: list[Block] = ()) -> bool:
        """Gives `seq` blocks for `num_new_tokens` more tokens after its computed ones (and after
        the cache hits `computed`, for a sequence not yet holding blocks). False if they don't fit."""
        blocks = self.seq_blocks.setdefault(seq.seq_id, [])
        num_cached = len(computed) * self.block_size
        total = seq.num_computed_tokens + num_cached + num_new_tokens
        num_new_blocks = self.blocks_needed(total) - len(blocks) - len(computed)
        # a hit on a free block takes that block off the free list too
        reclaimed = sum(1 for b in computed if b.ref_cnt == 0)
        if num_new_blocks + reclaimed > self.pool.num_free:
            if not blocks:
                del self.seq_blocks[seq.seq_id]
            return False
        self.pool.touch(list(computed))
        blocks.extend(computed)
        blocks.extend(self.pool.get_new_blocks(max(num_new_blocks, 0)))
        seq.block_table = [b.block_id for b in blocks]
        seq.num_computed_tokens += num_cached
        self._cache_full_blocks(seq, blocks, total)
        return True

    def _cache_full_blocks(self, seq: Sequence, blocks: list[Block], num_tokens: int) -> None:
        # Blocks are registered when scheduled, not when computed: a step writes every token's
        # K/V before any attention reads it, so a request admitted in the same step may share them.
        if not self.enable_prefix_caching:
            return
        done = self.num_hashed.get(seq.seq_id, 0)
        full = num_tokens // self.block_size
        if full <= done:
            return
        hashes = self._block_hashes(seq, full)
        for i in range(done, full):
            self.pool.cache(blocks[i], hashes[i])
        self.num_hashed[seq.seq_id] = full

    def reset_prefix_cache(self) -> None:
        """Forget every cached block; only while no request holds blocks."""
        if self.seq_blocks:
            raise RuntimeError("the prefix cache cannot be reset while requests hold blocks")
        for block in self.pool.cached.values():
            block.hash = None
        self.pool.cached.clear()

    def free(self, seq: Sequence) -> None:
        blocks = self.seq_blocks.pop(seq.seq_id, [])
        self.num_hashed.pop(seq.seq_id, None)
        self.pool.free_blocks(blocks[::-1])
        seq.block_table = []
