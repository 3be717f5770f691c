"""The kernel conformance cases, measured on Linux 6.18.44 x86-64 (THP "madvise"), on the model.

Each test is one case: the same steps, and the observations the real kernel gave — pagemap
flags and PFN identity, kpagecount, smaps kB of the region's VMA, bytes read, status deltas.
"""

from __future__ import annotations

import pytest

from cowscope.errors import Segfault, SyscallError
from cowscope.model import Machine
from cowscope.observe.records import KPF_ANON, KPF_ANON_EXCLUSIVE

P = 4096


@pytest.fixture
def m() -> Machine:
    return Machine(allocator="firstfit")


def region(p, n: int, prot: str = "rw", shared: bool = False, file=None) -> int:
    """n pages with a PROT_NONE guard page on each side, so the VMA is exactly the region."""
    base = p.mmap((n + 2) * P, "")
    return p.mmap(n * P, prot, shared=shared, file=file, addr=base + P, fixed=True)


def pm(m: Machine, p, addr: int, n: int) -> list[str]:
    """Pages as the reference sheets write them: flags, PFN label, kc (labels assigned per call)."""
    out = []
    for e in p.pagemap(addr, n):
        if not e.raw:
            out.append("0")
            continue
        if not e.present:
            out.append(e.flags())
            continue
        label = "Z" if e.pfn == m.zero_pfn else f"{e.pfn:#x}"
        out.append(f"{e.flags()} {label} kc={m.kpagecount(e.pfn)}")
    return out


def flags(m: Machine, p, addr: int, n: int) -> list[str]:
    return [t.split(" ")[0] + (" kc=" + t.split("kc=")[1] if "kc=" in t else "") for t in pm(m, p, addr, n)]


def pfns(p, addr: int, n: int) -> list[int]:
    return [e.pfn for e in p.pagemap(addr, n)]


def smaps_of(p, addr: int) -> dict[str, int]:
    for s in p.smaps():
        if s.vma.start <= addr < s.vma.end:
            return s.fields
    raise AssertionError(f"no VMA at {addr:#x}")


def expect(fields: dict[str, int], **kb: int) -> None:
    """The named smaps fields equal the kB values; every other accounting field is 0."""
    names = ("Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
             "Private_Dirty", "Anonymous", "AnonHugePages")
    got = {n: fields[n] for n in names}
    want = {n: kb.get(n, 0) for n in names}
    assert got == want


def test_c01_untouched_region(m):
    p = m.spawn()
    r = region(p, 4)
    assert pm(m, p, r, 4) == ["0"] * 4
    expect(smaps_of(p, r))
    vma = next(s for s in p.smaps() if s.vma.start == r)
    assert vma.vma.npages == 4 and vma.vm_flags == ("rd", "wr", "mr", "mw", "me", "ac")


def test_c02_c03_c04_zero_page_then_write(m):
    p = m.spawn()
    r = region(p, 4)
    anon0 = p.status()["RssAnon"]
    assert p.read(r, 1) == b"\0" and p.read(r + P, 1) == b"\0"
    assert flags(m, p, r, 4) == ["P kc=0", "P kc=0", "0", "0"]
    assert pfns(p, r, 2) == [m.zero_pfn, m.zero_pfn]
    expect(smaps_of(p, r))
    assert p.status()["RssAnon"] == anon0
    # C03
    p.write(r + 2 * P, b"\x07")
    assert flags(m, p, r, 4) == ["P kc=0", "P kc=0", "PX kc=1", "0"]
    kf = m.kpageflags(pfns(p, r + 2 * P, 1)[0])
    assert kf & KPF_ANON and kf & KPF_ANON_EXCLUSIVE
    expect(smaps_of(p, r), Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)
    assert p.status()["RssAnon"] == anon0 + 4
    # C04
    p.write(r + P, b"\x09")
    assert flags(m, p, r, 4) == ["P kc=0", "PX kc=1", "PX kc=1", "0"]
    assert pfns(p, r + P, 1)[0] != m.zero_pfn
    assert [p.read(r + i * P, 1) for i in range(4)] == [b"\0", b"\x09", b"\x07", b"\0"]
    assert p.read(r + P + 1, P - 1) == bytes(P - 1)
    expect(smaps_of(p, r), Rss=8, Pss=8, Pss_Dirty=8, Private_Dirty=8, Anonymous=8)


