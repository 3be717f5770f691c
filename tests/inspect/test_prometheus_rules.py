"""The shipped alert rules (examples/prometheus/cowscope-rules.yml), tested with promtool: on
hand-made series, and on the metrics a real exporter serves for a real tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_export import free_port, metrics_text

from cowscope.inspect.metrics import serve
from cowscope.inspect.run import DutyCycle
from cowscope.inspect.sample import Sampler

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "prometheus" / "cowscope-rules.yml"
TESTS = Path(__file__).resolve().parent / "prometheus" / "cowscope-rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (scripts/setup test installs Debian's prometheus package)")

#: A master with 48 MiB of private memory and two workers: one copies all of it, one copies 1 MiB.
TREE = textwrap.dedent("""
    import mmap, os, sys, time
    n = 48 << 20
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    m.write(b"a" * n)
    kids = []
    r, w = os.pipe()
    for size in (n, 1 << 20):
        pid = os.fork()
        if pid == 0:
            m.seek(0)
            m.write(b"b" * size)
            os.write(w, b"k")
            time.sleep(120)
            os._exit(0)
        kids.append(pid)
    os.read(r, 1), os.read(r, 1)
    print(" ".join(map(str, kids)), flush=True)
    time.sleep(120)
""")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_rules_pass_promtool_check_and_unit_tests() -> None:
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("test", "rules", str(TESTS))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def series(text: str, names: set[str]) -> list[dict[str, str]]:
    """Scraped samples of the named metrics as promtool input series, constant for 20 minutes."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in names:
                labels = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(s.labels.items()))
                out.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value:.0f}x20"})
    return out


@pytest.mark.kernel
@needs_promtool
def test_the_copy_alert_fires_on_a_real_exporters_metrics(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for exact page classes")
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        big, small = (int(x) for x in proc.stdout.readline().split())
        server, _t, collector = serve(Sampler([proc.pid], tree=True), free_port(), "127.0.0.1", DutyCycle(1.0))
        try:
            text = metrics_text(server.server_address[1])
        finally:
            server.shutdown()
    finally:
        proc.kill()
        proc.wait()
    s = collector.last
    assert s is not None
    worker = s.process(big)
    copied = next(x.value for f in text_string_to_metric_families(text) for x in f.samples
                  if x.name == "cowscope_process_copied_bytes" and x.labels["pid"] == str(big))
    summary = (f"pid {big} ({worker.name}) of tree {proc.pid} has copied {humanize1024(copied)}B, more than half "
               "of its parents' resident memory")
    test = {
        "rule_files": [str(RULES)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": series(text, {"cowscope_process_copied_bytes", "cowscope_tree_parent_rss_bytes"}),
                   "alert_rule_test": [{"eval_time": "6m", "alertname": "CowscopeWorkerCopiedHalfOfParent",
                                        "exp_alerts": [{"exp_labels": {
                                            "severity": "warning", "root": str(proc.pid), "pid": str(big),
                                            "ppid": str(proc.pid), "name": worker.name},  # title "": no label
                                            "exp_annotations": {"summary": summary}}]}]}],
    }
    assert f'pid="{small}"' in text  # the other worker is there, and must not alert
    path = tmp_path / "scraped.test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    r = promtool("test", "rules", str(path))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def humanize1024(v: float) -> str:
    """Prometheus's template function of that name (Go: %.4g and a binary prefix)."""
    if abs(v) <= 1:
        return f"{v:.4g}"
    for prefix in ("", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(v) < 1024:
            return f"{v:.4g}{prefix}"
        v /= 1024
    return f"{v:.4g}Yi"
