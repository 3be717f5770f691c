/* cowscope agent: threads (see agent.h).
 *
 * A command's op carries a thread slot in its high 16 bits (0: the thread that serves the
 * socket, the process's initial one).  Slot s > 0 is a thread made by OP_THREAD_CREATE: it
 * waits for a command, runs it with handle() on its own stack, TLS, errno, tcache and arena,
 * and hands control back, so exactly one thread runs at a time, in command order.  The thread
 * replies on the socket itself.  OP_THREAD_EXIT makes it return from its start routine (glibc's
 * thread freeres: its tcache back to the arenas, its arena to the free list; not pthread_exit,
 * whose first use dlopens libgcc_s for unwinding, with mallocs of its own); the serving thread
 * replies once the kernel has cleared the thread's tid.  A fork from a thread leaves that thread
 * alone in the child: it serves the child's socket itself.
 */
#include "agent.h"

#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

#define PD_TID 0x2d0 /* offsetof(struct pthread, tid) in glibc 2.36 (cleared by the kernel at exit) */

struct athread {
	pthread_t id;
	sem_t go, done;
	struct cmd cmd;
	pid_t tid;
	int state; /* 0 free, 1 running, 2 exited, 3 joined */
};

static struct athread slots[MAX_THREADS];
static pthread_t serving;      /* the thread that reads the socket */
int forked_from_thread;        /* set in a fork child by op_fork: the caller serves the child's socket */

/* In a fork child: whether the fork came from a slot thread, which now serves the socket. */
void fork_child_takes_over(void)
{
	forked_from_thread = !pthread_equal(pthread_self(), serving);
	serving = pthread_self();
}

/* Default attributes as a program with RLIMIT_STACK 8 MiB gets them, whatever our rlimit is. */
void threads_init(void)
{
	pthread_attr_t a;
	serving = pthread_self();
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 8UL << 20);
	pthread_setattr_default_np(&a);
	pthread_attr_destroy(&a);
}

static void *worker(void *arg)
{
	struct athread *t = arg;
	t->tid = (pid_t)syscall(SYS_gettid);
	sem_post(&t->done); /* ready */
	for (;;) {
		sem_wait(&t->go);
		if ((t->cmd.op & 0xffff) == OP_THREAD_EXIT) {
			t->state = 2;
			return NULL;
		}
		handle(&t->cmd);
		if (forked_from_thread) {
			forked_from_thread = 0;
			memset(slots, 0, sizeof(slots));
			serve();
			_exit(0);
		}
		sem_post(&t->done);
	}
	return NULL;
}

static struct athread *slot_of(uint64_t s, int state)
{
	if (s == 0 || s >= MAX_THREADS || slots[s].state != state)
		return NULL;
	return &slots[s];
}

/* Wait until thread t sleeps in sem_wait(&t->go): after its sem_post(&t->done) it still runs
 * a few instructions, and the next command (a fork, say) must not overlap them. */
static void wait_parked(struct athread *t)
{
	char path[64], st[256];
	int n, fd;
	char *p;
	int len = 0;
	const char *pre = "/proc/self/task/";
	unsigned v = (unsigned)t->tid;
	char digits[16];
	int k = 0;
	do {
		digits[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (*pre)
		path[len++] = *pre++;
	while (k)
		path[len++] = digits[--k];
	memcpy(path + len, "/stat", 6);
	for (;;) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		n = (int)read(fd, st, sizeof(st) - 1);
		close(fd);
		if (n <= 0)
			return;
		st[n] = 0;
		p = strrchr(st, ')');
		if (!p || p[1] != ' ' || p[2] != 'R')
			return; /* sleeping (S) in sem_wait, or gone */
		sched_yield();
	}
}

/* pthread_create from the calling thread: ret = the new thread's tid, aux = its pthread_t. */
void op_thread_create(struct cmd *c)
{
	struct athread *t = slot_of(c->a, 0);
	int rc;
	if (!t) {
		reply(T_RESULT, -1, EINVAL, 0);
		return;
	}
	sem_init(&t->go, 0, 0);
	sem_init(&t->done, 0, 0);
	t->state = 1;
	rc = pthread_create(&t->id, NULL, worker, t);
	if (rc) {
		t->state = 0;
		reply(T_RESULT, -1, rc, 0);
		return;
	}
	sem_wait(&t->done);
	wait_parked(t);
	reply(T_RESULT, t->tid, 0, (uint64_t)t->id);
}

/* pthread_join of an exited thread, from the calling thread. */
void op_thread_join(struct cmd *c)
{
	struct athread *t = slot_of(c->a, 2);
	int rc;
	if (!t) {
		reply(T_RESULT, -1, EINVAL, 0);
		return;
	}
	rc = pthread_join(t->id, NULL);
	if (!rc)
		t->state = 3;
	reply(T_RESULT, rc ? -1 : 0, rc, 0);
}

/* Wait until the kernel has cleared the exited thread's tid (CLONE_CHILD_CLEARTID). */
static void wait_gone(struct athread *t)
{
	volatile int *tidp = (volatile int *)((char *)t->id + PD_TID);
	struct timespec ms = { 0, 1000000 };
	int tid;
	while ((tid = *tidp) != 0)
		syscall(SYS_futex, tidp, FUTEX_WAIT, tid, &ms, NULL, 0);
}

/* Run command c on thread slot s (called by the serving thread): hand it over, wait for it. */
void run_on_thread(unsigned s, struct cmd *c)
{
	struct athread *t = slot_of(s, 1);
	if (!t) {
		if (c->len) /* drop the payload: the thread is not there to read it */
			read_all(ctrl, buf, c->len < BUF_SIZE ? c->len : BUF_SIZE);
		reply(T_RESULT, -1, ESRCH, 0);
		return;
	}
	t->cmd = *c;
	sem_post(&t->go);
	if ((c->op & 0xffff) == OP_THREAD_EXIT) {
		wait_gone(t);
		reply(T_RESULT, 0, 0, 0);
		return;
	}
	sem_wait(&t->done);
	wait_parked(t);
}
