"""Machine(ram=...) and sizes: a clear ValueError for what is not a machine's RAM."""

from __future__ import annotations

import pytest

from cowscope.model import Machine
from cowscope.observe.records import parse_size


def test_sizes() -> None:
    assert parse_size("64MiB") == 64 << 20 and parse_size("1.5 GiB") == 3 << 29 and parse_size("2P") == 2 << 50
    assert parse_size(4096) == 4096 and parse_size("4096") == 4096 and parse_size("512mb") == 512 << 20
    for bad in ("abc", "-5", "1e9", None, 2.5, True, "5 XB", -1):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ram", ["1KiB", "0", "-5", "1PiB", "abc", 2.5, "17TiB"])
def test_machine_ram_is_checked(ram: object) -> None:
    with pytest.raises(ValueError, match=r"Machine\(ram="):
        Machine(ram=ram)  # type: ignore[arg-type]


def test_machine_ram_none_is_the_default_and_bounds_hold() -> None:
    assert Machine(ram=None).phys.nr_pages == Machine().phys.nr_pages
    assert Machine(ram="1MiB").phys.nr_pages == 256 and Machine(ram="16TiB").phys.nr_pages == 1 << 32
