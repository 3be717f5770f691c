"""Reports: what snapshots show, in the terminal and as one self-contained HTML file.

Data first, then rendering. Data: demo (the demo's story: six acts played on the model, each a
Step with its checks and a snapshot), payload (the HTML report's metadata and blob, built from
snapshots), with blob (typed arrays packed and deflated), events (event columns with their steps
and mappings) and matching (the model's and the kernel's processes and mappings paired).
Rendering: strips (page strips, legend, per-process tables), terminal (run's checkpoints, the
demo's steps), html (the jinja2 page from the payload). browser drives headless Chromium for the
report's tests and benchmark. See docs/report.md.
"""
