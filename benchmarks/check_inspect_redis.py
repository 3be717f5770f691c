"""`cowscope inspect` on a real Redis BGSAVE, beside Redis's own copy-on-write figures.

    .venv/bin/python benchmarks/check_inspect_redis.py [--mb 500] [--value 5000]    (root)

Starts redis-server (apt) on 127.0.0.1 with its own port and directory (benchmarks/servers.py),
fills it with DEBUG POPULATE (values of --value bytes: Redis 7 releases a saved value's pages in
the BGSAVE child with MADV_DONTNEED only when they span whole pages), and samples the tree from
before the fork, so the child's reference is its fork. Then BGSAVE (slowed down with
rdb-key-save-delay to last a few seconds) while a client overwrites keys. Every sample prints the
child's figures beside Redis's INFO current_cow_size (the child's Private_Dirty, which Redis
measures itself about once a second); at the end, rdb_last_cow_size. Bounded: the save and the
writes stop after --seconds, and Redis is stopped and its directory removed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time

from rich.console import Console
from rich.table import Table
from servers import Resp, redis_server

from cowscope.inspect.figures import ProcessFigures, Sample
from cowscope.inspect.render import fmt_kb
from cowscope.inspect.sample import Sampler

MiB = 1 << 20


def writer(port: int, keys: int, size: int, stop: threading.Event, sent: list[int]) -> None:
    """Overwrite random keys with new values of the same size until told to stop."""
    c = Resp(port)
    rng = random.Random(1)
    value = b"w" * size
    while not stop.is_set():
        for _ in range(50):
            c.send("SET", f"key:{rng.randrange(keys)}", value)
        for _ in range(50):
            c.reply()
        sent[0] += 50
        time.sleep(0.01)
    c.close()


def child_of(s: Sample, root: int) -> ProcessFigures | None:
    return next((p for p in s.processes if p.ppid == root and p.parent_in_tree), None)


def row(t: Table, s: Sample, t0: float, child: ProcessFigures, info: dict[str, str]) -> None:
    cow = int(info.get("current_cow_size", 0)) // 1024
    t.add_row(f"{s.ts - t0:5.1f}", child.label, fmt_kb(child.rss_kb), fmt_kb(child.shared_with_parent_kb),
              fmt_kb(child.copied_kb), f"{fmt_kb(child.copied_by_child_kb)}/{fmt_kb(child.copied_by_parent_kb)}",
              fmt_kb(child.new_kb), fmt_kb(child.released_kb), fmt_kb(child.uss_kb), fmt_kb(cow),
              child.history or "-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500, help="data to fill Redis with (MiB)")
    ap.add_argument("--value", type=int, default=5000, help="value size in bytes")
    ap.add_argument("--seconds", type=float, default=60, help="longest the save may take")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("check_inspect_redis: needs root (exact page classes)", file=sys.stderr)
        return 2
    console = Console(width=170)
    keys = args.mb * MiB // args.value
    delay_us = max(1, int(4_000_000 / keys))  # about 4 s of saving
    extra = ["--enable-debug-command", "yes", "--rdbcompression", "no", "--rdb-key-save-delay", str(delay_us)]
    with redis_server(extra=extra) as r:
        r.call("DEBUG", "POPULATE", str(keys), "key", str(args.value))
        client = r.client()
        used = int(client.info("memory")["used_memory"])
        console.print(f"redis-server pid {r.pid} on 127.0.0.1:{r.port}: {keys} keys of {args.value} bytes, "
                      f"used_memory {used / MiB:.1f} MiB; rdb-key-save-delay {delay_us} us")
        sampler = Sampler([r.pid], tree=True, mode="exact")
        before = sampler.sample()  # the parent before the fork: the child's reference
        console.print(f"before BGSAVE: parent RSS {fmt_kb(before.process(r.pid).rss_kb)}")
        time.sleep(0.05)
        stop, sent = threading.Event(), [0]
        w = threading.Thread(target=writer, args=(r.port, keys, args.value, stop, sent))
        w.start()
        t0 = time.time()
        client.call("BGSAVE")
        t = Table(title="the BGSAVE child, sampled by cowscope, beside Redis's own figure", title_justify="left")
        for h in ("t s", "child", "RSS", "shared", "copied", "by child/parent", "new", "released",
                  "USS", "Redis current_cow_size", "history"):
            t.add_column(h, justify="right")
        last: tuple[Sample, ProcessFigures] | None = None
        while time.time() - t0 < args.seconds:
            info = client.info("persistence")
            if info.get("rdb_bgsave_in_progress") != "1":
                break
            s = sampler.sample()
            child = child_of(s, r.pid)
            if child is not None:
                row(t, s, t0, child, info)
                last = (s, child)
            time.sleep(0.25)
        stop.set()
        w.join()
        info = client.info("persistence")
        client.close()
    console.print(t)
    console.print(f"{sent[0]} SETs during the save; save status {info.get('rdb_last_bgsave_status')}, "
                  f"rdb_last_cow_size {int(info.get('rdb_last_cow_size', 0)) / MiB:.1f} MiB")
    if last is not None:
        s, child = last
        tt = s.totals
        console.print(f"last sample of the child: copied {fmt_kb(child.copied_kb)} (by the child "
                      f"{fmt_kb(child.copied_by_child_kb)}, by the parent {fmt_kb(child.copied_by_parent_kb)}), "
                      f"new {fmt_kb(child.new_kb)}, released {fmt_kb(child.released_kb)}; "
                      f"parent RSS {fmt_kb(s.process(s.root_of[child.pid]).rss_kb)}, tree really used "
                      f"{fmt_kb(tt.unique_kb)} of RSS sum {fmt_kb(tt.rss_sum_kb)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
