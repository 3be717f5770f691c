/* The runtime of a `cowscope learn --emit-c` program (the problem's own steps follow it).

   The main process is a controller: it forks the problem's first process and then, step by
   step, tells the process that acts what to do (a step number on that process's command pipe)
   and waits until it is done (its acknowledgement, or its death: exit, SIGSEGV). Every process
   of the problem runs `serve`: read a step, do it, acknowledge. So one process acts at a time,
   all others are blocked on their pipes, and what /proc shows is the state between two steps.

   The answers come from /proc/self/pagemap (present, PFN, bit 56 "mapped once", bit 61 file),
   /proc/kpagecount and /proc/kpageflags (bit 34: PG_anon_exclusive) and /proc/self/smaps. PFNs,
   map counts and page flags need root; without it the answers that depend on them print "?".
   All processes are pinned to one CPU: whether a write reuses a page can depend on the per-CPU
   LRU batch holding an extra reference. No stdio (it would malloc); output is write(2). */

#define PAGE 4096L
#define RT static __attribute__((unused))
#define PM_PRESENT (1ULL << 63)
#define PM_FILE (1ULL << 61)
#define PM_EXCL (1ULL << 56)
#define PM_PFN ((1ULL << 55) - 1)
#define KPF_ANON_EXCLUSIVE (1ULL << 34)
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct ack { int step; int pid; };

static int cmd_pipe[NPROC][2], ack_pipe[2];
static char *R[NREG + 1];              /* mmap'd regions */
static long R_pages[NREG + 1];
static char *B[NBLK + 1];              /* malloc'd blocks */
static long *blk;                      /* every block's address, shared by all processes */
static pid_t kid[NPROC];               /* in each process: the pids of its children */
static char files_dir[128];
static unsigned long long zero_pfn;
static int have_pfn;
static sigjmp_buf segv_jump;
static volatile sig_atomic_t segv_armed;
static unsigned long long pf_before[1 << 16], pf_after[1 << 16];
static char text[1 << 20];

RT void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
RT void out(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(1, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1) < 0)
        _exit(3);
}

RT void die(const char *what)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "learn: %s: %s\n", what, strerror(errno));
    if (write(2, buf, n > 0 ? (size_t)n : 0) < 0)
        _exit(3);
    _exit(3);
}

RT void send_ack(int fd, int step, int pid)
{
    struct ack a = {step, pid};
    if (write(fd, &a, sizeof a) != sizeof a)
        die("ack");
}

/* One u64 of a /proc file at index i (pagemap: per page; kpagecount/kpageflags: per PFN). */
RT unsigned long long proc_u64(const char *path, unsigned long long i)
{
    unsigned long long v = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    if (pread(fd, &v, 8, (off_t)(i * 8)) != 8)
        v = 0;
    close(fd);
    return v;
}

/* memset without the library: a first call of a lazily bound libc function writes the GOT and
   runs the dynamic linker, faults that a page-fault count would include. */
RT void fill(char *p, int c, long n)
{
    volatile char *v = p;
    for (long i = 0; i < n; i++)
        v[i] = (char)c;
}
