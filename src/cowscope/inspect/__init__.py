"""The inspector: live process trees read from /proc, pages classed against each process's parent.

tree (which processes), procread (pagemap and kpagecount in blocks), classify (vectorised page
classes), sample (Sampler, figures, duty cycle), run (sampling loop), render (rich views),
recording (JSON lines, --save/--compare), metrics (Prometheus). See docs/inspect.md.
"""
