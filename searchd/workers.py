"""`searchd serve --workers N`: N processes answering on one listening socket (pre-fork).

One process is bounded by the GIL: tokenising, fusing, facet counting and JSON run one thread at
a time however many waitress threads wait, so on two cores a second process nearly doubles
throughput. The parent binds the socket and forks before it imports numpy, torch or FAISS (no
threads to inherit); each child opens the index memory-mapped (a flat index's vectors are then
shared through the page cache, not copied per process), loads the embedder with
`cores / workers` inference threads, and only then accepts connections, so a request that comes
early waits in the socket's backlog instead of getting a 503. The kernel hands each connection
to one worker. A worker that dies is started again; SIGTERM or Ctrl-C stops them all.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import replace

from indexer.settings import Settings

BACKLOG = 1024  # 16 clients reconnecting per request should never see a refused connection
RESTART_PAUSE_S = 1.0


class _Stop(Exception):
    """SIGTERM or SIGINT in the parent: leave the wait loop (os.waitpid resumes after a handler that returns)."""


def _stop(*_args) -> None:
    raise _Stop


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def worker_settings(settings: Settings, workers: int) -> Settings:
    """Settings of one worker: inference threads split between the workers where left to the runtime (0)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    embedder = settings.embedder if settings.embedder.threads else replace(settings.embedder, threads=threads)
    return settings.replace(embedder=embedder)


def _child(settings: Settings, sock: socket.socket, workers: int, ready: int) -> None:
    """Run one worker until SIGTERM: load the index, say so on the `ready` pipe, then serve the shared socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    import torch

    from searchd.server import create_app
    from waitress.server import create_server

    settings = worker_settings(settings, workers)
    torch.set_num_threads(settings.embedder.threads)
    app = create_app(settings)
    holder = app.extensions["searchd"]
    holder.load_in_background(settings).join()  # ready before the first accept (search.mmap_vectors: shared pages)
    if holder.service is None:
        print(f"searchd worker {os.getpid()}: {holder.error}", file=sys.stderr, flush=True)
        os._exit(1)
    server = create_server(app, sockets=[sock], threads=settings.server.threads, ident="searchd")
    os.write(ready, b"1")
    os.close(ready)
    try:
        server.run()
    finally:
        holder.close()


def _spawn(settings: Settings, sock: socket.socket, workers: int) -> tuple[int, int]:
    """Fork a worker: (its pid, the read end of the pipe on which it says it has loaded)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            _child(settings, sock, workers, write)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException as exc:  # noqa: BLE001  (a worker must never return into the parent's loop)
            print(f"searchd worker {os.getpid()} failed: {exc}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    os.close(write)
    os.set_blocking(read, False)
    return pid, read


def _was_ready(read: int) -> bool:
    """Whether a worker that has exited had loaded the index (wrote to its pipe) before it went."""
    try:
        return os.read(read, 1) == b"1"
    except BlockingIOError:
        return False
    finally:
        os.close(read)


def serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run `workers` worker processes on one socket until SIGTERM/SIGINT; restart any that die."""
    sock = listen(host, port)
    print(f"searchd listening on http://{host}:{sock.getsockname()[1]} with {workers} worker processes "
          f"(index {settings.index.dir})", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    children = dict(_spawn(settings, sock, workers) for _ in range(workers))  # pid -> ready pipe
    try:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            pipe = children.pop(pid, None)
            if pipe is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            # A worker that gave up by itself before it had loaded the index could not load it: another
            # would not either. One killed by a signal (the OOM killer, an operator) is started again
            # whether or not it had loaded: on a busy machine a worker may still be loading when killed.
            if not _was_ready(pipe) and code >= 0:
                print(f"searchd worker {pid} exited ({code}) before it had loaded the index; stopping",
                      file=sys.stderr, flush=True)
                raise SystemExit(1)
            print(f"searchd worker {pid} exited ({code}); starting another", file=sys.stderr, flush=True)
            time.sleep(RESTART_PAUSE_S)
            pid, pipe = _spawn(settings, sock, workers)
            children[pid] = pipe
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        sock.close()
        print(f"searchd stopped after {time.monotonic() - started:.0f} s", flush=True)
