"""ptmalloc2 as in glibc 2.36 (Debian 12, x86-64), living entirely in simulated memory."""

from ....observe.backend import Mallinfo2
from .allocator import PtMalloc, static_libc_data
from .replay import ModelRunner, parse_ops, replay_text
from .state import check_heap, dump_state

GLIBC_VERSION = "2.36"

__all__ = ["GLIBC_VERSION", "Mallinfo2", "ModelRunner", "PtMalloc", "check_heap", "dump_state",
           "parse_ops", "replay_text", "static_libc_data"]
