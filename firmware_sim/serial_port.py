"""Where a simulator meets its host: a pseudo-terminal or a TCP socket.

Both ports offer the same small interface to the event loop: ``poll`` waits for
input (and drains pending output), ``write`` queues output without ever
blocking the firmware, ``discard_input`` empties what the host already sent,
and ``drop_link`` pulls the cable (a fresh pty, or the TCP client is closed and
the next one is accepted) while the firmware keeps running.

Neither transport resets the firmware when a host (re)connects: like a board
with native USB or behind a network bridge, it keeps running and its state.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
import tty

MAX_TX_BUFFER = 1 << 20   # bytes queued for a host that does not read; beyond, output is lost
READ_CHUNK = 65536
ATTACH_POLL = 0.02        # s between checks whether a host has opened the pty
ATTACH_SETTLE = 0.1       # s after a host connects before output is sent to it: hosts
                          # (pyserial) flush their input right after opening a port


class _Port:
    """Output buffering shared by both transports.

    Output made before the first host connects is kept for it (the boot
    banner) and sent ATTACH_SETTLE after it connected; output made while no
    host is connected later is lost.
    """

    def __init__(self, announce):
        self._announce = announce
        self._tx = bytearray()
        self._had_host = False
        self._settle_until = 0.0
        self.tx_dropped = 0

    def _host_fd(self):
        """The connected host's descriptor, or None."""
        raise NotImplementedError

    def _host_present(self) -> bool:
        return self._host_fd() is not None

    def _attached(self) -> None:
        self._had_host = True
        self._settle_until = time.monotonic() + ATTACH_SETTLE

    def _out_fd(self):
        return self._host_fd() if time.monotonic() >= self._settle_until else None

    def _wait_events(self, timeout: float | None):
        """(timeout shortened to the end of the settle time, whether output may go)."""
        settle = self._settle_until - time.monotonic()
        if settle <= 0:
            return timeout, bool(self._tx)
        return (settle if timeout is None else min(timeout, settle)), False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if (self._had_host and not self._host_present()) or \
                len(self._tx) + len(data) > MAX_TX_BUFFER:
            self.tx_dropped += len(data)
            return
        self._tx += data
        self._flush()

    def _flush(self) -> None:
        fd = self._out_fd()
        if fd is None or not self._tx:
            return
        try:
            n = os.write(fd, self._tx)
        except BlockingIOError:
            return
        except OSError:
            self._lost_output()
            return
        del self._tx[:n]

    def _lost_output(self) -> None:
        self.tx_dropped += len(self._tx)
        self._tx.clear()


class PtyPort(_Port):
    """A pseudo-terminal in raw mode; ``link`` is kept pointing at its slave.

    The simulator does not hold the slave open, so the master reports a hang-up
    while no host has the port open.  That tells when a host attaches: output
    made before the first host attached (the boot banner) is delivered to it
    ATTACH_SETTLE after it opened the port, since hosts (pyserial) flush their
    input right after opening; output made while a host is detached later is
    lost, as on a real serial line.
    """

    def __init__(self, announce, link: str | None = None):
        super().__init__(announce)
        self.link = link
        self._poller = select.poll()
        self._open()

    def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self.address = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self._poller.register(master, 0)
        self.attached = False
        if self.link:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.address, tmp)
            os.replace(tmp, self.link)

    def _host_fd(self):
        return self.master if self.attached else None

    def poll(self, timeout: float | None, want_read: bool) -> bytes:
        if not self.attached:
            return self._wait_for_host(timeout)
        timeout, want_write = self._wait_events(timeout)
        events = (select.POLLIN if want_read else 0) | (select.POLLOUT if want_write else 0)
        self._poller.modify(self.master, events)
        ready = self._poller.poll(None if timeout is None else timeout * 1000)
        if not ready:
            self._flush()          # the settle time may just have run out
            return b""
        revents = ready[0][1]
        if revents & select.POLLOUT:
            self._flush()
        if revents & select.POLLIN:
            try:
                data = os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                return b""
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if data:
                return data
        if revents & select.POLLHUP:
            self.attached = False
            self._tx.clear()
        return b""

    def _wait_for_host(self, timeout: float | None) -> bytes:
        self._poller.modify(self.master, 0)
        ready = self._poller.poll(0)
        if not (ready and ready[0][1] & select.POLLHUP):
            self.attached = True
            self._attached()
            return b""
        time.sleep(ATTACH_POLL if timeout is None else min(timeout, ATTACH_POLL))
        return b""

    def discard_input(self) -> None:
        while True:
            try:
                if not os.read(self.master, READ_CHUNK):
                    return
            except OSError:
                return

    def drop_link(self) -> None:
        """Cable pulled: the host's port goes dead, a new one appears."""
        self._tx.clear()
        self._close_master()
        self._open()
        self._announce(self.address)

    def _close_master(self) -> None:
        self._poller.unregister(self.master)
        os.close(self.master)

    def close(self) -> None:
        self._close_master()
        if self.link:
            try:
                if os.readlink(self.link) == self.address:
                    os.unlink(self.link)
            except OSError:
                pass

    def get_status(self) -> dict:
        return {"transport": "pty", "address": self.address, "link": self.link,
                "attached": self.attached, "tx_pending": len(self._tx),
                "tx_dropped": self.tx_dropped}


class TcpPort(_Port):
    """One TCP client at a time, like a serial-to-network bridge; a second
    client waits in the listen backlog until the first has gone."""

    def __init__(self, announce, host: str, port: int):
        super().__init__(announce)
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.setblocking(False)
        self.address = f"socket://{host}:{self.listener.getsockname()[1]}"
        self.client = None

    def _host_fd(self):
        return self.client.fileno() if self.client else None

    def poll(self, timeout: float | None, want_read: bool) -> bytes:
        if self.client is None:
            r, _, _ = select.select([self.listener], [], [], timeout)
            if r:
                self._accept()
            return b""
        timeout, want_write = self._wait_events(timeout)
        rlist = [self.client] if want_read else []
        wlist = [self.client] if want_write else []
        r, w, _ = select.select(rlist, wlist, [], timeout)
        self._flush()
        if r:
            try:
                data = self.client.recv(READ_CHUNK)
            except BlockingIOError:
                return b""
            except OSError:
                data = b""
            if not data:
                self._drop_client()
            return data
        return b""

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client = client
        self._attached()

    def _drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self._tx.clear()

    def _lost_output(self) -> None:
        super()._lost_output()
        self._drop_client()

    def discard_input(self) -> None:
        if self.client is None:
            return
        while True:
            try:
                if not self.client.recv(READ_CHUNK):
                    self._drop_client()
                    return
            except OSError:
                return

    def drop_link(self) -> None:
        self._drop_client()

    def close(self) -> None:
        self._drop_client()
        self.listener.close()

    def get_status(self) -> dict:
        return {"transport": "tcp", "address": self.address, "connected": self.client is not None,
                "tx_pending": len(self._tx), "tx_dropped": self.tx_dropped}
