"""A process writes to memory it made read-only: SIGSEGV kills it, the others go on."""

PAGE = 4096


def scenario(m):
    p = m.spawn("writer")
    a = p.mmap(4 * PAGE, "rw")
    p.fill(a, 4 * PAGE, 1)
    c = p.fork()
    c.mprotect(a, 4 * PAGE, "r")
    m.checkpoint("child made the region read-only")
    try:
        c.write(a, b"x")
    except Exception as e:  # cowscope.errors.Segfault
        print("child:", e)
    assert not c.alive
    p.write(a, b"y")  # the parent is unaffected
    m.checkpoint("child killed by SIGSEGV; parent goes on")