def _c05(m):
    p = m.spawn()
    r = region(p, 4)
    p.fill(r, 4 * P, 0x11)
    assert flags(m, p, r, 4) == ["PX kc=1"] * 4
    before = pfns(p, r, 4)
    c = p.fork()
    return p, c, r, before


def test_c05_fork_makes_written_pages_cow_shared(m):
    p, c, r, before = _c05(m)
    assert flags(m, p, r, 4) == ["P kc=2"] * 4 == flags(m, c, r, 4)
    assert pfns(p, r, 4) == pfns(c, r, 4) == before
    assert all(not m.kpageflags(f) & KPF_ANON_EXCLUSIVE for f in before)
    for q in (p, c):
        expect(smaps_of(q, r), Rss=16, Pss=8, Pss_Dirty=8, Shared_Dirty=16, Anonymous=16)
    assert smaps_of(c, r)["Referenced"] == 0 and smaps_of(p, r)["Referenced"] == 16


def test_c06_c07_c08_copy_and_reuse(m):
    p, c, r, (a, b, cc, d) = _c05(m)
    c.fill(r, P, 0x22)
    e = pfns(c, r, 1)[0]
    assert e not in (a, b, cc, d)
    assert flags(m, c, r, 4) == ["PX kc=1", "P kc=2", "P kc=2", "P kc=2"]
    assert flags(m, p, r, 4) == ["PX kc=1", "P kc=2", "P kc=2", "P kc=2"]
    assert pfns(p, r, 1) == [a] and not m.kpageflags(a) & KPF_ANON_EXCLUSIVE  # X but not PageAnonExclusive
    assert p.read(r, 1) == b"\x11" and c.read(r, 1) == b"\x22"
    for q in (p, c):
        expect(smaps_of(q, r), Rss=16, Pss=10, Pss_Dirty=10, Shared_Dirty=12, Private_Dirty=4, Anonymous=16)
    # C07: the parent's page is mapped only by it now: reuse, same PFN
    n = len(m.events)
    p.write(r, b"\x33")
    assert pfns(p, r, 1) == [a] and m.kpageflags(a) & KPF_ANON_EXCLUSIVE
    assert [ev.kind for ev in m.events.since(n)] == ["cow-reuse"]
    assert p.read(r, 1) == b"\x33" and c.read(r, 1) == b"\x22"
    # C08: a still-shared page: the writer copies, the other side becomes exclusive
    p.write(r + P, b"\x44")
    f = pfns(p, r + P, 1)[0]
    assert f != b
    assert flags(m, p, r, 4) == ["PX kc=1", "PX kc=1", "P kc=2", "P kc=2"]
    assert flags(m, c, r, 4) == ["PX kc=1", "PX kc=1", "P kc=2", "P kc=2"]
    assert pfns(c, r, 2) == [e, b]
    for q in (p, c):
        expect(smaps_of(q, r), Rss=16, Pss=12, Pss_Dirty=12, Shared_Dirty=8, Private_Dirty=8, Anonymous=16)
    assert (c.read(r, 1), c.read(r + P, 1), p.read(r, 1), p.read(r + P, 1)) == \
        (b"\x22", b"\x11", b"\x33", b"\x44")


def test_c10_page_anon_exclusive_vs_exclusively_mapped(m):
    p = m.spawn()
    r = region(p, 1)
    p.write(r, b"a")
    a = pfns(p, r, 1)[0]
    pae = lambda: bool(m.kpageflags(pfns(p, r, 1)[0]) & KPF_ANON_EXCLUSIVE)  # noqa: E731
    assert flags(m, p, r, 1) == ["PX kc=1"] and pae()
    c = p.fork()
    assert flags(m, p, r, 1) == ["P kc=2"] and not pae()
    c.exit(0)
    assert flags(m, p, r, 1) == ["PX kc=1"] and not pae()
    p.write(r, b"b")
    assert pfns(p, r, 1) == [a] and pae()
    c2 = p.fork()
    c2.write(r, b"c")
    assert flags(m, p, r, 1) == ["PX kc=1"] and not pae()
    p.write(r, b"d")
    assert pfns(p, r, 1) == [a] and pae()


def test_c11_fork_after_read_faults_copies_nothing(m):
    p = m.spawn()
    r = region(p, 4)
    p.read(r, 1)
    p.read(r + P, 1)
    c = p.fork()
    assert flags(m, p, r, 4) == ["P kc=0", "P kc=0", "0", "0"]
    assert pm(m, c, r, 4) == ["0"] * 4
    expect(smaps_of(c, r))
    assert c.read(r, 1) == b"\0"
    assert flags(m, c, r, 4) == ["P kc=0", "0", "0", "0"]


