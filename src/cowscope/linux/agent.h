/* cowscope agent: one real process that executes memory operations on command.
 *
 * Usage: cowscope-agent FD CPU ERRDIR
 *   FD      a connected AF_UNIX stream socket to the controller (commands in, replies out)
 *   CPU     the CPU every scenario process is pinned to (CoW reuse depends on it)
 *   ERRDIR  directory for per-process stderr files (PID.err)
 *
 * The agent allocates nothing on the heap itself: no stdio, buffers are static (.bss) and
 * pre-faulted at start, so the heap holds only what the scenario's malloc calls put there.
 * fork and vfork hand a fresh socket for the new process to the controller (SCM_RIGHTS).
 * SIGSEGV and SIGABRT are reported (address, si_code) before the process dies of them.
 *
 * Sources: agent.h (the wire protocol, shared declarations), agent.c (the socket, signals,
 * process lifecycle, the dispatch table, main), agent_mem.c (memory syscalls, loads and stores,
 * glibc malloc), agent_thread.c (threads: a command runs on the thread its slot names). cowscope.linux.build compiles them as one translation unit; each file also
 * compiles on its own (cc -c).
 */
#ifndef COWSCOPE_AGENT_H
#define COWSCOPE_AGENT_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define BUF_SIZE (256 * 1024)
#define MAX_THREADS 256

enum op {
	OP_PING = 1, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_BRK, OP_SBRK,
	OP_READ, OP_WRITE, OP_FILL, OP_TOUCH, OP_MALLOC, OP_FREE, OP_CALLOC, OP_REALLOC,
	OP_MEMALIGN, OP_USABLE, OP_FORK, OP_VFORK, OP_EXEC, OP_EXIT, OP_WAIT, OP_SETNAME,
	OP_MLOCK, OP_MUNLOCK, OP_INFO, OP_POSIX_MEMALIGN, OP_ALIGNED_ALLOC, OP_MALLOPT,
	OP_MALLOC_TRIM, OP_MALLINFO2, OP_THREAD_CREATE, OP_THREAD_EXIT, OP_THREAD_JOIN,
	OP_MALLOC_STATS,
	OP_COUNT
};

enum tag { T_RESULT = 1, T_DATA, T_SEGV, T_ABRT, T_HELLO, T_FD };

struct cmd {
	uint32_t op;    /* the op, and in the high 16 bits the thread slot that runs it (0: the first) */
	uint32_t len;   /* payload bytes that follow */
	uint64_t a, b, c, d, e, f;
};

struct reply {
	uint32_t tag;
	int32_t err;
	int64_t ret;
	uint64_t aux;
};

#define MMAP_SHARED 1
#define MMAP_FIXED 2
#define MMAP_POPULATE 4
#define MMAP_NOHUGE 8

/* agent.c: the controller's socket and the replies on it. */
extern int ctrl;
extern unsigned char buf[BUF_SIZE];
int write_all(int fd, const void *p, size_t n);
int read_all(int fd, void *p, size_t n);
void reply(uint32_t tag, int64_t ret, int err, uint64_t aux);
void reply_rc(int64_t r);
void reply_ptr(void *p);
void read_text(struct cmd *c, char *out, size_t size);

static inline void *ptr(uint64_t v)
{
	return (void *)(uintptr_t)v;
}

void handle(struct cmd *c);
void serve(void);

/* agent_thread.c: threads, one running at a time. */
extern int forked_from_thread;
void threads_init(void);
void fork_child_takes_over(void);
void run_on_thread(unsigned slot, struct cmd *c);
void op_thread_create(struct cmd *c);
void op_thread_join(struct cmd *c);

/* agent_mem.c: one function per op; each sends its own reply. */
void op_mmap(struct cmd *c);
void op_munmap(struct cmd *c);
void op_mprotect(struct cmd *c);
void op_madvise(struct cmd *c);
void op_mlock(struct cmd *c);
void op_munlock(struct cmd *c);
void op_mremap(struct cmd *c);
void op_brk(struct cmd *c);
void op_sbrk(struct cmd *c);
void op_read(struct cmd *c);
void op_write(struct cmd *c);
void op_fill(struct cmd *c);
void op_touch(struct cmd *c);
void op_malloc(struct cmd *c);
void op_calloc(struct cmd *c);
void op_realloc(struct cmd *c);
void op_memalign(struct cmd *c);
void op_aligned_alloc(struct cmd *c);
void op_free(struct cmd *c);
void op_usable(struct cmd *c);
void op_posix_memalign(struct cmd *c);
void op_mallopt(struct cmd *c);
void op_malloc_trim(struct cmd *c);
void op_mallinfo2(struct cmd *c);
void op_malloc_stats(struct cmd *c);

#endif
