"""An independent grbl host: the algorithm of grbl's own ``doc/script/stream.py``, in Python 3.

Written from grbl's script, not from our driver, so that the mill simulator is
checked against the way grbl's authors stream:

* wake grbl with two CR LF pairs, wait, and throw away whatever it said;
* streaming mode: keep a list of the byte lengths (line + newline) of the lines
  sent and not yet answered; before sending a line, read answers while the sum
  including the new line reaches RX_BUFFER_SIZE - 1, or while answers are waiting;
  every ``ok`` or ``error`` drops the oldest length;
* settings mode (``-s``): send one line, read one answer (EEPROM writes stop
  grbl's serial interrupt, so settings are never streamed).

Unlike the original it waits for the last answers instead of for the Enter key,
and exits 1 when grbl answered any line with an error.

    python tests/hosts/grbl_stream.py program.nc /dev/pts/5 [-q] [-s]
"""

from __future__ import annotations

import argparse
import sys
import time

import serial

RX_BUFFER_SIZE = 128


def wake(port: serial.Serial, wait_s: float) -> None:
    port.write(b"\r\n\r\n")
    time.sleep(wait_s)
    port.reset_input_buffer()


def answer(port: serial.Serial) -> str:
    text = port.readline()
    if not text.endswith(b"\n"):
        raise TimeoutError(f"grbl did not answer within {port.timeout} s")
    return text.decode("latin-1").strip()


def is_answer(text: str) -> bool:
    return "ok" in text or "error" in text


def send_settings(port: serial.Serial, lines, say) -> int:
    """Call and response: one line out, one answer in."""
    errors = 0
    for count, line in enumerate(lines, 1):
        block = line.strip()
        port.write(block.encode("ascii") + b"\n")
        reply = answer(port)
        errors += "error" in reply
        say(f"SND: {count}:{block} REC: {reply}")
    return errors


def stream(port: serial.Serial, lines, say) -> int:
    """Character counting: never more than RX_BUFFER_SIZE - 1 bytes unanswered."""
    in_buffer: list[int] = []
    answered = errors = 0
    for count, line in enumerate(lines, 1):
        block = line.strip()
        in_buffer.append(len(block) + 1)
        while sum(in_buffer) >= RX_BUFFER_SIZE - 1 or port.in_waiting:
            reply = answer(port)
            if not is_answer(reply):
                say(f"  Debug: {reply}")
                continue
            answered += 1
            errors += "error" in reply
            del in_buffer[0]
        port.write(block.encode("ascii") + b"\n")
        say(f"SND: {count} : {block} BUF: {sum(in_buffer)}")
    while in_buffer:  # the original waits for the operator here; we wait for grbl
        reply = answer(port)
        if is_answer(reply):
            answered += 1
            errors += "error" in reply
            del in_buffer[0]
    return errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Stream a G-code file to grbl (grbl's stream.py algorithm, Python 3)")
    ap.add_argument("gcode_file", type=argparse.FileType("r"), help="G-code file to stream")
    ap.add_argument("device_file", help="serial device path (a pty, /dev/ttyUSB0)")
    ap.add_argument("-q", "--quiet", action="store_true", help="suppress output text")
    ap.add_argument("-s", "--settings", action="store_true", help="settings write mode (send and wait)")
    ap.add_argument("--wake-wait", type=float, default=2.0, help="seconds to let grbl start up (default 2, as the original)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for any one answer")
    args = ap.parse_args(argv)
    say = (lambda text: None) if args.quiet else print
    with args.gcode_file as f:
        lines = [line for line in f.read().splitlines()]
    port = serial.Serial(args.device_file, 115200, timeout=args.timeout)
    try:
        wake(port, args.wake_wait)
        errors = (send_settings if args.settings else stream)(port, lines, say)
    finally:
        port.close()
    say(f"G-code streaming finished: {len(lines)} lines, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