def test_c14_shared_anonymous_across_fork(m):
    p = m.spawn()
    r = region(p, 4, shared=True)
    assert next(e for e in p.maps() if e.start == r).path == "/dev/zero (deleted)"
    assert next(e for e in p.maps() if e.start == r).perms == "rw-s"
    shmem0 = p.status()["RssShmem"]
    p.fill(r, P, 0x11)
    assert flags(m, p, r, 4) == ["PFX kc=1", "0", "0", "0"]
    expect(smaps_of(p, r), Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4)
    assert p.status()["RssShmem"] == shmem0 + 4
    c = p.fork()
    assert pm(m, c, r, 4) == ["0"] * 4
    assert c.read(r, 1) == b"\x11"
    c.fill(r + P, P, 0x22)
    assert p.read(r + P, 1) == b"\x22"
    assert flags(m, p, r, 4) == ["PF kc=2", "PF kc=2", "0", "0"] == flags(m, c, r, 4)
    assert pfns(p, r, 2) == pfns(c, r, 2)
    for q in (p, c):
        expect(smaps_of(q, r), Rss=8, Pss=4, Pss_Dirty=4, Shared_Dirty=8)
        assert q.status()["RssShmem"] == 8 + (shmem0 if q is p else 0)
    # C15: DONTNEED on shared memory keeps the data
    a = pfns(p, r, 1)[0]
    c.madvise(r, 4 * P, "dontneed")
    assert pm(m, c, r, 4) == ["0"] * 4
    assert c.read(r, 1) == b"\x11" and pfns(c, r, 1) == [a]


def _file(m, n=4, name="/data/f"):
    return m.create_file(name, data=b"".join(bytes([0x61 + i]) * P for i in range(n)))


def test_c16_c17_private_file_lazy_at_fork_then_cow(m):
    f = _file(m)
    p = m.spawn()
    r = region(p, 4, file=f)
    p.touch(r, 4 * P)
    assert flags(m, p, r, 4) == ["PFX kc=1"] * 4
    expect(smaps_of(p, r), Rss=16, Pss=16, Private_Clean=16)
    c = p.fork()
    assert pm(m, c, r, 4) == ["0"] * 4
    expect(smaps_of(c, r))
    assert [c.read(r + i * P, 1) for i in range(4)] == [b"a", b"b", b"c", b"d"]
    assert flags(m, c, r, 4) == ["PF kc=2"] * 4 == flags(m, p, r, 4)
    assert pfns(c, r, 4) == pfns(p, r, 4)
    for q in (p, c):
        expect(smaps_of(q, r), Rss=16, Pss=8, Shared_Clean=16)
    # C17
    file0, anon0 = p.status()["RssFile"], p.status()["RssAnon"]
    p.write(r + 2 * P, b"Z")
    assert flags(m, p, r, 4) == ["PF kc=2", "PF kc=2", "PX kc=1", "PF kc=2"]
    assert m.pread(f, 8192, 1) == b"c" and c.read(r + 2 * P, 1) == b"c"
    expect(smaps_of(p, r), Rss=16, Pss=10, Pss_Dirty=4, Shared_Clean=12, Private_Dirty=4, Anonymous=4)
    assert p.status()["RssFile"] == file0 - 4 and p.status()["RssAnon"] == anon0 + 4


def test_c19_first_access_is_a_write(m):
    f = _file(m)
    p = m.spawn()
    r = region(p, 4, file=f)
    p.write(r + P, b"W")
    assert flags(m, p, r, 4) == ["0", "PX kc=1", "0", "0"]
    expect(smaps_of(p, r), Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)
    assert p.read(r + P, 2) == b"Wb" and m.pread(f, P, 1) == b"b"


def test_c21_shared_file_write_through_not_copied_at_fork(m):
    f = m.create_file("/data/g", data=bytes(20 * P))
    p = m.spawn()
    r = region(p, 20, shared=True, file=f)
    p.madvise(r, 20 * P, "populate_read")
    p.write(r + P, b"z")
    assert m.pread(f, P, 1) == b"z"
    assert flags(m, p, r + P, 1) == ["PFX kc=1"]
    expect(smaps_of(p, r), Rss=80, Pss=80, Pss_Dirty=4, Private_Dirty=4, Private_Clean=76)
    c = p.fork()
    assert pm(m, c, r, 20) == ["0"] * 20


