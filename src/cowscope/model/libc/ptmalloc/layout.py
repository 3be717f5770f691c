"""Constants and struct layouts of glibc 2.36 malloc on x86-64 (Debian 12 build)."""

from __future__ import annotations

MASK64 = (1 << 64) - 1
PTRDIFF_MAX = (1 << 63) - 1
SIZE_MAX = MASK64

SIZE_SZ = 8
CHUNK_HDR_SZ = 16
MALLOC_ALIGNMENT = 16
MALLOC_ALIGN_MASK = 15
MINSIZE = 32
PREV_INUSE = 1
IS_MMAPPED = 2
NON_MAIN_ARENA = 4
SIZE_BITS = 7
NBINS = 128
NSMALLBINS = 64
MIN_LARGE_SIZE = 0x400
NFASTBINS = 10
BINMAPSIZE = 4
FASTBIN_CONSOLIDATION_THRESHOLD = 0x10000
DEFAULT_MMAP_THRESHOLD = 0x20000
DEFAULT_MMAP_THRESHOLD_MAX = 0x2000000
DEFAULT_TOP_PAD = 0x20000
DEFAULT_MMAP_MAX = 65536
DEFAULT_MXFAST = 128
MAX_FAST_SIZE = 160
TCACHE_MAX_BINS = 64
TCACHE_FILL_COUNT = 7
TCACHE_MAX_BYTES = 1032
TCACHE_STRUCT_SIZE = 640  # uint16_t counts[64] + tcache_entry *entries[64]
PAGESIZE = 4096
MMAP_AS_MORECORE_SIZE = 1 << 20
MALLOC_STRUCT_SIZE = 48   # sizeof(struct malloc_chunk)
ENOMEM = 12
EINVAL = 22

# mallopt parameters
M_MXFAST = 1
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_CHECK_ACTION = -5
M_PERTURB = -6
M_ARENA_TEST = -7
M_ARENA_MAX = -8

# Offsets inside libc's rw data area; host.libc_data is libc+0x1d3000 (first rw page of .data),
# so these are the real symbol offsets of libc6 2.36-9+deb12u14 minus 0x1d3000.
LIBC_DATA_PAGE = 0x1D3000
OFF_MP = 0x1D3340 - LIBC_DATA_PAGE                 # struct malloc_par mp_
OFF_MAIN_ARENA = 0x1D3C60 - LIBC_DATA_PAGE         # struct malloc_state main_arena
OFF_TCACHE_KEY = 0x1DA478 - LIBC_DATA_PAGE         # .bss
OFF_MALLOC_INITIALIZED = 0x1DA488 - LIBC_DATA_PAGE  # .bss (bool)
OFF_PERTURB_BYTE = 0x1DA49C - LIBC_DATA_PAGE       # .bss (int)
OFF_GLOBAL_MAX_FAST = 0x1DA4A0 - LIBC_DATA_PAGE    # .bss
OFF_CURBRK = 0x1DB338 - LIBC_DATA_PAGE             # .bss: sbrk's cached break
# arena.c's statics and the threads' shared flags (nm of libc6-dbg 2.36-9+deb12u14)
OFF_MAY_SHRINK_HEAP = 0x1D3320 - LIBC_DATA_PAGE    # .data int, -1: /proc/sys/vm/overcommit_memory unread
OFF_NARENAS = 0x1D3328 - LIBC_DATA_PAGE            # .data size_t narenas = 1
OFF_NPTL_NTHREADS = 0x1D3288 - LIBC_DATA_PAGE      # .data unsigned int __nptl_nthreads = 1
OFF_NEXT_TO_USE = 0x1DA468 - LIBC_DATA_PAGE        # .bss reused_arena's static next_to_use
OFF_NARENAS_LIMIT = 0x1DA470 - LIBC_DATA_PAGE      # .bss arena_get2's static narenas_limit
OFF_ALIGNED_HEAP_AREA = 0x1DA480 - LIBC_DATA_PAGE  # .bss new_heap's hint for the next heap
OFF_LIST_LOCK = 0x1DA48C - LIBC_DATA_PAGE          # .bss int list_lock
OFF_FREE_LIST = 0x1DA490 - LIBC_DATA_PAGE          # .bss mstate free_list
OFF_FREE_LIST_LOCK = 0x1DA498 - LIBC_DATA_PAGE     # .bss int free_list_lock
OFF_SINGLE_THREADED = 0x1DB5D8 - LIBC_DATA_PAGE    # .bss char __libc_single_threaded(_internal), 1 at start
LIBC_DATA_MIN_SIZE = 0x9000

# Offsets inside the TLS block (libc's static TLS): errno, then malloc's thread variables.
TLS_ERRNO = 0x10
TLS_TCACHE = 0x48
TLS_TCACHE_SHUTTING_DOWN = 0x50
TLS_THREAD_ARENA = 0x58

