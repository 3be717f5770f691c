"""The report's blob (report/blob.py): arrays read back by their descriptors, stored once, patched when close."""

from __future__ import annotations

import numpy as np

from cowscope.report.blob import Blob

from .decode import Payload


def _read(blob: Blob, desc) -> np.ndarray:
    return Payload.of({}, blob.encode()).col(desc)


def test_arrays_round_trip_in_the_smallest_type_that_holds_them():
    b = Blob()
    small = b.add(np.array([3, 1, 2], dtype=np.uint8))
    ints = b.add(np.array([-5, 2**31 - 1]))
    big = b.add(np.array([0, 2**40]))
    pfns = b.add(np.array([100, 101, 102, 90]), delta=True)
    assert [d[2] for d in (small, ints, big, pfns)] == ["u1", "i4", "f8", "i4"]
    assert all(d[0] % 8 == 0 for d in (small, ints, big, pfns))
    assert list(_read(b, small)) == [3, 1, 2] and list(_read(b, ints)) == [-5, 2**31 - 1]
    assert list(_read(b, big)) == [0, 2**40] and list(_read(b, pfns)) == [100, 101, 102, 90]


def test_identical_arrays_are_stored_once():
    b = Blob()
    first = b.add(np.arange(1000))
    size = b.size
    assert b.add(np.arange(1000)) is first and b.size == size
    assert b.add(np.arange(1000), delta=True) != first  # delta-coded is another array


def test_close_arrays_become_patches_far_ones_are_stored_whole():
    b = Blob()
    ref_arr = np.arange(100)
    ref = (ref_arr, b.add(ref_arr))
    assert b.add_like(ref_arr.copy(), ref) == ref[1]
    near = ref_arr.copy()
    near[[3, 50]] = [7, 9]
    patch = b.add_like(near, ref)
    assert isinstance(patch, dict) and patch["ref"] == ref[1] and patch["pos"][1] == 2
    assert np.array_equal(_read(b, patch), near)
    far = ref_arr[::-1].copy()
    whole = b.add_like(far, ref)
    assert isinstance(whole, list) and np.array_equal(_read(b, whole), far)