def test_c23_dontfork(m):
    p = m.spawn()
    r = region(p, 4)
    p.fill(r, 4 * P, 0x11)
    nvma = len(p.maps())
    p.madvise(r + P, 2 * P, "dontfork")
    assert len(p.maps()) == nvma + 2
    c = p.fork()
    assert not any(e.start == r + P for e in c.maps())
    assert flags(m, p, r, 4) == ["P kc=2", "PX kc=1", "PX kc=1", "P kc=2"]
    assert flags(m, c, r, 4) == ["P kc=2", "0", "0", "P kc=2"]
    assert c.read(r, 1) == b"\x11"
    with pytest.raises(Segfault):
        c.read(r + P, 1)
    assert not c.alive and c.exit_status == ("signal", 11)
    p.madvise(r + P, 2 * P, "dofork")
    assert len(p.maps()) == nvma
    m.check()


def test_c24_wipeonfork(m):
    p = m.spawn()
    r = region(p, 4)
    p.fill(r, 4 * P, 0x33)
    p.madvise(r, 4 * P, "wipeonfork")
    assert "wf" in smaps_vma(p, r).vm_flags
    c = p.fork()
    assert flags(m, p, r, 4) == ["PX kc=1"] * 4
    assert pm(m, c, r, 4) == ["0"] * 4
    expect(smaps_of(c, r))
    assert "wf" in smaps_vma(c, r).vm_flags
    assert sum(c.read(r, 4 * P)) == 0
    assert flags(m, c, r, 4) == ["P kc=0"] * 4
    c.write(r, b"x")
    assert flags(m, c, r, 1) == ["PX kc=1"]
    c2 = p.fork()
    c2.fill(r, 4 * P, 0x55)
    g = c2.fork()
    assert sum(g.read(r, 4 * P)) == 0
    p.madvise(r, 4 * P, "keeponfork")
    c3 = p.fork()
    assert sum(c3.read(r, 4 * P)) == 4 * 4096 * 0x33 == 835584
    s = p.mmap(P, "rw", shared=True)
    with pytest.raises(SyscallError) as e1:
        p.madvise(s, P, "wipeonfork")
    f = _file(m)
    pf = p.mmap(P, "rw", file=f)
    with pytest.raises(SyscallError) as e2:
        p.madvise(pf, P, "wipeonfork")
    assert e1.value.errno == e2.value.errno == 22


def smaps_vma(p, addr):
    return next(s for s in p.smaps() if s.vma.start <= addr < s.vma.end)


def test_c26_exec_in_child_releases_its_mappings(m):
    p = m.spawn()
    r = region(p, 4)
    p.fill(r, 4 * P, 1)
    c = p.fork()
    assert flags(m, p, r, 4) == ["P kc=2"] * 4
    c.exec()
    assert flags(m, p, r, 4) == ["PX kc=1"] * 4
    expect(smaps_of(p, r), Rss=16, Pss=16, Pss_Dirty=16, Private_Dirty=16, Anonymous=16)
    assert pm(m, c, r, 1) == ["0"]


def test_c27_vfork_shares_the_address_space(m):
    p = m.spawn()
    r = region(p, 2)
    p.fill(r, 2 * P, 0x11)
    before = pm(m, p, r, 2)
    v = p.vfork()
    v.write(r, b"\x22")
    v.write(r + P, b"\x33")
    v.exit(0)
    assert p.read(r, 1) == b"\x22" and p.read(r + P, 1) == b"\x33"
    assert pm(m, p, r, 2) == before and flags(m, p, r, 2) == ["PX kc=1"] * 2


def test_c28_munmap_middle_splits(m):
    p = m.spawn()
    r = region(p, 8)
    p.fill(r, 8 * P, 7)
    before = pfns(p, r, 8)
    n = len(p.maps())
    p.munmap(r + 3 * P, 2 * P)
    assert len(p.maps()) == n + 1
    assert flags(m, p, r, 8) == ["PX kc=1"] * 3 + ["0"] * 2 + ["PX kc=1"] * 3
    after = pfns(p, r, 8)
    assert after[:3] == before[:3] and after[5:] == before[5:]
    for a in (r, r + 5 * P):
        expect(smaps_of(p, a), Rss=12, Pss=12, Pss_Dirty=12, Private_Dirty=12, Anonymous=12)


