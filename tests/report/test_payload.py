"""HTML report payload (report/payload.py): arrays round-trip, events land on their steps and mappings,
totals, comparison."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.observe.pages import SHARED
from cowscope.report import strips
from cowscope.report.payload import build_payload, tree_total

from .decode import Payload
from .helpers import mapping, process, snapshot, states
from .scenarios import WRITTEN, A, F, N, ev, fork_story, kernel_story


def decoded(*args, **kwargs) -> Payload:
    """build_payload's result, decoded as the page decodes it."""
    return Payload.of(*build_payload(*args, **kwargs))


@pytest.fixture(scope="module")
def story() -> Payload:
    return decoded(fork_story(), title="fork story")


def test_page_arrays_round_trip(story):
    pl = story  # decoded once for the module
    for k, snap in enumerate(fork_story()):
        for p in snap.processes:
            for m in p.mappings:
                got = pl.pages(k, p.pid, m.vma.start)
                assert np.array_equal(got["code"], strips.page_codes(m.pages)), (k, p.pid, m.vma.path)
                assert np.array_equal(got["mc"], m.pages.mapcount)
                assert np.array_equal(got["pfn"], m.pages.pfn)


def test_unchanged_arrays_are_stored_once_and_changes_as_patches(story):
    meta = story.meta
    by = {(k, p["pid"], m["start"]): m["pages"] for k, s in enumerate(meta["steps"])
          for p in s["processes"] for m in p["mappings"]}
    # the file mapping does not change after the fork: same descriptors for both processes and steps
    assert by[(1, 10, F)]["pfn"] == by[(2, 10, F)]["pfn"] == by[(2, 11, F)]["pfn"]
    # the child's copied pages: a patch of WRITTEN positions on the forked state
    patch = by[(2, 11, A)]["pfn"]
    assert isinstance(patch, dict) and patch["pos"][1] == WRITTEN


def test_events_assigned_to_steps_and_mappings(story):
    pl = story  # decoded once for the module
    cols = pl.events()
    meta = pl.meta
    assert meta["events"]["n"] == N + 4 + 1 + WRITTEN
    kinds = meta["events"]["kinds"]
    copies = cols["kind"] == kinds.index("cow-copy")
    assert set(cols["step"][copies]) == {2}
    assert list(cols["pid"][copies]) == [11] * WRITTEN
    assert list(cols["new_pfn"][copies]) == list(range(500, 500 + WRITTEN))
    names = meta["mapping_names"]
    assert {names[i] for i in cols["mapping"][copies]} == {f"{A:x}-{A + (N + 8) * 4096:x} [anon]"}
    files = cols["kind"] == kinds.index("pagecache-map")
    assert {names[i] for i in cols["mapping"][files]} == {f"{F:x}-{F + 4 * 4096:x} /data/f"}
    fork = cols["kind"] == kinds.index("fork")
    assert list(cols["mapping"][fork]) == [-1] and list(cols["addr"][fork]) == [-1]
    assert [s["copies"] for s in meta["steps"]] == [0, 0, WRITTEN]
    assert [s["kinds"] for s in meta["steps"]] == [{"pagecache-map": 4, "zero-fill": N}, {"fork": 1},
                                                   {"cow-copy": WRITTEN}]
    assert meta["events"]["pids"] == [10, 11]


def test_tree_total_counts_each_frame_once():
    snap = fork_story()[2]
    t = tree_total(snap)
    assert t["method"] == "distinct frames"
    assert t["total_kb"] == (N + WRITTEN + 4) * 4
    assert t["rss_sum_kb"] == 2 * (N + 4) * 4
    assert t["total_kb"] < t["rss_sum_kb"]


def test_tree_total_falls_back_to_pss_without_pfns():
    ps = states([SHARED] * 4, pfn=[0] * 4)
    snap = snapshot("hidden", [process(1, 0, "a", [mapping(A, ps)]), process(2, 1, "b", [mapping(A, ps)])])
    t = tree_total(snap)
    assert t["method"].startswith("PSS sum")
    assert t["total_kb"] == t["pss_sum_kb"] == 16


