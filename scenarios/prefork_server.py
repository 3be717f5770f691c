"""A pre-fork server: the master preloads data, forks workers, each worker dirties part of it.

The question engineers ask: how much do the workers still share with the master?
"""

PAGE = 4096
WORKERS = 3


def scenario(m):
    master = m.spawn("master")
    # preload: a 'code cache' of many small objects and one big table
    objs = [master.malloc(200) for _ in range(400)]
    for i, p in enumerate(objs):
        master.write(p, bytes([i % 251]) * 200)
    table = master.malloc(1 << 20)  # above the mmap threshold: its own mapping
    master.fill(table, 1 << 20, 7)
    m.checkpoint("master preloaded")

    workers = [master.fork() for _ in range(WORKERS)]
    m.checkpoint("workers forked")

    for n, w in enumerate(workers):
        # each request touches a few objects (refcount-style writes) and a slice of the table
        for p in objs[n * 50:(n + 1) * 50]:
            w.write(p, b"\x01")
        w.fill(table + n * 64 * PAGE, 16 * PAGE, 9)
        w.free(w.malloc(100))
    m.checkpoint("workers served requests")
