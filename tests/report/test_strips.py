"""Terminal page strips: legend characters, run compression, colour handling."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO
from cowscope.report import strips
from cowscope.report.strips import cell_codes, legend, page_codes, runs, strip

from .helpers import states


def test_one_char_per_page_when_it_fits():
    ps = states([NOT_PRESENT, ZERO, PRIVATE, SHARED, SHARED, PAGECACHE, SWAPPED],
                mapcount=[0, 0, 1, 2, 5, 1, 0])
    assert strip(ps, width=64).plain == ".0#25fs"


def test_shared_counts_saturate_at_plus():
    ps = states([SHARED] * 4, mapcount=[2, 9, 10, 4000])
    assert strip(ps).plain == "29++"


def test_large_mapping_compresses_to_width_with_scale():
    codes = [PRIVATE] * 1024 + [NOT_PRESENT] * 3072
    text = strip(states(codes), width=64).plain
    cells, scale = text.split(" ")
    assert scale == "×64"
    assert cells == "#" * 16 + "." * 48


def test_cell_shows_most_common_state():
    codes = np.array([2, 2, 2, 0, 0, 0, 0, 12], dtype=np.uint8)
    assert list(cell_codes(codes, 2)) == [2, 0]
    # equal counts: the resident state wins over "not present"
    assert list(cell_codes(np.array([0, 0, 2, 2], dtype=np.uint8), 1)) == [2]


def test_width_must_be_positive():
    with pytest.raises(ValueError):
        strip(states([PRIVATE]), width=0)


def test_runs_notation():
    ps = states([PRIVATE] * 1024 + [NOT_PRESENT] * 3 + [SHARED] * 16 + [ZERO])
    assert runs(ps).plain == "#×1024 .×3 2×16 0"


def test_page_codes_match_legend_characters():
    ps = states([PAGECACHE, SHARED, PRIVATE], mapcount=[3, 3, 1])
    assert "".join(strips.CHARS[c] for c in page_codes(ps)) == "f3#"


def test_colours_follow_legend():
    text = strip(states([PRIVATE, PRIVATE, ZERO]))
    styles = {text.plain[s.start:s.end]: str(s.style) for s in text.spans}
    assert styles["##"] == strips.STYLES[2]
    assert styles["0"] == strips.STYLES[1]
    assert len(strips.STYLES) == len(strips.CHARS) == len(strips.COLOURS)


def test_legend_mentions_every_character_and_scale():
    plain = legend().plain
    for ch, meaning in strips.LEGEND:
        assert f"{ch} {meaning}" in plain
    assert "×k" in plain
