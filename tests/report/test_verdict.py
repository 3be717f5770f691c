"""report/verdict.py: the comparison's verdict placed on the payload, and nothing else marked.

Synthetic fork story (scenarios.py): the kernel series has 3 child pages not yet copied, so the two
series' page states differ there; whether they are marked is the verdict's call alone.
"""

from __future__ import annotations

from cowscope.observe.verdict import Difference
from cowscope.report.payload import build_payload

from .scenarios import AROUND, OUTSIDE, A, F, N, fork_story, kernel_story, story_verdict

PAGE = 4096


def _mapping(meta, step, pid, start):
    p = next(p for p in meta["steps"][step]["processes"] if p["pid"] == pid)
    return next(m for m in p["mappings"] if m["start"] == start)


def _marked(meta) -> set[tuple[int, int, int, bool]]:
    """(step, pid, page address, counted) of every mark in the payload."""
    out = set()
    diffs = meta["verdict"]["differences"]
    for k, s in enumerate(meta["steps"]):
        for p in s["processes"]:
            for m in p["mappings"]:
                out |= {(k, p["pid"], m["start"] + j * PAGE, diffs[i]["why"] < 0) for j, i in m["verdict"]["marks"]}
    return out


def test_marks_exactly_the_pages_the_verdict_names() -> None:
    meta, _ = build_payload(fork_story(), compare=kernel_story(differ=3), verdict=story_verdict((1, 5)))
    assert _marked(meta) == {(2, 11, A + PAGE, True), (2, 11, A + 5 * PAGE, True)}
    v = meta["verdict"]
    assert (v["counted"], v["excluded"]) == (2, 0)
    assert [d["shown"] for d in v["differences"]] == ["page", "page"]
    assert [s["verdict"]["counted"] for s in meta["steps"]] == [0, 0, 2]


def test_without_differences_nothing_is_marked_though_the_series_differ() -> None:
    meta, _ = build_payload(fork_story(), compare=kernel_story(differ=3), verdict=story_verdict())
    assert _marked(meta) == set() and meta["verdict"]["counted"] == 0
    assert "diff" not in _mapping(meta, 2, 11, A)["cmp"]  # the report makes no judgement of its own


def test_a_kernel_series_without_a_verdict_is_not_judged() -> None:
    meta, _ = build_payload(fork_story(), compare=kernel_story(differ=3))
    assert meta["verdict"] is None
    m = _mapping(meta, 2, 11, A)
    assert "verdict" not in m and "diff" not in m["cmp"] and m["cmp"]["pages"] is not None


def test_excluded_differences_are_marked_as_excluded_and_not_counted() -> None:
    meta, _ = build_payload(fork_story(), compare=kernel_story(), verdict=story_verdict((1,), excluded=(2, 3)))
    assert _marked(meta) == {(2, 11, A + PAGE, True), (2, 11, A + 2 * PAGE, False), (2, 11, A + 3 * PAGE, False)}
    v = meta["verdict"]
    assert (v["counted"], v["excluded"]) == (1, 2)
    assert v["reasons"][v["differences"][1]["why"]] == "untouched file/shmem pages: (why)"


def test_what_is_not_compared_carries_its_reason() -> None:
    meta, _ = build_payload(fork_story(), compare=kernel_story(), verdict=story_verdict())
    reasons = meta["verdict"]["reasons"]
    anon = _mapping(meta, 2, 11, A)["verdict"]
    assert anon["compared"] == [[0, N, "P#1"]]  # the mapping's last 8 pages lie outside the region
    assert reasons[anon["around"]] == AROUND
    filem = _mapping(meta, 2, 11, F)["verdict"]
    assert filem["compared"] == [] and reasons[filem["around"]] == OUTSIDE
    assert _mapping(meta, 0, 10, A)["verdict"]["compared"] == [[0, N, "P#1"]]
    assert meta["steps"][2]["verdict"]["regions"][0]["linux"] == {"resident": N, "Rss": 4 * N}


def test_region_process_and_run_differences_are_listed_where_they_belong() -> None:
    extra = [Difference("[child wrote] P.1 P#1 vma[0, 64] Rss: model 256 | linux 252", None, "region", 2, 11,
                        "P.1 P#1", (A, A + N * PAGE)),
             Difference("[child wrote] P.1 state: model 'alive' | linux 'Z'", None, "process", 2, 11),
             Difference("[child wrote] P.2 state: model None | linux 'alive'", None, "process", 2, None),
             Difference("how the scenario ended: ...", None, "run")]
    meta, _ = build_payload(fork_story(), compare=kernel_story(), verdict=story_verdict(extra=extra))
    assert _mapping(meta, 2, 11, A)["verdict"]["notes"] == [0]
    child = next(p for p in meta["steps"][2]["processes"] if p["pid"] == 11)
    assert child["verdict"] == [1]
    assert [d["shown"] for d in meta["verdict"]["differences"]] == ["mapping", "process", "", ""]
    assert meta["verdict"]["counted"] == 4 and _marked(meta) == set()
