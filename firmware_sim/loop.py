"""The single-threaded event loop that drives any simulated firmware on a port.

One loop, no threads: service the firmware (physics catch-up, queue, timers),
send its output, then wait on the port until the next virtual deadline.  At
``--speed max`` the loop never sleeps while the firmware waits on itself: it
polls the port once (so an emergency command can still get in) and then jumps
the virtual clock to the next deadline.

The firmware object needs: service(), take_output(), receive(bytes),
wants_input(), blocked(), next_deadline(), and the two flags
discard_requested / link_drop_requested with link_lost().
"""

from __future__ import annotations

import signal

MIN_SLEEP = 0.001     # real s; physics catches up exactly, so waking later is harmless
MAX_SLEEP = 0.2       # real s; bounds how long a signal (reset, stop) waits to be seen


def run(firmware, port, clock, should_stop) -> None:
    """Serve until ``should_stop()`` (asked once per iteration) is true."""
    while not should_stop():
        firmware.service()
        if firmware.discard_requested:
            # Flush before the Resend goes out, as Marlin's flush_and_request_resend
            # does (SERIAL_FLUSH, then "Resend:"): whatever the host writes once it
            # has read the Resend is the retransmission and must be kept.
            firmware.discard_requested = False
            port.discard_input()
        port.write(firmware.take_output())
        if firmware.link_drop_requested:
            port.drop_link()
            firmware.link_lost()
        blocked = firmware.blocked()
        deadline = firmware.next_deadline()
        if clock.is_max:
            timeout = 0.0 if blocked else MAX_SLEEP
        elif deadline is None:
            timeout = MAX_SLEEP
        else:
            timeout = min(max(clock.real_timeout(deadline), MIN_SLEEP), MAX_SLEEP)
        data = port.poll(timeout, firmware.wants_input())
        if data:
            firmware.receive(data)
        elif clock.is_max and blocked and deadline is not None:
            clock.jump_to(deadline)


def run_until_signalled(firmware, port, clock, reset) -> None:
    """Serve until SIGINT or SIGTERM; SIGUSR1 calls ``reset`` (the board's reset button).

    The handlers only record the signal; the loop acts on it between two iterations.
    """
    signals = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, lambda signum, frame: signals.append(signum))

    def should_stop():
        if signal.SIGUSR1 in signals:
            signals.remove(signal.SIGUSR1)
            reset()
        return bool(signals)

    run(firmware, port, clock, should_stop)
