"""The inspector on a real Redis BGSAVE (benchmarks/servers.py): the child releases what it has
saved (Redis 7 dismisses saved values with MADV_DONTNEED), and the copies the parent's writes cause
are the parent's. The full-size run is benchmarks/check_inspect_redis.py."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from cowscope.inspect.sample import Sampler

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (scripts/setup test installs it)"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for exact page classes")]


def test_redis_bgsave_child_releases_and_the_parent_pays_for_its_writes() -> None:
    from servers import redis_server

    keys, size = 4000, 8192  # 32 MiB of values spanning whole pages; ~2 s of saving
    with redis_server(extra=["--enable-debug-command", "yes", "--rdbcompression", "no",
                             "--rdb-key-save-delay", "500"]) as r:
        r.call("DEBUG", "POPULATE", str(keys), "key", str(size))
        sampler = Sampler([r.pid], tree=True, mode="exact")
        sampler.sample()  # the parent before the fork: the child's reference
        time.sleep(0.05)
        c = r.client()
        c.call("BGSAVE")
        for i in range(200):  # the parent rewrites 200 values the child still shares
            c.call("SET", f"key:{i}", b"w" * size)
        time.sleep(0.6)
        s = sampler.sample()
        child = next(p for p in s.processes if p.ppid == r.pid)
        assert c.info("persistence")["rdb_bgsave_in_progress"] == "1", "the save ended before the sample"
        c.close()
    assert child.title is not None and child.title.startswith("redis-rdb-bgsave")
    assert child.history == "fork"
    # Saved values dropped by the child, still held by the parent: released, not copied.
    assert child.released_kb > 1024
    # 200 values of 8 KiB rewritten by the parent: at least their pages are copies the parent paid for.
    assert child.copied_by_parent_kb >= 200 * 8
    assert child.copied_by_child_kb < child.copied_by_parent_kb
