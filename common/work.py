"""How long work talks to its caller, the same in every library and in the hub: a progress
callback `progress(done, message)` with `done` from 0 to 1, and a cancel check `cancelled()` asked
between units of work; when it turns true the work raises `Cancelled`."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


class Cancelled(Exception):
    """The work stopped because its caller's cancel check turned true."""


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A `Progress` drawn as a bar on stderr, for the libraries' command lines."""
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def progress(done: float, message: str) -> None:
        bar.n = round(done * 1000)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
