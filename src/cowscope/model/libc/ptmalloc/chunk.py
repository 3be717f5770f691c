"""struct malloc_chunk's fields, named as glibc's macros name them, over a host's memory.

A chunk at p: mchunk_prev_size at p (valid while the previous chunk is free), mchunk_size at p+8
with the A/M/P bits, then while free fd/bk at p+16/p+24 and, in a large bin, fd_nextsize/
bk_nextsize at p+32/p+40; user memory starts at p+16 (chunk2mem). A bin is a fake chunk whose
fd/bk are the list's first and last chunks (glibc's first(b) and last(b)).

The accessors are closures made once per binding (`chunk_accessors`). A host whose accessors
include `field` (FlatHost) builds each one as a single load or store, so `fd(p)` costs what
`r(p + 16)` cost; on other hosts they are calls through the 64-bit load and store.
"""

from __future__ import annotations

from collections.abc import Callable

from .layout import MASK64, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS

Load = Callable[[int], int]
Store = Callable[[int, int], None]

#: (name, byte offset, mask of a load) of the plain fields; docstrings name the C expression
FIELDS = (
    ("prev_size", 0, None, "p->mchunk_prev_size: the size of the free chunk before p"),
    ("chunksize", 8, ~SIZE_BITS & MASK64, "chunksize(p): p's size without the A/M/P bits"),
    ("chunksize_nomask", 8, None, "chunksize_nomask(p): p's size field as stored, bits included"),
    ("fd", 16, None, "p->fd"),
    ("bk", 24, None, "p->bk"),
    ("fd_nextsize", 32, None, "p->fd_nextsize"),
    ("bk_nextsize", 40, None, "p->bk_nextsize"),
)
SETTERS = (
    ("set_prev_size", 0, "set_prev_size(p, sz): p->mchunk_prev_size = sz"),
    ("set_head", 8, "set_head(p, s): p->mchunk_size = s"),
    ("set_fd", 16, "p->fd = v"),
    ("set_bk", 24, "p->bk = v"),
    ("set_fd_nextsize", 32, "p->fd_nextsize = v"),
    ("set_bk_nextsize", 40, "p->bk_nextsize = v"),
)


def chunk_accessors(acc: dict[str, Callable]) -> dict[str, Callable]:
    """Every chunk accessor by name, built on a host's memory accessors (r64, w64, maybe field)."""
    r, w = acc["r64"], acc["w64"]
    field = acc.get("field") or _plain_field(r, w)
    out: dict[str, Callable] = {}
    for name, off, mask, doc in FIELDS:
        out[name] = _named(field(off, mask)[0], name, doc)
    for name, off, doc in SETTERS:
        out[name] = _named(field(off)[1], name, doc)
    out.update(_composite(r, w))
    return out


def _composite(load_at: Load, store_at: Store) -> dict[str, Callable]:
    """The macros that combine two fields or address a neighbour: set_head_size, set_foot, ...
    (load_at/store_at: a 64-bit load/store at any address, in one call)."""

    def set_head_size(p: int, s: int) -> None:
        """set_head_size(p, s): p's size, keeping its A/M/P bits."""
        store_at(p + 8, (load_at(p + 8) & SIZE_BITS) | s)

    def set_foot(p: int, s: int) -> None:
        """set_foot(p, s): the prev_size of the chunk s bytes after p."""
        store_at(p + s, s)

    def inuse_bit_at_offset(p: int, s: int) -> int:
        """inuse_bit_at_offset(p, s): the P bit of the chunk s bytes after p (is p in use?)."""
        return load_at(p + s + 8) & PREV_INUSE

    def set_inuse_bit_at_offset(p: int, s: int) -> None:
        """set_inuse_bit_at_offset(p, s): mark p in use in the chunk s bytes after it."""
        a = p + s + 8
        store_at(a, load_at(a) | PREV_INUSE)

    def set_non_main_arena(p: int) -> None:
        """set_non_main_arena(p): the A bit in p's size (p belongs to a non-main arena)."""
        store_at(p + 8, load_at(p + 8) | NON_MAIN_ARENA)

    return {"set_head_size": set_head_size, "set_foot": set_foot, "inuse_bit_at_offset": inuse_bit_at_offset,
            "set_inuse_bit_at_offset": set_inuse_bit_at_offset, "set_non_main_arena": set_non_main_arena}


def _plain_field(r: Load, w: Store) -> Callable[..., tuple[Load, Store]]:
    """A field factory for any host: load and store through r/w at p + offset."""

    def field(off: int, mask: int | None = None) -> tuple[Load, Store]:
        """The (masked) load and the store of the field at offset off."""
        if mask is None:
            return (lambda p: r(p + off)), (lambda p, v: w(p + off, v))
        return (lambda p: r(p + off) & mask), (lambda p, v: w(p + off, v))

    return field


def _named(fn: Callable, name: str, doc: str) -> Callable:
    """Give a generated accessor its macro's name and a docstring (tracebacks, help())."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc + "."
    return fn