def test_process_figures_in_payload(story):
    step = story.meta["steps"][2]
    server = next(p for p in step["processes"] if p["pid"] == 10)
    assert server["rss"] == (N + 4) * 4
    assert server["uss"] == WRITTEN * 4 + 0  # file pages are shared by two after the fork
    assert step["total"]["total_kb"] == (N + WRITTEN + 4) * 4


def test_loose_events_split_by_checkpoint_markers():
    snaps = fork_story()
    flat = [e for s in snaps for e in s.events]
    for s in snaps:
        s.events = []
    # as the model records them: each checkpoint marker closes the step of the snapshot taken there
    marked = flat[:N + 4] + [ev(1, 0, "checkpoint", detail="filled")] + flat[N + 4:N + 5]
    marked += [ev(2, 0, "checkpoint", detail="forked")] + flat[N + 5:]
    marked += [ev(3, 0, "checkpoint", detail="child wrote")]
    meta, blob = build_payload(snaps, events=marked)
    assert [s["events"] for s in meta["steps"]] == [N + 4, 1, WRITTEN]
    assert "checkpoint" not in meta["events"]["kinds"]
    meta, blob = build_payload(snaps, events=flat)  # no markers: all on the last step
    assert [s["events"] for s in meta["steps"]] == [0, 0, len(flat)]


def test_model_style_zero_means_no_address_or_frame():
    snaps = fork_story()
    snaps[1].events = [ev(N + 4, 10, "fork", 0, 0, 0, "child 11")]
    pl = decoded(snaps)
    cols = pl.events()
    fork = cols["kind"] == pl.meta["events"]["kinds"].index("fork")
    assert list(cols["addr"][fork]) == [-1] and list(cols["old_pfn"][fork]) == [-1]
    assert list(cols["mapping"][fork]) == [-1]


def test_compare_stores_the_kernel_pages_beside_the_model():
    pl = decoded(fork_story(), compare=kernel_story(differ=3))
    step = pl.meta["steps"][2]
    child = next(p for p in step["processes"] if p["pid"] == 11)
    assert child["cmp"]["pid"] == 1011
    kern = pl.pages(2, 11, A, cmp=True)
    assert list(kern["code"][:4]) == [3, 3, 3, 2]  # shared by 2 in the kernel's view, then its copies
    assert list(pl.pages(2, 11, F, cmp=True)["code"]) == list(pl.pages(2, 11, F)["code"])
    assert step["cmp"]["total"]["method"] == "distinct frames"


def test_compare_length_must_match():
    with pytest.raises(ValueError, match="compare"):
        build_payload(fork_story(), compare=kernel_story()[:2])
    with pytest.raises(ValueError, match="at least one"):
        build_payload([])


def test_compare_aligns_mappings_placed_differently():
    model = fork_story()
    kern = kernel_story(differ=0)
    # the kernel placed the anon buffer elsewhere, 2 pages into a mapping 4 pages larger
    K = 0x7F5500000000
    for s in kern:
        for p in s.processes:
            for i, m in enumerate(p.mappings):
                if m.vma.path == "":
                    st = np.r_[[0, 0], m.pages.state, [0, 0]].astype(np.uint8)
                    mc = np.r_[[0, 0], m.pages.mapcount, [0, 0]]
                    pf = np.r_[[0, 0], m.pages.pfn, [0, 0]]
                    p.mappings[i] = mapping(K, states(st, mapcount=mc, pfn=pf))
    kern[2].processes[1].mappings[0].pages.state[2 + 5] = SHARED  # one page not yet copied in the kernel
    kern[2].processes[1].mappings[0].pages.mapcount[2 + 5] = 2
    without = decoded(model, compare=kern)
    child = next(p for p in without.meta["steps"][2]["processes"] if p["pid"] == 11)
    anon = next(m for m in child["mappings"] if m["start"] == A)
    assert anon["cmp"]["shift"] == 0  # n-th anon mapping, aligned at the start: everything off by 2
    assert list(without.pages(2, 11, A, cmp=True)["code"][:2]) == [0, 0]
    pl = decoded(model, compare=kern, address_map={A: K + 2 * 4096})
    child = next(p for p in pl.meta["steps"][2]["processes"] if p["pid"] == 11)
    anon = next(m for m in child["mappings"] if m["start"] == A)
    assert anon["cmp"]["shift"] == 2
    assert anon["cmp"]["outside"] == 0
    kcode = pl.pages(2, 11, A, cmp=True)["code"]
    mcode = pl.pages(2, 11, A)["code"]
    assert kcode[5] == 3 and kcode[4] == 2 and [i for i in range(N) if kcode[i] != mcode[i]] == [5]
    filem = next(m for m in child["mappings"] if m["start"] == F)
    assert filem["cmp"]["shift"] == 0  # file mappings pair by path, perms and offset


