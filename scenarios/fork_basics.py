"""fork() and a malloc'd buffer: share, copy on write, reuse after the child exits."""

PAGE = 4096


def scenario(m):
    parent = m.spawn("parent")
    buf = parent.malloc(16 * PAGE)
    parent.fill(buf, 16 * PAGE, 0x41)
    m.checkpoint("parent filled a 64 KiB buffer")

    child = parent.fork()
    m.checkpoint("after fork: every page shared")

    child.write(buf + 4 * PAGE, b"child was here")
    assert parent.read(buf + 4 * PAGE, 5) == b"AAAAA"
    m.checkpoint("child wrote one page: one copy")

    child.exit(0)
    parent.wait(child)
    parent.fill(buf, 16 * PAGE, 0x42)
    m.checkpoint("child gone: parent writes reuse every page")
