"""Reaching the hub from inside a network namespace that has nothing but loopback: a unix
socket crosses namespaces, a TCP route does not. The host side forwards the socket to the hub;
`python -m tests.relay PORT SOCKET COMMAND...`, run inside the namespace, forwards
127.0.0.1:PORT to the socket and runs COMMAND there."""

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


def pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def serve(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Forward every connection `listener` accepts to a new `connect()`, both ways, until it closes."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = connect()
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


@contextlib.contextmanager
def unix_to_tcp(path: Path, port: int) -> Iterator[None]:
    """While open, connections to the unix socket `path` reach 127.0.0.1:`port` (the host side)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    threading.Thread(
        target=serve, args=(listener, lambda: socket.create_connection(("127.0.0.1", port))), daemon=True
    ).start()
    try:
        yield
    finally:
        listener.close()


def main() -> int:
    port, path, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    # a new network namespace starts with its loopback down
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.create_server(("127.0.0.1", port))

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(path)
        return upstream

    threading.Thread(target=serve, args=(listener, connect), daemon=True).start()
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
