"""Memory management: frames, page tables, VMAs, mmap, faults, madvise."""