def test_c32_dontneed_private(m):
    p = m.spawn()
    r = region(p, 2)
    p.fill(r, 2 * P, 0x11)
    p.madvise(r, 2 * P, "dontneed")
    assert pm(m, p, r, 2) == ["0", "0"]
    assert smaps_of(p, r)["Rss"] == 0
    assert p.read(r, 1) == b"\0" and flags(m, p, r, 1) == ["P kc=0"]
    f = m.create_file("/data/h", data=b"a" * P + b"b" * P)
    q = region(p, 2, file=f)
    p.write(q, b"Z")
    p.madvise(q, 2 * P, "dontneed")
    assert p.read(q, 1) == b"a"


def test_c33_madv_free_without_pressure(m):
    p = m.spawn()
    r = region(p, 4)
    p.fill(r, 4 * P, 0x11)
    p.madvise(r, 4 * P, "free")
    assert flags(m, p, r, 4) == ["PX kc=1"] * 4
    assert p.read(r, 4 * P) == b"\x11" * 4 * P
    s = smaps_of(p, r)
    assert (s["Rss"], s["Pss_Dirty"], s["Private_Clean"], s["Private_Dirty"], s["Anonymous"]) == \
        (16, 0, 16, 0, 16)
    p.write(r + P, b"x")
    s = smaps_of(p, r)
    assert (s["Private_Dirty"], s["Private_Clean"]) == (4, 12)


def test_c33_variant_madv_free_on_cow_shared_pages(m):
    p = m.spawn()
    r = region(p, 2)
    p.fill(r, 2 * P, 0x11)
    p.fork()
    p.madvise(r, 2 * P, "free")
    assert flags(m, p, r, 2) == ["P kc=2"] * 2
    s = smaps_of(p, r)
    assert (s["Shared_Clean"], s["Shared_Dirty"], s["Pss_Dirty"]) == (8, 0, 0)


def test_c34_populate(m):
    p = m.spawn()
    r = region(p, 2)
    p.madvise(r, 2 * P, "populate_read")
    assert flags(m, p, r, 2) == ["P kc=0"] * 2 and smaps_of(p, r)["Rss"] == 0
    p.madvise(r, 2 * P, "populate_write")
    assert flags(m, p, r, 2) == ["PX kc=1"] * 2
    expect(smaps_of(p, r), Rss=8, Pss=8, Pss_Dirty=8, Private_Dirty=8, Anonymous=8)
    a = p.mmap(2 * P, "rw", populate=True)
    assert flags(m, p, a, 2) == ["PX kc=1"] * 2
    b = region(p, 2, prot="r")
    p.madvise(b, 2 * P, "populate_read")
    assert flags(m, p, b, 2) == ["P kc=0"] * 2
    s = region(p, 2, shared=True)
    p.madvise(s, 2 * P, "populate_read")
    assert flags(m, p, s, 2) == ["PFX kc=1"] * 2
    expect(smaps_of(p, s), Rss=8, Pss=8, Private_Clean=8)


def test_c35_mlock_not_inherited(m):
    p = m.spawn()
    r = region(p, 2)
    p.mlock(r, 2 * P)
    s = smaps_vma(p, r)
    assert (s["Rss"], s["Private_Dirty"]) == (8, 8) and "lo" in s.vm_flags
    c = p.fork()
    assert "lo" not in smaps_vma(c, r).vm_flags
    assert flags(m, c, r, 2) == ["P kc=2"] * 2
    expect(smaps_of(c, r), Rss=8, Pss=4, Pss_Dirty=4, Shared_Dirty=8, Anonymous=8)


@pytest.mark.xfail(strict=True, reason="DMA pins (io_uring fixed buffers) are not modelled")
def test_c36_pinned_page_copied_eagerly_at_fork(m):
    p = m.spawn()
    r = region(p, 2)
    p.pin(r, P)


