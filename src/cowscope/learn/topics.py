"""The topics: each writes one problem into a Builder, harder with the level.

Every question is about a fact both backends show, and its answer must not depend on anything
the kernel decides opportunistically (fault-around of file pages, per-CPU batches): file
mappings are asked about at their first access only, and never for strips or Rss.
The traps are on purpose, each tied to a fact the model checks: the parent's first write after
fork copies too; after the child exits the parent reuses, and still takes a fault for each page;
a never-touched page is a zero-fill, not a copy; read-then-write faults twice; free() of a small
block dirties a page; code pages are never copied; a vfork child writes into its parent's
memory; MADV_DONTFORK leaves the child without the mapping.
"""

from __future__ import annotations

from .generate import Builder, Topic


def fork_basics(b: Builder) -> None:
    n = b.between(1, 2) if b.level == 1 else b.between(2, 4)
    b.title = "A process fills a buffer and forks; then parent and child write to it."
    b.say(f"P mmap a {n}")
    b.write("P", "a")
    b.say("P fork C")
    first, second = b.order(["P", "C"])
    k = b.page(n)
    b.ask_write(first, "a", k)                  # the parent's first write copies too
    b.ask(f"value {second} read a {k}")
    if b.level == 1:
        b.ask(f"strip {first} a")
    if b.level >= 2:
        b.ask_write(second, "a", k)             # the other one reuses: nobody else maps it
    if b.level >= 3:
        b.ask(f"strip {b.pick(['P', 'C'])} a")
        b.ask(f"{b.pick(['pss', 'uss'])} {b.pick(['P', 'C'])} a")
    if b.level >= 2 and n > 1:
        j = b.page(n, avoid=[k])
        b.say("C exit")
        b.say("P wait C")
        b.ask_write("P", "a", j)                # after the child exits the parent reuses
        if b.level >= 3:
            b.ask("rss P a")
            b.ask(f"faults P write a all {b.letter()}")   # mapped once, but still write-protected


def zero_page(b: Builder) -> None:
    n = b.between(2, 4)
    if b.level == 1:
        b.title = "Demand paging: reading and writing memory nobody has touched yet."
        k = b.page(n)
        b.say(f"P mmap a {n}")
        b.ask(f"outcome P read a {k}")
        b.ask_write("P", "a", k)                # read-then-write faults twice
        b.ask(f"{b.pick(['rss', 'strip'])} P a")
        b.ask(f"faults P write a all {b.letter()}")
        return
    b.title = "Part of a buffer is written before fork, the rest was never touched."
    m = b.between(1, n - 1)
    b.say(f"P mmap a {n}")
    b.write("P", "a", f"0-{m - 1}" if m > 1 else "0")
    r = b.page(n, avoid=range(m))
    if b.level >= 3:
        b.say(f"P read a {r}")
    b.say("P fork C")
    j = b.page(n, avoid=range(m))
    who = b.pick(["P", "C"])
    b.ask_write(who, "a", j)                    # never touched: zero-fill, not a copy
    b.ask(f"value {'C' if who == 'P' else 'P'} read a {j}")
    b.ask(f"strip {b.pick(['P', 'C'])} a")
    if b.level >= 3:
        b.ask(f"rss {b.pick(['P', 'C'])} a")


def malloc_writes(b: Builder) -> None:
    small = b.between(2, 12) * 8
    b.title = "malloc keeps its bookkeeping in the process's own memory: fork copies it too."
    b.say(f"P malloc x {small}")
    b.write("P", "x", "")
    if b.level == 1:
        b.say("P fork C")
        b.ask("copies C free x")                # free() of a small block dirties a page
        b.ask(f"addr C malloc y {small}")
        b.ask("value P read x")
        return
    if b.level == 2:
        b.say(f"P malloc y {b.between(130, 200) * 8}")   # too big for the tcache: a bin
        b.write("P", "y", "")
        b.say(f"P malloc z {b.between(2, 12) * 8}")
        b.say("P fork C")
        first, second = b.order(["x", "y"])
        b.ask(f"copies C free {first}")
        b.ask(f"copies C free {second}")
        b.ask("own C code")                     # code pages are never copied
        return
    b.title = "Blocks big and small freed in a child: tcache, mmap'd chunks, and who copies."
    b.say(f"P malloc y {b.between(40, 64) * 4096}")     # above the mmap threshold
    b.write("P", "y", "")
    b.say(f"P malloc z {small}")
    b.say("P fork C")
    b.ask("copies C free y")                    # munmap: only malloc's counters are written
    first, second = b.order(["x", "z"])
    b.say(f"C free {first}")
    b.ask(f"copies C free {second}")
    b.ask(f"addr C malloc w {small}")           # the tcache is last in, first out
    b.ask("copies P free x")                    # the parent's page is mapped once now


