"""`cowscope learn`: seeded problems about fork and memory, answered by the model, confirmed by the
kernel (in the spirit of OSTEP's homework simulators)."""
