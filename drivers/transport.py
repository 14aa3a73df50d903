"""Serial transport: one URL opens real, remote or simulated hardware.

``open_port(url)`` accepts anything pyserial's ``serial_for_url`` does:
``/dev/ttyUSB0``, ``COM3``, a simulator's pty path, ``socket://host:port``,
``rfc2217://host:port``, ``loop://``.  DTR and RTS are left deasserted before the
port is opened where the port type supports it, so that opening a real
Arduino-based board (whose auto-reset circuit pulses on DTR) does not reset it in
the middle of a print.  Nothing above this module knows which kind of port it got.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Callable, Iterator

import serial

__all__ = ["PortUnavailable", "open_port", "Backoff", "read_lines", "write_now", "LineLink"]


class PortUnavailable(OSError):
    """The port could not be opened: ``url`` and a human ``reason``."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"serial port {url!r} unavailable: {reason}")

    def __reduce__(self):
        return (PortUnavailable, (self.url, self.reason))


def open_port(url: str, baudrate: int = 250000, timeout: float | None = 0.1,
              write_timeout: float | None = 5.0) -> serial.Serial:
    """Open ``url`` and return the open pyserial port; raise PortUnavailable on failure.

    ``timeout`` is the read timeout (the streamer's reader thread polls with it).
    """
    try:
        port = serial.serial_for_url(url, do_not_open=True)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise PortUnavailable(url, str(exc) or type(exc).__name__) from None
    try:
        port.baudrate = baudrate
        port.timeout = timeout
        port.write_timeout = write_timeout
        # Deassert DTR/RTS *before* open: pyserial applies them when opening, so an
        # Arduino-style board is not reset by the host connecting.  Not every port
        # type has the lines (sockets, loop://): then there is nothing to reset.
        for attr in ("dtr", "rts"):
            try:
                setattr(port, attr, False)
            except (AttributeError, serial.SerialException, ValueError, OSError, NotImplementedError):
                pass
        port.open()
    except (serial.SerialException, ValueError, OSError) as exc:
        try:
            port.close()
        except Exception:
            pass
        raise PortUnavailable(url, str(exc) or type(exc).__name__) from None
    return port


def read_lines(port, closed: Callable[[], bool]) -> Iterator[bytes]:
    """Each complete line the port receives (CR, NUL and spaces stripped, empty ones skipped) until
    ``closed()``; a read error propagates.  Noise without line ends is cut short, never hoarded."""
    buf = b""
    while not closed():
        n = port.in_waiting
        data = port.read(n if n > 0 else 1)
        if not data:
            continue
        buf += data
        if b"\n" not in buf:
            if len(buf) > 4096:
                buf = buf[-256:]
            continue
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.strip(b"\r\x00 ")
            if line:
                yield line


WRITE_NOW_WAIT_S = 1.0  # how long write_now waits for a full tty buffer to take its bytes


def write_now(port, data: bytes) -> None:
    """Write past pyserial and any lock a streamer holds (e-stop, real-time bytes): straight to the
    file descriptor of a tty or pty, else through the port's own write.

    pyserial's descriptor is non-blocking, so a tty whose output buffer is full (the other side has
    not read yet: a simulator still starting on a loaded machine) refuses with EAGAIN; that is no
    broken link: wait until it takes the bytes, up to ``WRITE_NOW_WAIT_S``, all of them.
    """
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int):
        port.write(data)
        return
    rest = memoryview(data)
    deadline = time.monotonic() + WRITE_NOW_WAIT_S
    while rest:
        try:
            rest = rest[os.write(fd, rest):]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            select.select([], [fd], [], 0.01)


class LineLink:
    """The I/O half of a host streamer (Marlin's, grbl's): one port, one write lock, threads that
    stop on ``close()``, and a reader handing every line to ``_handle(line: bytes)``.

    ``on_event(kind, data)`` hears ``disconnected`` {"text"} when a read fails and ``warning``
    {"text", "op"} when a line upset the handler; ``closed_error`` is raised once the link is gone."""

    closed_error: type[Exception] = ConnectionError

    def __init__(self, port, on_event: Callable[[str, dict], None] | None):
        self.port = port
        self.on_event = on_event or (lambda kind, data: None)
        self._wlock = threading.Lock()
        self._cv = threading.Condition()
        self._closed = False
        self._link_error: str | None = None
        self._threads: list[threading.Thread] = []

    def _start_thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads and close the port (a stream in progress ends as disconnected)."""
        self._closed = True
        with self._cv:
            self._cv.notify_all()
        try:
            self.port.close()
        except Exception:
            pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def _write(self, data: bytes) -> None:
        try:
            with self._wlock:
                self.port.write(data)
        except Exception as exc:  # serial.SerialException, OSError, port closed
            self._link_lost(f"write failed: {exc}")
            raise self.closed_error(str(exc)) from None

    def _link_lost(self, text: str) -> None:
        with self._cv:
            if self._link_error is None:
                self._link_error = text
            self._cv.notify_all()

    def _check_link(self) -> None:
        if self._link_error is not None:
            raise self.closed_error(self._link_error)
        if self._closed:
            raise self.closed_error("streamer closed")

    def _read_loop(self) -> None:
        try:
            for line in read_lines(self.port, lambda: self._closed):
                try:
                    self._handle(line)
                except Exception as exc:  # never let one odd line kill the reader
                    self._emit("warning", {"text": f"reader: {exc!r} on {line[:80]!r}", "op": None})
        except Exception as exc:
            if not self._closed:
                self._link_lost(f"read failed: {exc}")
                self._emit("disconnected", {"text": str(exc)})

    def _handle(self, line: bytes) -> None:
        raise NotImplementedError

    def _emit(self, kind: str, data: dict) -> None:
        try:
            self.on_event(kind, data)
        except Exception:
            pass


class Backoff:
    """Reconnect delays: ``first`` seconds, doubling up to ``maximum``; ``reset()`` on success.

    >>> b = Backoff(0.2, 5.0)
    >>> [b.next() for _ in range(7)]
    [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    """

    def __init__(self, first: float = 0.2, maximum: float = 5.0, factor: float = 2.0):
        if first <= 0 or maximum < first or factor < 1:
            raise ValueError("Backoff needs 0 < first <= maximum and factor >= 1")
        self.first = first
        self.maximum = maximum
        self.factor = factor
        self._next = first
        self.attempts = 0

    def next(self) -> float:
        """The delay to wait before the next attempt (and advance)."""
        d = self._next
        self._next = min(self.maximum, round(self._next * self.factor, 6))
        self.attempts += 1
        return d

    def sleep(self, stop_event=None) -> None:
        """Wait the next delay; returns early when ``stop_event`` (a threading.Event) is set."""
        d = self.next()
        if stop_event is not None:
            stop_event.wait(d)
        else:
            time.sleep(d)

    def reset(self) -> None:
        self._next = self.first
        self.attempts = 0


class StreamControl:
    """Pause / resume / cancel a running stream from any thread.

    Pausing stops sending new lines; lines in flight finish.  Cancelling stops
    sending and returns once the lines in flight are answered.
    """

    def __init__(self):
        self._paused = False
        self._cancelled = False
        self._listeners: list[threading.Condition] = []

    def pause(self) -> None:
        self._paused = True
        self._notify()

    def resume(self) -> None:
        self._paused = False
        self._notify()

    def cancel(self) -> None:
        self._cancelled = True
        self._notify()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _attach(self, cv: threading.Condition) -> None:
        if cv not in self._listeners:
            self._listeners.append(cv)

    def _notify(self) -> None:
        for cv in list(self._listeners):
            with cv:
                cv.notify_all()
