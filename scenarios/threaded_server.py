"""A server with four threads forks: the child holds four malloc arenas it never uses.

Each thread's first malloc gives it an arena of its own (a 64 MiB heap reservation); the child of
fork() has one thread, yet maps every thread's stack and arena, copy-on-write shared. The child
works on the main arena ([heap]); the thread arenas stay shared until someone writes them.
"""

THREADS = 4
BLOCK = 50_000  # below the mmap threshold: from the thread's arena


def scenario(m):
    server = m.spawn("server")
    server.malloc(100)
    threads = [server.pthread_create() for _ in range(THREADS)]
    blocks = []
    for i, t in enumerate(threads):
        mine = [t.malloc(BLOCK) for _ in range(4)]
        for b in mine:
            t.fill(b, BLOCK, ord("a") + i)
        blocks.append(mine)
    m.checkpoint("four threads filled their arenas")

    child = server.fork()
    m.checkpoint("forked: the child maps four arenas, shared")

    work = [child.malloc(3000) for _ in range(20)]
    for w in work:
        child.fill(w, 3000, ord("z"))
    m.checkpoint("the child works on [heap]: the arenas stay shared")

    threads[1].fill(blocks[1][2], BLOCK, ord("B"))
    assert child.read(blocks[1][2], 1) == b"b"
    m.checkpoint("a server thread rewrote one block: only its pages copied")
