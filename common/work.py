"""How long work talks to its caller, the same in every library and in the hub: a progress
callback `progress(done, message)` with `done` from 0 to 1, and a cancel check `cancelled()` asked
between units of work; when it turns true the work raises `Cancelled`."""

from collections.abc import Callable

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


class Cancelled(Exception):
    """The work stopped because its caller's cancel check turned true."""
