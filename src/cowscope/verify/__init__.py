"""Model against kernel: scenario traces, their comparison, the conformance suite and random runs.

Everything here takes backends through the shared API (a machine from `cowscope.model` or
`cowscope.linux`, wrapped in `verify.trace.TracedMachine`) and imports neither backend; the CLI
(`cowscope verify`, `cowscope run --on both`) makes the machines and hands them in.
"""
