"""Serial transport: one URL opens real, remote or simulated hardware.

``open_port(url)`` accepts anything pyserial's ``serial_for_url`` does:
``/dev/ttyUSB0``, ``COM3``, a simulator's pty path, ``socket://host:port``,
``rfc2217://host:port``, ``loop://``.  DTR and RTS are left deasserted before the
port is opened where the port type supports it, so that opening a real
Arduino-based board (whose auto-reset circuit pulses on DTR) does not reset it in
the middle of a print.  Nothing above this module knows which kind of port it got.
"""

from __future__ import annotations

import time

import serial

__all__ = ["PortUnavailable", "open_port", "Backoff"]


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