def _thp_block(p) -> int:
    """A 2 MiB-aligned 2 MiB range inside a 4 MiB private anon mapping, with MADV_HUGEPAGE."""
    base = p.mmap(4 << 20, "rw")
    a = (base + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.madvise(a, 2 << 20, "hugepage")
    return a


def test_c37_thp_fault_fork_split(m):
    p = m.spawn()
    a = _thp_block(p)
    p.write(a, b"x")
    assert flags(m, p, a, 512) == ["PX kc=1"] * 512
    got = pfns(p, a, 512)
    assert got == list(range(got[0], got[0] + 512)) and got[0] % 512 == 0
    expect(smaps_of(p, a), Rss=2048, Pss=2048, Pss_Dirty=2048, Private_Dirty=2048, Anonymous=2048,
           AnonHugePages=2048)
    assert "hg" in smaps_vma(p, a).vm_flags
    c = p.fork()
    assert flags(m, c, a, 512) == ["P kc=2"] * 512
    expect(smaps_of(c, a), Rss=2048, Pss=1024, Pss_Dirty=1024, Shared_Dirty=2048, Anonymous=2048,
           AnonHugePages=2048)
    c.write(a, b"y")
    assert flags(m, c, a, 3) == ["PX kc=1", "P kc=2", "P kc=2"] and pfns(c, a, 1) != pfns(p, a, 1)
    expect(smaps_of(c, a), Rss=2048, Pss=1026, Pss_Dirty=1026, Shared_Dirty=2044, Private_Dirty=4,
           Anonymous=2048)
    expect(smaps_of(p, a), Rss=2048, Pss=1026, Pss_Dirty=1026, Shared_Dirty=2044, Private_Dirty=4,
           Anonymous=2048, AnonHugePages=2048)
    assert flags(m, p, a, 3) == ["PX kc=1", "PX kc=2", "PX kc=2"]  # bit 56 follows the head page
    m.check()


def test_c38_huge_zero_page(m):
    p = m.spawn()
    a = _thp_block(p)
    assert p.read(a, 1) == b"\0"
    entries = p.pagemap(a, 512)
    assert all(e.flags() == "PF" and m.kpagecount(e.pfn) == 0 for e in entries)
    assert [e.pfn for e in entries] == list(range(entries[0].pfn, entries[0].pfn + 512))
    assert m.kpageflags(entries[0].pfn) == 0x1408000
    expect(smaps_of(p, a))
    m.check()


def test_c39_guard_regions(m):
    p = m.spawn()
    r = region(p, 3)
    p.fill(r, 3 * P, 0x11)
    n = len(p.maps())
    p.madvise(r + P, P, "guard_install")
    t = pm(m, p, r, 3)
    assert t[0].startswith("PX ") and t[1] == "SG" and t[2].startswith("PX ")
    assert len(p.maps()) == n and "gu" in smaps_vma(p, r).vm_flags
    assert smaps_of(p, r)["Rss"] == 8
    c = p.fork()
    assert flags(m, c, r, 3) == ["P kc=2", "SG", "P kc=2"]
    with pytest.raises(Segfault):
        c.read(r + P, 1)
    p.madvise(r + P, P, "guard_remove")
    assert pm(m, p, r + P, 1) == ["0"] and p.read(r + P, 1) == b"\0"
    f = _file(m, 3, "/data/guard")
    q = region(p, 3, prot="r", file=f)
    p.madvise(q + P, P, "guard_install")
    c2 = p.fork()
    assert pm(m, c2, q, 3) == ["0", "SG", "0"]


def test_c40_status_counters(m):
    p = m.spawn()
    st = p.status
    base = st()
    z = p.mmap(128 * P, "rw")
    p.touch(z, 128 * P)
    assert st()["RssAnon"] == base["RssAnon"]
    a = p.mmap(100 * P, "rw")
    p.touch(a, 100 * P, write=True)
    assert st()["RssAnon"] == base["RssAnon"] + 400
    s = p.mmap(50 * P, "rw", shared=True)
    p.touch(s, 50 * P, write=True)
    assert st()["RssShmem"] == base["RssShmem"] + 200
    f = m.create_file("/data/thirty", data=b"q" * 30 * P)
    fm = region(p, 30, prot="r", file=f)
    p.touch(fm, 30 * P)
    assert st()["RssFile"] == base["RssFile"] + 120
    roll = p.smaps_rollup()
    assert st()["VmRSS"] == roll["Rss"] == sum(e["Rss"] for e in p.smaps())
    assert roll["Pss"] >= sum(e["Pss"] for e in p.smaps())
    c = p.fork()
    cs = c.status()
    # the child's counters right after fork() returns (it ran its hot text and wrote its stack)
    anon_copied = sum(e["Anonymous"] for e in c.smaps())
    assert cs["RssAnon"] == anon_copied and cs["RssShmem"] == 0
    file_in_child = sum(e["Rss"] - e["Anonymous"] for e in c.smaps() if e.vma.path)
    assert cs["RssFile"] == file_in_child
    m.check()