def test_notes_per_step():
    meta, _ = build_payload(fork_story(), notes=["a", "b", "c"])
    assert [s["note"] for s in meta["steps"]] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="notes"):
        build_payload(fork_story(), notes=["a"])


def test_new_frames_per_step_without_events():
    snaps = fork_story()
    for s in snaps:
        s.events = []
    meta, _ = build_payload(snaps)
    # the child's copies replace WRITTEN frames; the parent keeps its frames
    assert [s["new_frames"] for s in meta["steps"]] == [0, 0, WRITTEN]



def test_compare_events_keep_their_own_and_are_placed_on_the_main_series():
    """The kernel's events (other pids, a frame it cannot know: None) land on their step, and on the
    model's process, address and mapping by the pairing the page maps use; None is unknown (-2), 0 none."""
    kernel = kernel_story(differ=0)
    kernel[2].events = [ev(0, 1011, "cow-copy", A + 2 * 4096, None, 9000), ev(1, 1010, "fork", 0, 0, 0),
                        ev(2, 4242, "zero-fill", A, None, 7)]  # a process with no counterpart
    pl = decoded(fork_story(), compare=kernel)
    e = pl.meta["cmp_events"]
    cols = {k: pl.col(e[k]) for k in ("pid", "addr", "old_pfn", "new_pfn", "step", "mpid", "maddr", "mapping")}
    assert list(cols["step"]) == [2, 2, 2] and list(cols["pid"]) == [1011, 1010, 4242]
    assert list(cols["mpid"]) == [11, 10, -1] and list(cols["maddr"]) == [A + 2 * 4096, -1, -1]
    assert list(cols["old_pfn"]) == [-2, -1, -2] and list(cols["new_pfn"]) == [9000, -1, 7]
    label = next(m["label"] for m in pl.meta["steps"][2]["processes"][1]["mappings"] if m["start"] == A)
    assert list(cols["mapping"]) == [pl.meta["mapping_names"].index(label), -1, -1]
    assert pl.meta["steps"][2]["cmp"]["kinds"] == {"cow-copy": 1, "fork": 1, "zero-fill": 1}
    assert pl.meta["steps"][2]["cmp"]["copies"] == 1 and pl.meta["steps"][1]["cmp"]["events"] == 0
    assert decoded(fork_story(), compare=kernel_story()).meta["cmp_events"] is None  # no kernel events


def test_every_copying_kind_counts_as_a_copy_in_the_steps_and_the_page() -> None:
    """A whole-THP copy (the rule before Linux 5.8) is a copy in the step counts and in the page's
    own list of copying kinds, as the 4 KiB ones are; a reuse is not."""
    from cowscope.observe.events import COPYING_KINDS
    from cowscope.report.blob import Blob
    from cowscope.report.events import EventColumns, StepCounts, events_meta

    rows = [(0, 10, "thp-copy", A, 5, 6, ""), (1, 10, "cow-copy", A, 7, 8, ""), (2, 10, "cow-reuse", A, 8, 8, "")]
    ev = EventColumns.from_rows(rows, [1, 1, 1])
    assert StepCounts(ev).of(1) == {"copies": 2, "events": 3,
                                    "kinds": {"cow-copy": 1, "cow-reuse": 1, "thp-copy": 1}}
    meta = events_meta(Blob(), ev, np.full(3, -1, dtype=np.int64))
    assert "thp-copy" in meta["copy_kinds"] and "cow-reuse" not in meta["copy_kinds"]
    assert meta["copy_kinds"] == list(COPYING_KINDS)
