"""Loops of many tiny tensor ops run on one CPU thread: forking OpenMP threads for each op costs
more than the op, and on a busy machine one descheduled thread stalls every op (100x slower on a
loaded 2-core machine). torch is imported on use, so that `common` stays light to import."""

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_cpu_thread(on_cpu: bool) -> Iterator[None]:
    """Run the block with torch on one thread when `on_cpu`; otherwise leave threads alone."""
    if not on_cpu:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
