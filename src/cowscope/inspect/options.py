"""The inspector's option values, shared by its modules and the CLI's parsers.

Plain data, no imports: `cowscope --help` builds every parser from these without loading the
inspector (numpy, rich, prometheus_client).
"""

#: Sampling modes: exact classes (root: PFNs), estimated, smaps_rollup figures only, or the best available.
MODES = ("auto", "exact", "estimate", "summary")

#: Most of the wall-clock time the inspector spends reading /proc.
DEFAULT_DUTY = 0.2

#: --sort names -> the figure mappings are sorted by (largest first; "address": in address order).
SORT_KEYS = {"rss": "rss_kb", "pss": "pss_kb", "uss": "uss_kb", "swap": "swap_kb", "shared": "shared_with_parent_kb",
             "in-tree": "shared_in_tree_kb", "copied": "copied_kb", "same": "copied_identical_kb", "new": "new_kb",
             "released": "released_kb", "address": "start"}
