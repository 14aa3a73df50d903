"""Row copies for kernels against numpy's slice assignment."""

from __future__ import annotations

import numpy as np
import pytest

from ismctl.plan.rows import copy_items, copy_rows


@pytest.mark.parametrize("at, first, n", [(0, 0, 0), (0, 0, 5), (3, 1, 4), (6, 0, 1), (2, 6, 1)])
def test_copy_rows_is_slice_assignment(at, first, n):
    src = np.arange(14, dtype=np.float64).reshape(7, 2) + 0.5
    dst, want = np.full((8, 2), -1.0), np.full((8, 2), -1.0)
    want[at:at + n] = src[first:first + n]
    copy_rows(dst, at, src, first, n)
    assert np.array_equal(dst, want)


def test_copy_rows_within_one_array_front_to_back():
    a = np.arange(12, dtype=np.int64).reshape(6, 2)
    want = a.copy()
    want[1:4] = a[2:5].copy()
    copy_rows(a, 1, a, 2, 3)  # the destination starts before the source: a forward copy is exact
    assert np.array_equal(a, want)


@pytest.mark.parametrize("at, first, n", [(0, 0, 0), (0, 0, 6), (2, 3, 3)])
def test_copy_items_is_slice_assignment(at, first, n):
    src = np.arange(6, dtype=np.uint8) + 40
    dst, want = np.zeros(9, np.uint8), np.zeros(9, np.uint8)
    want[at:at + n] = src[first:first + n]
    copy_items(dst, at, src, first, n)
    assert np.array_equal(dst, want)
