"""Fixtures for inspector tests: real fork trees with known page numbers, torn down after each test."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest
from forktree import Tree, TreePlan, start_tree


def _kernel_ok() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root for pagemap PFNs and /proc/kpagecount"
    return None


@pytest.fixture
def make_tree() -> Iterator[Callable[[TreePlan], Tree]]:
    """Start fork trees; every tree started is torn down at the end of the test."""
    reason = _kernel_ok()
    if reason:
        pytest.skip(reason)
    trees: list[Tree] = []
    cpu = min(os.sched_getaffinity(0))

    def make(plan: TreePlan) -> Tree:
        t = start_tree(plan, cpu=cpu)
        trees.append(t)
        return t

    yield make
    for t in trees:
        t.close()
