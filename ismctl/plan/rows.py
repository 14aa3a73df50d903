"""Row copies for Numba kernels, element by element.

A slice or row assignment in a kernel (``out[a:b] = src[c:d]``, ``out[i] =
src[j]``) brings in Numba's shape-mismatch check, whose error message is
formatted at run time: about 35 kB of LLVM bitcode in every kernel that has one,
which each run parses again when it loads the cached kernel (a third of all the
bitcode the slicer loads).  These loops do the same copy without it.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def copy_rows(dst, at, src, first, n):
    """``dst[at:at + n] = src[first:first + n]`` for 2-D arrays of the same width, front to back."""
    for r in range(n):
        for c in range(src.shape[1]):
            dst[at + r, c] = src[first + r, c]


@njit(cache=True, nogil=True)
def copy_items(dst, at, src, first, n):
    """``dst[at:at + n] = src[first:first + n]`` for 1-D arrays, front to back."""
    for r in range(n):
        dst[at + r] = src[first + r]