def process_tree(b: Builder) -> None:
    n = b.between(2, 4)
    b.title = "One parent, several children and a grandchild share a buffer."
    b.say(f"P mmap a {n}")
    b.write("P", "a")
    b.say("P fork C")
    b.say("P fork D")
    if b.level == 1:
        b.ask(f"strip {b.pick(['P', 'C', 'D'])} a")
        b.ask(f"rss {b.pick(['P', 'C', 'D'])} a")
        b.ask(f"pss {b.pick(['P', 'C', 'D'])} a")
        return
    b.say("C fork G")
    k = b.page(n)
    writer = b.pick(["P", "C", "D", "G"])
    b.ask_write(writer, "a", k)
    b.ask(f"strip {b.pick([p for p in 'PCDG' if p != writer])} a")
    b.ask(f"pss {b.pick(['P', 'C', 'D', 'G'])} a")
    if b.level >= 3:
        b.say("D exit")
        b.say("P wait D")
        b.ask(f"{b.pick(['pss', 'uss'])} {b.pick(['P', 'G'])} a")
        b.ask_write(b.pick(["P", "C", "G"]), "a", b.page(n, avoid=[k]))


def file_mappings(b: Builder) -> None:
    n = b.between(2, 3)
    k, j = b.page(n), b.page(n)
    b.say(f"file f {n}")
    if b.level == 1:
        b.title = "A private mapping of a file: reads share the page cache, writes copy."
        b.say(f"P mmap m {n} file=f")
        b.ask(f"outcome P read m {k}")
        b.ask_write("P", "m", j)
        b.ask(f"file f {j}")
        return
    if b.level == 2:
        b.title = "Shared and private mappings of one file, and a fork."
        b.say(f"P mmap s {n} file=f shared")
        b.say(f"P mmap m {n} file=f")
        b.ask_write("P", "s", k)
        b.ask(f"file f {k}")
        b.say("P fork C")
        b.ask(f"value C read {b.pick(['s', 'm'])} {k}")
        b.ask_write("C", "m", j)
        return
    b.title = "A private file mapping, a fork, and a write(2) to the file."
    b.say(f"P mmap m {n} file=f")
    b.write("P", "m", k)
    b.say("P fork C")
    b.ask_write("C", "m", k)
    b.say(f"pwrite f 0-{n - 1} {b.letter()}")
    b.ask(f"value P read m {k}")
    b.ask(f"value C read m {b.page(n, avoid=[k])}")


def vfork_exec(b: Builder) -> None:
    n = b.between(2, 4)
    k = b.page(n)
    b.say(f"P mmap a {n}")
    b.write("P", "a")
    if b.level == 2 or (b.level == 3 and b.chance(0.5)):
        b.title = "vfork: the child borrows the parent's memory until it execs or exits."
        b.say("P vfork C")
        b.ask_write("C", "a", k)                # a vfork child writes into its parent's memory
        b.say(f"C {b.pick(['exec', 'exit'])}")
        b.ask(f"value P read a {k}")
        b.ask_write("P", "a", k)
        return
    b.title = "fork then exec: the child lets go of the parent's pages."
    b.say("P fork C")
    if b.level >= 3:
        b.write("C", "a", k)
    b.ask("strip P a")
    b.say("C exec")
    b.ask_write("P", "a", k)
    b.ask(f"{b.pick(['pss', 'strip']) if b.level >= 3 else 'pss'} P a")


def madvise_advice(b: Builder) -> None:
    n = b.between(2, 4)
    k = b.page(n)
    b.say(f"P mmap a {n}")
    b.write("P", "a")
    if b.level == 1:
        b.title = "MADV_DONTNEED throws pages away; what comes back?"
        b.say(f"P madvise a {k} dontneed")
        b.ask(f"outcome P read a {k}")
        b.ask(f"value P read a {k}")
        b.ask(f"{b.pick(['rss', 'strip'])} P a")
        b.ask(f"faults P write a all {b.letter()}")
        return
    if b.level == 2:
        advice = b.pick(["dontfork", "wipeonfork"])
        b.title = f"MADV_{advice.upper()}: what the child gets of a buffer."
        b.say(f"P madvise a all {advice}")
        b.say("P fork C")
        if advice == "wipeonfork":
            b.ask(f"value C read a {k}")
        b.ask_write("C", "a", b.page(n))
        b.ask_write("P", "a", k)
        return
    b.title = "The child drops pages with MADV_DONTNEED after fork."
    b.say("P fork C")
    b.say(f"C madvise a {k} dontneed")
    b.ask(f"strip {b.pick(['P', 'C'])} a")
    b.ask_write("P", "a", k)
    b.ask(f"value C read a {k}")


TOPICS = (
    Topic("fork", "fork basics: one buffer, parent and child write, exit and reuse", fork_basics),
    Topic("zero", "the zero page and demand paging: untouched, read, written", zero_page),
    Topic("malloc", "malloc's own writes: free() and malloc() in a child copy pages", malloc_writes,
          invertible=False),
    Topic("tree", "several children and a grandchild: map counts and Pss", process_tree),
    Topic("file", "file mappings: private vs shared, the page cache, write(2)", file_mappings,
          invertible=False),
    Topic("exec", "vfork and exec: borrowed memory, and letting go of it", vfork_exec),
    Topic("madvise", "madvise: DONTNEED, DONTFORK, WIPEONFORK", madvise_advice),
)
