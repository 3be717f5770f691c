"""DWARF at one address: the chain of inlined functions and the source line (pyelftools).

Only what naming a write site needs: the compile unit holding the address (.debug_aranges),
the subprogram and nested DW_TAG_inlined_subroutine DIEs whose ranges hold it, and the line
table row at or before it. Per compile unit the DIE tree and line rows are read once.
"""

from __future__ import annotations

import bisect
import os
from typing import Any


def _ranges(dwarf: Any, die: Any) -> list[tuple[int, int]]:
    """The [low, high) address ranges of a DIE (low_pc/high_pc or DW_AT_ranges)."""
    attrs = die.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        low = attrs["DW_AT_low_pc"].value
        high = attrs["DW_AT_high_pc"]
        end = high.value if high.form == "DW_FORM_addr" else low + high.value
        return [(low, end)]
    if "DW_AT_ranges" in attrs:
        rl = dwarf.range_lists()
        if rl is None:
            return []
        base = die.cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        base_addr = base.value if base is not None else 0
        out = []
        for entry in rl.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=die.cu):
            if hasattr(entry, "begin_offset"):
                is_abs = getattr(entry, "is_absolute", False)
                lo = entry.begin_offset if is_abs else base_addr + entry.begin_offset
                hi = entry.end_offset if is_abs else base_addr + entry.end_offset
                out.append((lo, hi))
            elif hasattr(entry, "base_address"):
                base_addr = entry.base_address
        return out
    return []


def _holds(dwarf: Any, die: Any, vaddr: int) -> bool:
    return any(lo <= vaddr < hi for lo, hi in _ranges(dwarf, die))


def _name(die: Any) -> str | None:
    for _ in range(4):  # follow abstract_origin / specification to the declaration with a name
        attr = die.attributes.get("DW_AT_name")
        if attr is not None:
            return attr.value.decode("utf-8", "replace")
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in die.attributes:
                die = die.get_DIE_from_attribute(ref)
                break
        else:
            return None
    return None


def _line_rows(dwarf: Any, cu: Any) -> list[tuple[int, str, int]]:
    """Sorted (address, file, line) rows of a CU's line program."""
    prog = dwarf.line_program_for_CU(cu)
    if prog is None:
        return []
    files = prog["file_entry"]
    v5 = prog["version"] >= 5
    rows = []
    for entry in prog.get_entries():
        st = entry.state
        if st is None or st.end_sequence:
            continue
        idx = st.file if v5 else st.file - 1
        name = files[idx].name.decode("utf-8", "replace") if 0 <= idx < len(files) else "?"
        rows.append((st.address, os.path.basename(name), st.line))
    rows.sort()
    return rows


def inline_chain(dwarf: Any, vaddr: int, cache: dict[int, Any]) -> tuple[tuple[str, ...], str | None]:
    """(inlined function names at vaddr, innermost first; "file:line") — ((), None) if unknown."""
    aranges = dwarf.get_aranges()
    cu_offset = aranges.cu_offset_at_addr(vaddr) if aranges is not None else None
    if cu_offset is None:
        return (), None
    if cu_offset not in cache:
        cu = dwarf.get_CU_at(cu_offset)
        cache[cu_offset] = (cu, _line_rows(dwarf, cu))
    cu, rows = cache[cu_offset]
    i = bisect.bisect_right(rows, (vaddr, "\uffff", 1 << 30)) - 1
    line = f"{rows[i][1]}:{rows[i][2]}" if i >= 0 else None
    chain: list[str] = []
    die = next((d for d in cu.get_top_DIE().iter_children()
                if d.tag == "DW_TAG_subprogram" and _holds(dwarf, d, vaddr)), None)
    while die is not None:
        die = _inner(dwarf, die, vaddr)
        if die is not None:
            chain.append(_name(die) or "?")
    return tuple(reversed(chain)), line


_SCOPES = ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine")


def _inner(dwarf: Any, die: Any, vaddr: int, depth: int = 0) -> Any:
    """The inlined subroutine directly inside `die` whose ranges hold vaddr (through lexical blocks)."""
    for child in die.iter_children():
        if child.tag not in _SCOPES:
            continue
        ranges = _ranges(dwarf, child)
        if ranges and not any(lo <= vaddr < hi for lo, hi in ranges):
            continue
        if child.tag == "DW_TAG_inlined_subroutine" and ranges:
            return child
        if depth < 32:
            found = _inner(dwarf, child, vaddr, depth + 1)
            if found is not None:
                return found
    return None
