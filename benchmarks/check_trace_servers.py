"""`cowscope trace` on real servers nobody here wrote: gunicorn (with and without gc.freeze()) and
Redis BGSAVE under writes. Too slow for CI (installs, seconds of traffic); the figures go in notes.

    .venv/bin/python benchmarks/check_trace_servers.py [gunicorn] [redis]    (root)

gunicorn: a --preload master builds 300,000 objects at import, then forks 3 sync workers; traffic
(bounded) makes each request read part of the data (reference counts) and keep a few objects (so
the garbage collector's full collections come round). Traced twice: without and with gc.freeze()
at the end of the import. Prints each run's summary and the top causes side by side.

Redis: 1,000,000 keys (DEBUG POPULATE), then BGSAVE while one client overwrites keys; the parent's
copies during the save are traced and compared with Redis's own figures (the "Fork CoW" log line
and INFO rdb_last_cow_size, which Redis measures as the child's Private_Dirty).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time

from rich.console import Console
from servers import gunicorn_app, http_load, redis_server

from cowscope.inspect.ktrace import TreeTracer
from cowscope.inspect.trace_render import render_summary

APP = '''
import gc, os

class Item:
    def __init__(self, i):
        self.id = i
        self.tags = [i, str(i)]

DATA = [Item(i) for i in range(300_000)]
KEEP = []
if os.environ.get("COWSCOPE_FREEZE") == "1":
    gc.freeze()

def app(environ, start_response):
    start = (len(KEEP) * 997) % 290_000
    total = sum(item.id for item in DATA[start:start + 10_000])   # reads: reference counts change
    KEEP.extend([total] for _ in range(2_000))  # survivors: the full collections come round
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(total).encode()]
'''


def trace_gunicorn(freeze: bool, console: Console) -> TreeTracer:
    env = {"COWSCOPE_FREEZE": "1" if freeze else "0"}
    with gunicorn_app(APP, workers=3, env=env) as g:
        time.sleep(0.5)
        tracer = TreeTracer()
        tracer.start([g.pid, *g.workers()])
        load = threading.Thread(target=http_load, args=(g.port, 300), kwargs={"max_seconds": 40})
        load.start()
        while load.is_alive():
            tracer.poll()
            time.sleep(0.05)
        tracer.poll()
        tracer.stop()
        tracer.close()
    console.rule(f"gunicorn --preload, 3 workers, 300 requests, gc.freeze() {'on' if freeze else 'off'}")
    render_summary(tracer.summary, console, top=8)
    return tracer


def check_gunicorn(console: Console) -> None:
    runs = {freeze: trace_gunicorn(freeze, console) for freeze in (False, True)}
    console.rule("gunicorn: copies by cause, without vs with gc.freeze()")
    causes = sorted(set(runs[False].summary.by_cause) | set(runs[True].summary.by_cause))
    for cause in causes:
        console.print(f"{runs[False].summary.by_cause[cause]:>8} {runs[True].summary.by_cause[cause]:>8}  {cause}")
    console.print(f"{runs[False].summary.copies:>8} {runs[True].summary.copies:>8}  total copies")


def _writer(port: int, stop: threading.Event, counter: list[int]) -> None:
    from servers import Resp

    c = Resp(port)
    rng = random.Random(1)
    while not stop.is_set():
        for _ in range(100):
            c.send("SET", f"key:{rng.randrange(1_000_000)}", "x" * 100)
        for _ in range(100):
            c.reply()
        counter[0] += 100
    c.close()


def check_redis(console: Console) -> None:
    with redis_server(extra=["--enable-debug-command", "yes", "--rdbcompression", "no"]) as r:
        r.call("DEBUG", "POPULATE", "1000000", "key", "100")
        tracer = TreeTracer()
        tracer.start([r.pid])
        stop, counter = threading.Event(), [0]
        writer = threading.Thread(target=_writer, args=(r.port, stop, counter))
        writer.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        r.call("BGSAVE")
        client = r.client()
        while client.info("persistence").get("rdb_bgsave_in_progress") == "1" and time.monotonic() - t0 < 60:
            tracer.poll()
            time.sleep(0.05)
        save_s = time.monotonic() - t0
        stop.set()
        writer.join()
        info = client.info("persistence")
        client.close()
        tracer.poll()
        tracer.stop()
        tracer.close()
        with open(r.log) as f:
            cow_lines = [line.strip() for line in f if "Fork CoW" in line or "copy-on-write" in line]
    s = tracer.summary
    console.rule("Redis BGSAVE of 1,000,000 keys while a client writes")
    render_summary(s, console, top=8)
    parent = [p for p in s.processes.values() if p.pid == r.pid]
    parent_copies = sum(parent[0].kinds[k] for k in ("cow-copy", "zero-cow", "file-copy")) if parent else 0
    console.print(f"save took {save_s:.2f} s; {counter[0]} SETs sent during the trace")
    console.print(f"traced: the Redis parent copied {parent_copies} pages = {parent_copies * 4096 / 2**20:.1f} MiB")
    console.print(f"Redis INFO rdb_last_cow_size = {int(info.get('rdb_last_cow_size', 0)) / 2**20:.1f} MiB")
    for line in cow_lines:
        console.print(f"Redis log: {line}")


def main() -> int:
    if os.geteuid() != 0:
        print("check_trace_servers: needs root (tracefs)", file=sys.stderr)
        return 2
    which = sys.argv[1:] or ["gunicorn", "redis"]
    console = Console(width=160)
    if "gunicorn" in which:
        check_gunicorn(console)
    if "redis" in which:
        check_redis(console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
