"""Checking a firmware's executed-command log against the program that was sent.

The log also holds what the driver sent on its own account (handshake,
line-number resets, temperature polls); ``is_host_command`` names those. The
log is walked in step with the program: a line that is the next program op
advances it, a host command is set aside, anything else is a mismatch.  Order,
count and text are therefore exact for every program line, with one limit: a
program line that is itself a host command (Cura's start code has ``M105``)
cannot be told apart from the driver's own, so it is matched where it stands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def compare_exec_log(program: Sequence[str], log_lines: Sequence[str], is_host_command: Callable[[str], bool]) -> str:
    """Return '' when the log is exactly the program plus host commands, else where they first differ."""
    i = 0
    for n, line in enumerate(log_lines, 1):
        if not line:
            continue
        if i < len(program) and line == program[i]:
            i += 1
        elif not is_host_command(line):
            expected = repr(program[i]) if i < len(program) else "nothing more"
            return f"log line {n}: firmware executed {line!r} where the program has op {i}: {expected}"
    if i != len(program):
        return f"firmware executed {i} of the program's {len(program)} ops; op {i} ({program[i]!r}) never ran"
    return ""