# struct malloc_state
AV_MUTEX = 0
AV_FLAGS = 4
AV_HAVE_FASTCHUNKS = 8
AV_FASTBINS = 16
AV_TOP = 96
AV_LAST_REMAINDER = 104
AV_BINS = 112
AV_BINMAP = 2144
AV_NEXT = 2160
AV_NEXT_FREE = 2168
AV_ATTACHED_THREADS = 2176
AV_SYSTEM_MEM = 2184
AV_MAX_SYSTEM_MEM = 2192
AV_SIZE = 0x898
NONCONTIGUOUS_BIT = 2

# arena.c: non-main arenas live in heaps of at most HEAP_MAX_SIZE, aligned to it
HEAP_MIN_SIZE = 32 * 1024
HEAP_MAX_SIZE = 2 * DEFAULT_MMAP_THRESHOLD_MAX    # 64 MiB
HEAP_INFO_SIZE = 0x30                             # sizeof(heap_info), padded
HI_AR_PTR = 0
HI_PREV = 8
HI_SIZE = 16
HI_MPROTECT_SIZE = 24
HI_PAGESIZE = 32

# struct malloc_par
MP_TRIM_THRESHOLD = 0
MP_TOP_PAD = 8
MP_MMAP_THRESHOLD = 16
MP_ARENA_TEST = 24
MP_ARENA_MAX = 32
MP_THP_PAGESIZE = 40
MP_HP_PAGESIZE = 48
MP_HP_FLAGS = 56
MP_N_MMAPS = 60
MP_N_MMAPS_MAX = 64
MP_MAX_N_MMAPS = 68
MP_NO_DYN_THRESHOLD = 72
MP_MMAPPED_MEM = 80
MP_MAX_MMAPPED_MEM = 88
MP_SBRK_BASE = 96
MP_TCACHE_BINS = 104
MP_TCACHE_MAX_BYTES = 112
MP_TCACHE_COUNT = 120
MP_TCACHE_UNSORTED_LIMIT = 128
MP_SIZE = 0x88

# tcache_perthread_struct
TC_COUNTS = 0
TC_ENTRIES = 2 * TCACHE_MAX_BINS
# tcache_entry (at chunk2mem of a chunk in the tcache)
TE_NEXT = 0
TE_KEY = 8


def checked_request2size(req: int) -> int:
    """checked_request2size: 0 when req exceeds PTRDIFF_MAX (ENOMEM), else request2size: the chunk
    size serving a request of req bytes."""
    if req > PTRDIFF_MAX:
        return 0
    if req + SIZE_SZ + MALLOC_ALIGN_MASK < MINSIZE:
        return MINSIZE
    return (req + SIZE_SZ + MALLOC_ALIGN_MASK) & ~MALLOC_ALIGN_MASK


def largebin_index(sz: int) -> int:
    """largebin_index_64."""
    if (sz >> 6) <= 48:
        return 48 + (sz >> 6)
    if (sz >> 9) <= 20:
        return 91 + (sz >> 9)
    if (sz >> 12) <= 10:
        return 110 + (sz >> 12)
    if (sz >> 15) <= 4:
        return 119 + (sz >> 15)
    if (sz >> 18) <= 2:
        return 124 + (sz >> 18)
    return 126


def bin_index(sz: int) -> int:
    """bin_index: small bin (sz >> 4) below 0x400, else the large bin."""
    return sz >> 4 if sz < MIN_LARGE_SIZE else largebin_index(sz)


def csize2tidx(sz: int) -> int:
    """csize2tidx: the tcache bin of a chunk size, (sz - MINSIZE + MALLOC_ALIGNMENT - 1) /
    MALLOC_ALIGNMENT in size_t arithmetic, as in glibc (the constants folded: it is on hot paths)."""
    return ((sz - 17) & 0xFFFFFFFFFFFFFFFF) >> 4


def fastbin_index(sz: int) -> int:
    """fastbin_index: the fastbin of a chunk size (64-bit)."""
    return (sz >> 4) - 2


def protect_ptr(pos: int, ptr: int) -> int:
    """PROTECT_PTR / REVEAL_PTR: safe-linking of a tcache or fastbin next pointer stored at pos."""
    return (pos >> 12) ^ ptr


def set_max_fast(s: int) -> int:
    """set_max_fast: the global_max_fast value for M_MXFAST s."""
    return MALLOC_ALIGNMENT if s <= SIZE_SZ - 1 else (s + SIZE_SZ) & ~MALLOC_ALIGN_MASK


def align_up(n: int, a: int) -> int:
    """ALIGN_UP for a power-of-two a."""
    return (n + a - 1) & ~(a - 1)


def powerof2(x: int) -> bool:
    """powerof2 (0 counts as a power of two, as in glibc)."""
    return (x & (x - 1)) == 0
