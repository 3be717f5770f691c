"""Answers read from the model: each problem states a fact measured on Linux 6.18
(shared/reference/kernel-facts.md) and the answer the model must give for it."""

import pytest

from cowscope.learn.lang import ProblemError, parse
from cowscope.learn.solve import solve
from cowscope.model import Machine


def answers(text):
    return [a.value for a in solve(parse(text), Machine()).answers]


def test_fork_the_first_write_copies_on_either_side_then_the_other_reuses():
    # kernel-facts 2.3: a page still mapped by another process is copied; once every other
    # mapper has its own copy, the last one reuses the page (same PFN)
    text = ("P mmap a 2; P write a all; P fork C; ? outcome P write a 0 why; ? value C read a 0; "
            "? outcome C write a 0 why; ? strip P a; ? strip C a")
    sol = solve(parse(text), Machine())
    assert [a.value for a in sol.answers] == ["copy", "A", "reuse", "#2", "#2"]
    assert [a.why for a in sol.answers[:3:2]] == ["shared", "once"]
    assert sol.answers[0].path == ["do_wp_page -> wp_page_copy"]
    assert (sol.answers[0].before, sol.answers[0].after) == ("22", "#2")


def test_after_the_child_exits_the_parent_reuses():
    assert answers("P mmap a 1; P write a all; P fork C; C exit; P wait C; ? outcome P write a 0 why") \
        == ["reuse"]


def test_a_page_already_written_takes_no_fault():
    assert answers("P mmap a 1; P write a 0; ? outcome P write a 0; ? outcome P read a 0") == ["none", "none"]


def test_zero_page_then_zero_fill_read_then_write_faults_twice():
    # kernel-facts 2.1/2.3: a read maps the zero page (no Rss); the write replaces it
    text = "P mmap a 2; ? outcome P read a 0 why; ? rss P a; ? outcome P write a 0 why; ? rss P a"
    sol = solve(parse(text), Machine())
    assert [a.value for a in sol.answers] == ["zero-page", 0, "zero-fill", 4]
    assert [sol.answers[0].why, sol.answers[2].why] == ["untouched", "zero"]


def test_a_never_touched_page_after_fork_is_a_zero_fill_not_a_copy():
    assert answers("P mmap a 2; P write a 0; P fork C; ? outcome C write a 1 why; ? value P read a 1") \
        == ["zero-fill", "0"]


def test_pss_truncates_per_page_as_the_kernel_does():
    # kernel-facts 3.1 experiment three_way: 3 pages shared by 3 processes: Rss 12, Pss 3 kB
    assert answers("P mmap a 3; P write a all; P fork C; P fork D; ? rss C a; ? pss C a; ? uss C a; "
                   "? strip D a") == [12, 3, 0, "333"]


def test_free_of_a_small_block_in_the_child_copies_a_page_and_the_code_is_never_copied():
    assert answers("P malloc x 40; P write x; P fork C; ? copies C free x; ? addr C malloc y 40; "
                   "? own C code; ? copies C free y") == [1, "x", 0, 0]


def test_free_of_an_mmapped_chunk_copies_only_the_page_of_malloc_s_counters():
    # munmap_chunk: the chunk goes back to the kernel, but mp_.n_mmaps and mp_.mmapped_mem in
    # libc's .data are written (measured: one page copied on this kernel too)
    assert answers("P malloc x 200000; P write x; P fork C; ? copies C free x") == [1]


def test_private_file_write_copies_and_leaves_the_file_shared_write_reaches_it():
    # kernel-facts 2.5: do_cow_fault copies; MAP_SHARED writes dirty the page-cache page
    text = ("file f 2; P mmap m 2 file=f; P mmap s 2 file=f shared; ? outcome P write m 0 why; "
            "? file f 0; ? outcome P write s 1 why; ? file f 1; ? value P read m 1")
    assert answers(text) == ["copy", "a", "page-cache", "B", "B"]


def test_a_private_mapping_sees_write2_where_it_did_not_copy():
    text = "file f 2; P mmap m 2 file=f; P write m 0 =A; pwrite f 0-1 =Z; ? value P read m 0; ? value P read m 1"
    assert answers(text) == ["A", "Z"]


def test_vfork_child_writes_into_its_parent_and_exec_lets_go():
    assert answers("P mmap a 1; P write a all; P vfork C; ? outcome C write a 0 why; C exec; "
                   "? value P read a 0") == ["none", "B"]
    assert answers("P mmap a 1; P write a all; P fork C; C exec; ? outcome P write a 0 why") == ["reuse"]


def test_madvise_dontfork_wipeonfork_dontneed():
    assert answers("P mmap a 1; P write a all; P madvise a 0 dontfork; P fork C; ? outcome C write a 0 why; "
                   "? outcome P write a 0 why") == ["segv", "none"]
    assert answers("P mmap a 1; P write a all; P madvise a 0 wipeonfork; P fork C; ? value C read a 0; "
                   "? outcome C write a 0 why") == ["0", "zero-fill"]
    assert answers("P mmap a 2; P write a all; P fork C; C madvise a 0 dontneed; ? strip C a; ? strip P a; "
                   "? outcome P write a 0 why") == [".2", "#2", "reuse"]


def test_a_step_that_cannot_run_is_a_problem_error_naming_it():
    with pytest.raises(ProblemError, match=r"statement 3 \(P wait C\)"):
        solve(parse("P mmap a 1; P fork C; P wait C; ? strip P a"), Machine())


def test_page_faults_of_an_access_from_the_pages_before_it():
    # a load faults on a page not present; a store also on the zero page and on any page that is
    # not the process's own: after fork even the page the other side already copied (a reuse
    # is a fault too); pages written since are the process's own and take none
    text = ("P mmap a 4; ? faults P read a 0; ? faults P write a 0-3; ? faults P write a 1-2; P fork C; "
            "? faults C write a 0-1; ? faults P write a all; C exit; P wait C; ? faults P write a all")
    assert answers(text) == [1, 4, 0, 2, 4, 0]


def test_fault_answers_agree_with_the_model_s_own_fault_counter():
    m = Machine()
    p = m.spawn("P")
    a = p.mmap(4 * 4096)
    counts = []
    for proc, first, n in ((p, 0, 1), (p, 0, 4)):
        before = proc.fault_counts()["minor"]
        proc.fill(a + first * 4096, n * 4096, 65)
        counts.append(proc.fault_counts()["minor"] - before)
    c = p.fork()
    before = c.fault_counts()["minor"]
    c.fill(a, 2 * 4096, 66)
    counts.append(c.fault_counts()["minor"] - before)
    assert counts == answers("P mmap a 4; ? faults P write a 0; ? faults P write a 0-3; P fork C; "
                             "? faults C write a 0-1")
