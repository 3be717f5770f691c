"""The /proc record types and parsers: captured real files, adversarial text, pagemap entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cowscope.observe.records import (
    PM_MMAP_EXCLUSIVE,
    PM_PRESENT,
    PM_SWAP,
    PagemapEntry,
    pagemap_pfns,
    parse_maps,
    parse_maps_line,
    parse_meminfo,
    parse_pagemap,
    parse_smaps,
    parse_smaps_rollup,
    parse_status,
    parse_vmstat,
)

FIX = Path(__file__).parent.parent / "fixtures" / "proc"
REGION = int((FIX / "region_addr").read_text(), 16)


def text(name: str) -> str:
    return (FIX / name).read_text()


# --- captured files (an agent with a 4-page region: 2 pages written, 1 read, then fork) ---------


def test_captured_maps_roundtrip() -> None:
    entries = parse_maps(text("maps"))
    assert len(entries) == len(text("maps").splitlines())
    region = [e for e in entries if e.start == REGION]
    assert len(region) == 1 and region[0].npages == 4 and region[0].perms == "rw-p"
    # the guard pages around it are their own PROT_NONE VMAs
    idx = entries.index(region[0])
    assert entries[idx - 1].perms == "---p" and entries[idx + 1].perms == "---p"
    for e, line in zip(entries, text("maps").splitlines(), strict=True):
        assert e.to_text() == line


def test_captured_smaps_region() -> None:
    blocks = parse_smaps(text("smaps"))
    assert len(blocks) == len(parse_maps(text("maps")))
    s = next(b for b in blocks if b.vma.start == REGION)
    assert (s["Size"], s["Rss"], s["Pss"], s["Shared_Dirty"], s["Anonymous"]) == (16, 8, 4, 8, 8)
    assert {"rd", "wr", "mr", "mw", "me", "ac", "nh"} <= set(s.vm_flags)
    assert s.to_text() in text("smaps")


def test_captured_rollup_status_meminfo_vmstat() -> None:
    r = parse_smaps_rollup(text("smaps_rollup"))
    st = parse_status(text("status"))
    assert r["Rss"] == st["VmRSS"] == sum(b["Rss"] for b in parse_smaps(text("smaps")))
    assert st.name == "capture" and st.pid > 0 and st["RssAnon"] + st["RssFile"] + st["RssShmem"] == st["VmRSS"]
    mi = parse_meminfo(text("meminfo"))
    assert mi["MemTotal"] >= mi["MemFree"] > 0 and "HugePages_Total" in mi
    vm = parse_vmstat(text("vmstat"))
    assert vm["pgfault"] > 0 and len(vm) == len(text("vmstat").splitlines())


def test_captured_pagemap() -> None:
    raw = parse_pagemap((FIX / "pagemap_region.bin").read_bytes())
    flags = [PagemapEntry(int(v)).flags() for v in raw]
    assert flags == ["P", "P", "P", "-"]  # two CoW-shared pages, one zero page, one absent
    assert len({PagemapEntry(int(v)).pfn for v in raw[:3]}) == 3
    assert pagemap_pfns(raw).tolist() == [PagemapEntry(int(v)).pfn for v in raw]


def test_pagemap_swap_entry_fields() -> None:
    # A swap entry reuses the PFN field: bits 0-4 the swap type, bits 5-54 the offset.
    e = PagemapEntry(PM_SWAP | PM_MMAP_EXCLUSIVE | (0x12345 << 5) | 3)
    assert (e.swapped, e.present, e.pfn, e.swap_type, e.swap_offset) == (True, False, 0, 3, 0x12345)
    assert pagemap_pfns(np.array([e.raw], dtype=np.uint64)).tolist() == [0]
    top = PagemapEntry(PM_SWAP | ((1 << 50) - 1) << 5 | 31)
    assert (top.swap_type, top.swap_offset) == (31, (1 << 50) - 1)
    assert PagemapEntry(PM_PRESENT | 77).swap_offset == 0


# --- adversarial text --------------------------------------------------------------------------


def test_maps_truncated_last_line_dropped_but_middle_garbage_raises() -> None:
    good = text("maps")
    cut = good[: good.index("\n", 200) + 12]  # cut a few bytes into a line
    entries = parse_maps(cut)
    assert len(entries) == cut.count("\n")
    with pytest.raises(ValueError):
        parse_maps("00400000-00401000 r-xp\n" + good)
    with pytest.raises(ValueError):
        parse_maps_line("zzzz-0040 rw-p 0 00:00 0")


def test_maps_huge_values_and_spaces_in_path() -> None:
    e = parse_maps_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]")
    assert e.end - e.start == 4096 and e.path == "[vsyscall]"
    e = parse_maps_line("7f0000000000-7f0000001000 rw-s 7fffffffffff0000 00:01 18446744073709551615 /a b (deleted)")
    assert e.offset == 0x7FFFFFFFFFFF0000 and e.inode == 2**64 - 1 and e.path == "/a b (deleted)"
    with pytest.raises(ValueError):
        parse_maps_line("7f0000001000-7f0000000000 rw-p 0 00:00 0")


def test_smaps_truncated_unknown_and_huge() -> None:
    good = text("smaps")
    n = len(parse_smaps(good))
    # cut inside a header line: the partial block header is dropped
    hdr = good.index("\n7f")
    assert len(parse_smaps(good[: hdr + 6])) == len(parse_smaps(good[:hdr]))
    # cut inside a field line and inside THPeligible: tolerated
    assert len(parse_smaps(good[: good.rindex("THPeligible:") + 13])) == n
    assert len(parse_smaps(good[: good.rindex("Rss:") + 2])) == n
    extra = good.replace("Locked:", "Brand_New_Field:     12 kB\nLocked:", 1)
    b = parse_smaps(extra)[0]
    assert b["Brand_New_Field"] == 12 and "Brand_New_Field" in b.to_text()
    huge = good.replace("Rss:", f"Rss:      {2**70} kB\nX:", 1)
    assert parse_smaps(huge)[0]["Rss"] == 2**70


def test_status_truncated_and_unknown() -> None:
    good = text("status")
    st = parse_status(good + "NewThing:\t  77 kB\n")
    assert st["NewThing"] == 77
    cut = good[: good.index("VmRSS:") + 9]
    st = parse_status(cut)
    assert "VmRSS" not in st.fields and st["VmSize"] > 0
    with pytest.raises(ValueError):
        parse_status(good[: good.index("Pid:")])
    with pytest.raises(ValueError):
        parse_status("Name:\tx\nPid:\t1x2")
    st = parse_status("Name:\tx\nPid:\t12\nPPid:\t\nThreads:")  # cut after Pid: defaults
    assert (st.pid, st.ppid, st.threads) == (12, 0, 1)


def test_rollup_and_pagemap_bad_input() -> None:
    with pytest.raises(ValueError):
        parse_smaps_rollup("")
    r = parse_smaps_rollup(text("smaps_rollup")[:-5])
    assert r["Rss"] > 0
    with pytest.raises(ValueError):
        parse_pagemap(b"\x00" * 12)
