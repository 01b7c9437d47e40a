"""`serve`: the process behind `squeeze serve`: uvicorn running the app on one port, the `-m` models
loaded as it starts (/health answers 200 once they are), and a drain on SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) the server stops accepting connections, answers every request already in
flight (the model workers finish their queues), then returns: `squeeze serve` exits 0 after SIGTERM
and 130 after Ctrl-C, as a shell expects. uvicorn re-raises the signal once it has drained, which
would end the process by that signal instead; `_Server` keeps the signal as a return value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator

from ..environment import Environment
from .app import Service
from .endpoints import build
from .pool import ModelPool

LOOPBACK_NAMES = ("localhost",)


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    models: tuple[str, ...] = ()
    precision: str = "auto"
    api_key: str | None = None
    max_models: int = 4
    queue_texts: int = 4096
    max_texts: int = 1024
    max_bytes: int = 8 * 1024 * 1024
    batch_size: int = 32
    threads: int | None = None


def is_loopback(host: str) -> bool:
    """Whether binding `host` reaches this machine alone (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads (so a port in use fails at once); a --host that
    names no address is a usage error (2)."""
    from ..errors import SqueezeError, UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, reuse_port=False, backlog=2048)
    except OSError as exc:
        # A name that resolves to nothing (getaddrinfo's codes, negative; create_server re-raises them as
        # OSError) or to no address of this machine: the option's value, not the machine's state.
        if isinstance(exc, socket.gaierror) or (exc.errno or 0) < 0 or exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {host!r} is not an address of this machine",
                             hint="give one of its addresses: 127.0.0.1 (this machine only), 0.0.0.0 (every "
                                  "interface)") from None
        raise SqueezeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           hint="choose another --port (0: any free one)") from None


def serve(settings: Settings, env: Environment) -> int:
    """Run the server until SIGTERM or Ctrl-C; the exit status."""
    import uvicorn

    sock = listen(settings.host, settings.port)
    port = sock.getsockname()[1]

    restricted = not is_loopback(settings.host)
    pool = ModelPool(precision=settings.precision, max_models=settings.max_models, pinned=settings.models,
                     restricted=restricted, max_texts=max(settings.batch_size, 256), batch_size=settings.batch_size,
                     env=env, threads=settings.threads)
    service = Service(pool, queue_texts=settings.queue_texts, max_texts=settings.max_texts,
                      max_bytes=settings.max_bytes, api_key=settings.api_key, debug=env.debug)
    pool.on_batch = service.metrics.batch
    config = uvicorn.Config(build(service), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="off", server_header=False)
    server = _Server(config)
    loader = threading.Thread(target=_load_models, args=(service, settings, server, env), name="squeeze-preload",
                              daemon=True)
    loader.start()
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    env.notice(f"serving on http://{shown}:{port}" + (" (API key required)" if settings.api_key else "")
               + (f"; loading {', '.join(settings.models)}" if settings.models else ""))
    try:
        server.run(sockets=[sock])
    finally:
        pool.stop()
    if service.failure:
        return service.failure_status
    return 130 if server.signal_number == signal.SIGINT else 0


def _load_models(service: Service, settings: Settings, server: "_Server", env: Environment) -> None:
    """Load the -m models (each for the task its head serves), then mark the server ready."""
    from ..errors import SqueezeError

    for name in settings.models:
        try:
            service.pool.preload(name)
        except SqueezeError as exc:
            service.failure = f"{name}: {exc.message}"
            service.failure_status = int(exc.status)
            env.notice(f"cannot load {name}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            server.should_exit = True
            return
    service.ready = True
    if settings.models:
        env.notice(f"ready: {', '.join(settings.models)}")


class _Server:
    """uvicorn.Server, with the signal it stopped on kept rather than raised again."""

    def __new__(cls, config):  # a subclass made at run time: uvicorn is imported only when serving
        import uvicorn

        class Server(uvicorn.Server):
            signal_number: int | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            def install_signal_handlers(self) -> None:  # uvicorn before capture_signals
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, self._stop)

            def _stop(self, sig: int, frame) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True  # a second Ctrl-C: stop waiting
                self.signal_number = self.signal_number or sig
                self.should_exit = True

        return Server(config)
