"""Run the local Hub: in-process on a background thread (tests, pipelines) or in the foreground (CLI)."""

from __future__ import annotations

import errno
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from hubtune.core.errors import ConfigError, OptionRangeError, ServerStartError
from hubtune.hub_server.app import ServerConfig, make_app
from hubtune.hub_server.garbage import collect_garbage
from hubtune.hub_server.store import open_store

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class RunningServer:
    """A server on a background thread; ``url`` is its endpoint (HF_ENDPOINT)."""

    url: str
    root: Path
    host: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the caller's thread stops it)."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port), for the server to listen on; a port out of range is
    :class:`OptionRangeError`, one in use or a host that does not resolve :class:`ServerStartError`."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OptionRangeError(f"--port {port} is out of range; expected 0 (a free port) to 65535: pass another --port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServerStartError(f"cannot bind the local Hub to {host!r} ({exc.strerror or exc}); expected a local "
                               "address such as 127.0.0.1: pass another --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        what = (f"port {port} on {host} is in use" if exc.errno == errno.EADDRINUSE else
                f"cannot bind the local Hub to {host}:{port} ({(exc.strerror or type(exc).__name__).lower()})")
        raise ServerStartError(f"{what}; nothing was created; expected a free port: pass another --port (0 picks "
                               "one)") from None
    return sock


def start_server(
    root: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    user: str = "hubtune",
    orgs: list[str] | None = None,
    allow_remote: bool = False,
    startup_timeout: float = 15.0,
) -> RunningServer:
    """Start the local Hub on ``host:port`` (0 = a free port) serving ``root``; returns once it accepts.

    An empty ``token`` is no token (anyone may write), so it cannot open the server to the network. The
    root's garbage (partial uploads, unreferenced blobs, see ``garbage``) is collected first.
    """
    if token is not None and not token.strip():
        token = None
    if host not in LOOPBACK and not allow_remote:
        raise ConfigError(
            f"refusing to bind the local Hub to {host!r}: expected a loopback address (127.0.0.1); "
            "pass --allow-remote (and --token) to expose it on the network"
        )
    if host not in LOOPBACK and token is None:
        raise ConfigError(
            f"binding to {host!r} without a token (none or empty) would let anyone write: pass a non-empty --token"
        )
    sock = bind(host, port)  # before the root is touched: a port in use or out of range creates nothing
    try:
        store = open_store(root)
        collect_garbage(store)
    except BaseException:
        sock.close()
        raise
    app = make_app(store, ServerConfig(token=token, user=user, orgs=orgs))
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
        http="h11", ws="none", timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"hubtune-hub-{port}", daemon=True)
    thread.start()
    deadline = startup_timeout
    while not server.started and thread.is_alive() and deadline > 0:
        thread.join(0.02)
        deadline -= 0.02
    if not server.started:
        server.should_exit = True
        sock.close()
        raise ServerStartError(
            f"the local Hub did not start on {host}:{port} within {startup_timeout:.0f}s; expected it to accept "
            "connections: pick another --port"
        )
    bound = server.servers[0].sockets[0].getsockname()
    actual_port = int(bound[1])
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{shown}:{actual_port}", store.root, host, actual_port, server, thread)
