"""Classifying the kernel's tracepoints into the model's event kinds: each rule on hand-built
records, then each fault path on real processes (the rules as this kernel shows them)."""

from __future__ import annotations

import pytest

from cowscope.linux.kevents import GFP_COMP, GFP_HIGHUSER_MOVABLE, GFP_ZERO, MM_ANON, MM_FILE, MM_SHMEM, Classifier

USER = GFP_HIGHUSER_MOVABLE | GFP_COMP
VA = 0x7F0000001000


class Rec:
    """Builds a thread's record stream with increasing timestamps."""

    def __init__(self, tid: int = 10) -> None:
        self.tid, self.ts, self.recs, self.sizes = tid, 1000, [], {}

    def add(self, name: str, **fields: int) -> Rec:
        self.ts += 100
        self.recs.append((self.ts, 0, self.tid, name, fields))
        return self

    def fault(self, code: int, va: int = VA) -> Rec:
        return self.add("exceptions:page_fault_user", address=va + 0x10, ip=0x401000, error_code=code)

    def alloc(self, gfp: int = USER, pfn: int = 0x1234) -> Rec:
        return self.add("kmem:mm_page_alloc", pfn=pfn, order=0, gfp_flags=gfp, migratetype=1)

    def rss(self, member: int, delta: int, curr: int = 1) -> Rec:
        size = self.sizes.get(member, 1 << 20)
        self.sizes[member] = size + delta
        return self.add("kmem:rss_stat", mm_id=1, curr=curr, member=member, size=size + delta)

    def prime(self) -> Rec:  # counters seen once before, so later changes have a sign
        for member in (MM_FILE, MM_ANON, MM_SHMEM):
            self.rss(member, 0, curr=0)
        return self


def kinds(r: Rec, shared: bool | None = False) -> list[tuple[str, int, str]]:
    c = Classifier(is_shared=lambda pid, va: shared)
    events = c.feed(r.recs) + c.flush()
    return [(e.kind, e.address, e.detail) for e in events]


@pytest.mark.parametrize("build,expected", [
    (lambda r: r.fault(0x6).alloc(USER | GFP_ZERO).rss(MM_ANON, 4096), "zero-fill"),
    (lambda r: r.fault(0x4), "zero-page-map"),
    (lambda r: r.fault(0x7).alloc(USER | GFP_ZERO).rss(MM_ANON, 4096), "zero-cow"),
    (lambda r: r.fault(0x7).alloc(USER), "cow-copy"),
    (lambda r: r.fault(0x7), "cow-reuse"),
    (lambda r: r.fault(0x6).alloc(USER).rss(MM_ANON, 4096), "file-copy"),
    (lambda r: r.fault(0x7).alloc(USER).rss(MM_FILE, -4096).rss(MM_ANON, 4096), "file-copy"),
    (lambda r: r.fault(0x4).rss(MM_FILE, 65536), "pagecache-map"),
    (lambda r: r.fault(0x14).rss(MM_FILE, 4096), "pagecache-map"),
    (lambda r: r.fault(0x6).alloc(USER).rss(MM_SHMEM, 4096), "shmem-alloc"),
    (lambda r: r.fault(0x4).alloc(USER).rss(MM_SHMEM, 4096), "shmem-alloc"),
    (lambda r: r.fault(0x6).rss(MM_FILE, 4096), "shared-write"),
])
def test_rule(build, expected: str) -> None:
    (got,) = kinds(build(Rec().prime()))
    assert got[:2] == (expected, VA)


def test_reuse_in_a_shared_mapping_is_a_shared_write_and_unknown_mapping_says_so() -> None:
    assert kinds(Rec().fault(0x7), shared=True)[0][0] == "shared-write"
    kind, _va, detail = kinds(Rec().fault(0x7), shared=None)[0]
    assert kind == "cow-reuse" and "MAP_SHARED" in detail


def test_a_copy_is_the_allocation_after_the_fault_and_carries_its_pfn() -> None:
    c = Classifier()
    (e,) = c.feed(Rec().fault(0x7).alloc(USER, pfn=0xABC).fault(0x4, VA + 0x5000).recs)
    assert (e.kind, e.new_pfn, e.old_pfn, e.ip) == ("cow-copy", 0xABC, None, 0x401000)


def test_page_tables_and_writes_to_the_page_cache_are_not_a_copy() -> None:
    """Only GFP_HIGHUSER_MOVABLE|__GFP_COMP makes a write-protect fault a copy."""
    r = Rec().fault(0x7).alloc(USER | 0x1000)  # __GFP_WRITE: write(2) into the page cache
    assert kinds(r)[0][0] == "cow-reuse"


