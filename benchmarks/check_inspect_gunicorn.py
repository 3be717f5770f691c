"""`cowscope inspect` on a real gunicorn --preload app, without and with gc.freeze(), side by side.

    .venv/bin/python benchmarks/check_inspect_gunicorn.py [--requests 400] [--workers 4]    (root)

The app (benchmarks/servers.py starts gunicorn on 127.0.0.1, own port and directory, 4 sync
workers, setproctitle installed so the workers carry titles) builds 300,000 objects at import in
the master; the workers inherit them. Two workloads, each run without and with gc.freeze() at the
end of the import, each recorded with `cowscope inspect --save` while a bounded load runs, then
shown with `cowscope inspect --compare`:

* typical: each request reads a moving slice of the objects (reference counts) and keeps a few
  (so the garbage collector's young collections come round);
* collect: each request reads the same fixed slice and runs gc.collect(), a full collection that
  walks every object the master made: here gc.freeze() is what keeps them shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

from servers import ensure_gunicorn, gunicorn_app, http_load

APP = '''
import gc, os

class Item:
    def __init__(self, i):
        self.id = i
        self.tags = [i, str(i)]

DATA = [Item(i) for i in range(300_000)]
KEEP = []
COLLECT = os.environ.get("COWSCOPE_COLLECT") == "1"
if os.environ.get("COWSCOPE_FREEZE") == "1":
    gc.freeze()

def app(environ, start_response):
    if COLLECT:
        total = sum(item.id for item in DATA[:20_000])   # the same slice every time
        gc.collect()                                     # a full collection
    else:
        start = (len(KEEP) * 997) % 290_000
        total = sum(item.id for item in DATA[start:start + 10_000])
        KEEP.extend([total] for _ in range(200))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(total).encode()]
'''

COWSCOPE = [sys.executable, "-m", "cowscope"]


def record(path: str, workload: str, freeze: bool, workers: int, requests: int) -> None:
    """One gunicorn run under load, recorded by `cowscope inspect --save`."""
    env = {"COWSCOPE_FREEZE": "1" if freeze else "0", "COWSCOPE_COLLECT": "1" if workload == "collect" else "0"}
    with gunicorn_app(APP, workers=workers, env=env) as g:
        time.sleep(0.5)
        inspect = subprocess.Popen([*COWSCOPE, "inspect", "--tree", str(g.pid), "--save", path, "--watch", "1",
                                    "--count", "8", "--max-duty", "0.5", "--json"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        load = threading.Thread(target=http_load, args=(g.port, requests), kwargs={"max_seconds": 6})
        load.start()
        load.join()
        _, err = inspect.communicate(timeout=120)
        for line in err.splitlines():
            if "exited" in line or "missed" in line:
                print(f"  inspect: {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per run (at most 6 s of load)")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("check_inspect_gunicorn: needs root (exact page classes)", file=sys.stderr)
        return 2
    ensure_gunicorn(titles=True)
    with tempfile.TemporaryDirectory(prefix="cowscope-gunicorn-runs-") as tmp:
        for workload in ("typical", "collect"):
            paths = []
            for freeze in (False, True):
                path = os.path.join(tmp, f"{workload}-{'freeze' if freeze else 'plain'}.jsonl")
                record(path, workload, freeze, args.workers, args.requests)
                paths.append(path)
            print(f"\n=== workload {workload!r}: A = without gc.freeze(), B = with it ===", flush=True)
            subprocess.run([*COWSCOPE, "inspect", "--compare", *paths], check=True,
                           env={**os.environ, "COLUMNS": "150"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
