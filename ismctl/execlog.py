"""Checking a firmware's executed-command log against the program that was sent.

The log also holds what the driver sent on its own account (handshake,
line-number resets, auto-report set-up); ``is_host_command`` names those, and
they are set aside before the comparison, which is otherwise exact: order,
count and text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def compare_exec_log(program: Sequence[str], log_lines: Sequence[str], is_host_command: Callable[[str], bool]) -> str:
    """Return '' when the log is exactly the program, else where and how they first differ."""
    clashes = [i for i, cmd in enumerate(program) if is_host_command(cmd)]
    if clashes:
        return f"program op {clashes[0]} ({program[clashes[0]]!r}) looks like a driver housekeeping command; cannot compare"
    executed = [line for line in log_lines if line and not is_host_command(line)]
    for i, (want, got) in enumerate(zip(program, executed)):
        if want != got:
            return f"op {i}: program has {want!r}, firmware executed {got!r}"
    if len(executed) != len(program):
        extra = "more" if len(executed) > len(program) else "fewer"
        return f"firmware executed {len(executed)} program lines, {extra} than the program's {len(program)}"
    return ""
