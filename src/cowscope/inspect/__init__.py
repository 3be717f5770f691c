"""The inspector: live process trees read from /proc, pages classed against each process's parent.

tree (which processes), classify (vectorised page classes), sample (Sampler, figures, duty cycle),
run (sampling loop), render (rich views), recording (JSON lines, --save/--compare), metrics
(Prometheus), snapshots (live processes for the HTML report). /proc itself is read through
cowscope.observe.procfs. See docs/inspect.md.
"""
