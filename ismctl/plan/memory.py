"""Give the memory a finished step freed back to the system (glibc's ``malloc_trim``).

numpy's big temporaries come from the C heap and, once freed, stay resident:
glibc keeps them for reuse, but the next step's millions of small Python
objects come from pymalloc's own arenas, which never reuse them.  So without
this a slice's peak memory is the sum of its steps' leftovers, not its
largest step (on a 1.4M-triangle part, 50 MB more).  A no-op where the C
library has no ``malloc_trim`` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc_name = ctypes.util.find_library("c")
_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (a few milliseconds)."""
    if _trim is not None:
        _trim(0)