def test_a_retried_fault_is_one_event() -> None:
    r = Rec().prime().fault(0x4).fault(0x4).alloc(USER).rss(MM_FILE, 4096)
    assert [k[0] for k in kinds(r)] == ["pagecache-map"]
    r = Rec().fault(0x4).fault(0x7)  # a read then a write of one page: two decisions
    assert [k[0] for k in kinds(r)] == ["zero-page-map", "cow-reuse"]


def test_other_threads_and_other_mms_do_not_join_a_window() -> None:
    r = Rec().prime().fault(0x7)
    r.rss(MM_ANON, 4096, curr=0)  # another mm's counter (fork copying rss into the child)
    other = Rec(tid=11)
    other.ts = r.ts
    other.alloc(USER)
    c = Classifier()
    events = c.feed(sorted(r.recs + other.recs)) + c.flush()
    assert [e.kind for e in events] == ["cow-reuse"] and c.unattributed_allocs == 1


def test_window_expires() -> None:
    r = Rec().fault(0x7)
    r.ts += 10_000_000
    r.alloc(USER)
    assert kinds(r)[0][0] == "cow-reuse"


def test_process_events() -> None:
    r = Rec().add("sched:sched_process_fork", parent_pid=10, child_pid=12, parent_comm="a", child_comm="a")
    r.add("sched:sched_process_exec", filename="/bin/true", pid=10, old_pid=10)
    r.fault(0x6).add("signal:signal_deliver", sig=11, code=1, errno=0, sa_handler=0, sa_flags=0)
    r.add("sched:sched_process_exit", pid=10, prio=120, group_dead=1)
    got = kinds(r)
    assert [(k, d) for k, _va, d in got] == [
        ("fork", "child pid 12"), ("exec", "/bin/true"), ("segv", "signal 11 code 1"), ("exit", "")]
    assert got[2][1] == VA + 0x10


def test_a_vfork_is_told_from_a_fork_by_its_clone_flags() -> None:
    r = Rec().add("task:task_newtask", pid=12, clone_flags=0x4111, oom_score_adj=0)  # CLONE_VM|CLONE_VFORK|SIGCHLD
    r.add("sched:sched_process_fork", parent_pid=10, child_pid=12, parent_comm="a", child_comm="a")
    r.add("task:task_newtask", pid=13, clone_flags=0x1200011, oom_score_adj=0)  # glibc fork()
    r.add("sched:sched_process_fork", parent_pid=10, child_pid=13, parent_comm="a", child_comm="a")
    assert [(k, d) for k, _va, d in kinds(r)] == [("vfork", "child pid 12"), ("fork", "child pid 13")]


def test_thread_creation_is_not_a_fork() -> None:
    r = Rec().add("sched:sched_process_fork", parent_pid=10, child_pid=12, parent_comm="a", child_comm="a")
    c = Classifier(tgid_of=lambda tid: 10)
    assert c.feed(r.recs) == []


def test_huge_page_fault_is_thp_alloc_at_the_pmd() -> None:
    r = Rec().prime().fault(0x6, VA + 0x3000)
    r.add("kmem:mm_page_alloc", pfn=0x200, order=9, gfp_flags=0x1D2CCA, migratetype=1).rss(MM_ANON, 1 << 21)
    (got,) = kinds(r)
    assert got[:2] == ("thp-alloc", VA & ~((1 << 21) - 1))


def test_a_reraised_fatal_signal_is_one_event() -> None:
    r = Rec().fault(0x6).add("signal:signal_deliver", sig=11, code=1, errno=0, sa_handler=0x401000, sa_flags=0)
    r.fault(0x6, VA + 0x8000).alloc(USER | GFP_ZERO).rss(MM_ANON, 4096)  # the handler's own work
    r.fault(0x6)  # the handler restored SIG_DFL and returned: the instruction faults again
    r.add("signal:signal_deliver", sig=11, code=1, errno=0, sa_handler=0, sa_flags=0)
    assert [k for k, _va, _d in kinds(r)] == ["segv", "zero-fill"]
    r = Rec().fault(0x6).add("signal:signal_deliver", sig=11, code=1, errno=0, sa_handler=0, sa_flags=0)
    r.fault(0x6).add("signal:signal_deliver", sig=11, code=1, errno=0, sa_handler=0, sa_flags=0)
    assert [k for k, _va, _d in kinds(r)] == ["segv", "segv"]  # two default deliveries: two events


def test_swap_in() -> None:
    r = Rec().prime()
    r.rss(2, 0, curr=0)
    r.fault(0x4).alloc(USER).rss(2, -4096).rss(MM_ANON, 4096)
    assert kinds(r)[0][:2] == ("swap-in", VA)
