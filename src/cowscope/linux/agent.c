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
 */
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

enum op {
	OP_PING = 1, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_BRK, OP_SBRK,
	OP_READ, OP_WRITE, OP_FILL, OP_TOUCH, OP_MALLOC, OP_FREE, OP_CALLOC, OP_REALLOC,
	OP_MEMALIGN, OP_USABLE, OP_FORK, OP_VFORK, OP_EXEC, OP_EXIT, OP_WAIT, OP_SETNAME,
	OP_MLOCK, OP_MUNLOCK, OP_INFO,
};

enum tag { T_RESULT = 1, T_DATA, T_SEGV, T_ABRT, T_HELLO, T_FD };

struct cmd {
	uint32_t op;
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
#define MMAP_GUARD 4
#define MMAP_NOHUGE 8

static int ctrl = -1;               /* this process's socket to the controller */
static int cpu_arg;
static char errdir[512];
static char exe_path[] = "/proc/self/exe";
static unsigned char buf[BUF_SIZE];
static unsigned char altstack[64 * 1024];
static unsigned char vfork_stack[256 * 1024] __attribute__((aligned(16)));

static int write_all(int fd, const void *p, size_t n)
{
	const unsigned char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	unsigned char *c = p;
	while (n) {
		ssize_t r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static void reply(uint32_t tag, int64_t ret, int err, uint64_t aux)
{
	struct reply r = { tag, err, ret, aux };
	if (write_all(ctrl, &r, sizeof(r)))
		_exit(111);
}

static void send_fd(int fd, int64_t pid)
{
	struct reply r = { T_FD, 0, pid, 0 };
	struct iovec iov = { &r, sizeof(r) };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr msg;
	struct cmsghdr *cm;

	memset(&msg, 0, sizeof(msg));
	memset(cbuf, 0, sizeof(cbuf));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	while (sendmsg(ctrl, &msg, 0) < 0) {
		if (errno != EINTR)
			_exit(112);
	}
}

static char *utoa(char *p, unsigned long v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	*p = 0;
	return p;
}

/* Point fd 2 at ERRDIR/PID.err so each process's stderr (glibc's abort messages) is its own. */
static void open_stderr(void)
{
	char path[600];
	char *p = path;
	size_t n = strlen(errdir);
	int fd;

	if (!n)
		return;
	memcpy(p, errdir, n);
	p += n;
	*p++ = '/';
	p = utoa(p, (unsigned long)getpid());
	memcpy(p, ".err", 5);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, 2);
		close(fd);
	}
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGSEGV || sig == SIGBUS)
		reply(T_SEGV, si->si_code, sig, (uint64_t)(uintptr_t)si->si_addr);
	else
		reply(T_ABRT, 0, sig, 0);
	/* Die of the signal itself: the default action runs when the access is retried. */
	signal(sig, SIG_DFL);
	if (sig == SIGABRT)
		raise(SIGABRT);
}

static void setup_signals(void)
{
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	struct sigaction sa;

	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
	signal(SIGPIPE, SIG_DFL);
}

static void pin_cpu(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu_arg, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* Copy with plain user-space loads and stores: faults are the CPU's, as in a real program. */
static void copy_in(volatile unsigned char *dst, const volatile unsigned char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

static int prot_of(uint64_t bits)
{
	return (int)bits; /* PROT_READ=1, PROT_WRITE=2, PROT_EXEC=4 as sent */
}

static int64_t do_mmap(struct cmd *c, const char *path)
{
	size_t len = (size_t)c->a;
	int prot = prot_of(c->b);
	uint64_t fl = c->c;
	int flags = (fl & MMAP_SHARED) ? MAP_SHARED : MAP_PRIVATE;
	int fd = -1;
	void *want = (void *)(uintptr_t)c->d;
	void *p;

	if (path[0]) {
		/* Opened read-write when allowed, as the model assumes: a MAP_SHARED mapping of a
		 * read-only descriptor loses VM_SHARED/VM_MAYWRITE ("sh", "mw" in VmFlags). */
		fd = open(path, O_RDWR);
		if (fd < 0)
			fd = open(path, O_RDONLY);
		if (fd < 0)
			return -errno;
	} else {
		flags |= MAP_ANONYMOUS;
	}
	if (fl & MMAP_GUARD && !(fl & MMAP_FIXED) && !want) {
		size_t rlen = (len + PAGE - 1) & ~(PAGE - 1);
		void *res = mmap(NULL, rlen + 2 * PAGE, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (res == MAP_FAILED) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return -e;
		}
		want = (unsigned char *)res + PAGE;
		flags |= MAP_FIXED;
	} else if (fl & MMAP_FIXED) {
		flags |= MAP_FIXED;
	}
	p = mmap(want, len, prot, flags, fd, (off_t)c->e);
	if (p == MAP_FAILED) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	if (fd >= 0)
		close(fd);
	if (fl & MMAP_NOHUGE)
		madvise(p, len, MADV_NOHUGEPAGE);
	return (int64_t)(uintptr_t)p;
}

static void serve(void);

struct vfork_arg {
	int fd;
};

static int vfork_child(void *arg)
{
	struct vfork_arg *va = arg;
	ctrl = va->fd;
	open_stderr();
	reply(T_HELLO, getpid(), 0, 0);
	serve();
	_exit(0);
}

static void do_exec(void)
{
	char fdstr[24], cpustr[24];
	char *argv[] = { "cowscope-agent", fdstr, cpustr, errdir, NULL };
	char *envp[] = { NULL };

	utoa(fdstr, (unsigned long)ctrl);
	utoa(cpustr, (unsigned long)cpu_arg);
	/* the socket must survive exec */
	fcntl(ctrl, F_SETFD, 0);
	execve(exe_path, argv, envp);
	reply(T_RESULT, -1, errno, 0);
}

static void handle(struct cmd *c)
{
	int64_t r = 0;
	int e = 0;
	char path[4096];

	switch (c->op) {
	case OP_PING:
		reply(T_RESULT, getpid(), 0, 0);
		return;
	case OP_INFO:
		reply(T_RESULT, (int64_t)(uintptr_t)sbrk(0), 0, (uint64_t)getpid());
		return;
	case OP_MMAP:
		path[0] = 0;
		if (c->len) {
			if (c->len >= sizeof(path) || read_all(ctrl, path, c->len))
				_exit(113);
			path[c->len] = 0;
		}
		r = do_mmap(c, path);
		if (r < 0 && r > -4096) {
			e = (int)-r;
			r = -1;
		}
		reply(T_RESULT, r, e, 0);
		return;
	case OP_MUNMAP:
		r = munmap((void *)(uintptr_t)c->a, c->b);
		break;
	case OP_MPROTECT:
		r = mprotect((void *)(uintptr_t)c->a, c->b, prot_of(c->c));
		break;
	case OP_MADVISE:
		r = madvise((void *)(uintptr_t)c->a, c->b, (int)c->c);
		break;
	case OP_MLOCK:
		r = mlock((void *)(uintptr_t)c->a, c->b);
		break;
	case OP_MUNLOCK:
		r = munlock((void *)(uintptr_t)c->a, c->b);
		break;
	case OP_MREMAP: {
		void *p = mremap((void *)(uintptr_t)c->a, c->b, c->c, c->d ? MREMAP_MAYMOVE : 0);
		if (p == MAP_FAILED) {
			reply(T_RESULT, -1, errno, 0);
			return;
		}
		reply(T_RESULT, (int64_t)(uintptr_t)p, 0, 0);
		return;
	}
	case OP_BRK:
		if (c->a)
			r = brk((void *)(uintptr_t)c->a);
		e = r ? errno : 0;
		reply(T_RESULT, (int64_t)(uintptr_t)sbrk(0), e, 0);
		return;
	case OP_SBRK: {
		void *old = sbrk((intptr_t)c->a);
		if (old == (void *)-1) {
			reply(T_RESULT, -1, errno, 0);
			return;
		}
		reply(T_RESULT, (int64_t)(uintptr_t)old, 0, 0);
		return;
	}
	case OP_READ: {
		const unsigned char *src = (const unsigned char *)(uintptr_t)c->a;
		uint64_t left = c->b;
		while (left) {
			size_t n = left > BUF_SIZE ? BUF_SIZE : (size_t)left;
			copy_in(buf, src, n);
			reply(T_DATA, (int64_t)n, 0, 0);
			if (write_all(ctrl, buf, n))
				_exit(114);
			src += n;
			left -= n;
		}
		reply(T_RESULT, 0, 0, 0);
		return;
	}
	case OP_WRITE: {
		unsigned char *dst = (unsigned char *)(uintptr_t)c->a;
		uint64_t left = c->b;
		while (left) {
			size_t n = left > BUF_SIZE ? BUF_SIZE : (size_t)left;
			if (read_all(ctrl, buf, n))
				_exit(115);
			copy_in(dst, buf, n);
			dst += n;
			left -= n;
		}
		reply(T_RESULT, 0, 0, 0);
		return;
	}
	case OP_FILL: {
		volatile unsigned char *dst = (volatile unsigned char *)(uintptr_t)c->a;
		for (uint64_t i = 0; i < c->b; i++)
			dst[i] = (unsigned char)c->c;
		reply(T_RESULT, 0, 0, 0);
		return;
	}
	case OP_TOUCH: {
		uint64_t start = c->a & ~(PAGE - 1);
		uint64_t end = c->a + c->b;
		uint64_t sum = 0;
		for (uint64_t va = start; va < end; va += PAGE) {
			unsigned char *p = (unsigned char *)(uintptr_t)(va < c->a ? c->a : va);
			if (c->c)
				__atomic_fetch_or(p, 0, __ATOMIC_RELAXED); /* one write access, no read first */
			else
				sum += *(volatile unsigned char *)p;
		}
		reply(T_RESULT, (int64_t)sum, 0, 0);
		return;
	}
	case OP_MALLOC:
		errno = 0;
		r = (int64_t)(uintptr_t)malloc(c->a);
		reply(T_RESULT, r, r ? 0 : errno, 0);
		return;
	case OP_FREE:
		free((void *)(uintptr_t)c->a);
		break;
	case OP_CALLOC:
		errno = 0;
		r = (int64_t)(uintptr_t)calloc(c->a, c->b);
		reply(T_RESULT, r, r ? 0 : errno, 0);
		return;
	case OP_REALLOC:
		errno = 0;
		r = (int64_t)(uintptr_t)realloc((void *)(uintptr_t)c->a, c->b);
		reply(T_RESULT, r, r ? 0 : errno, 0);
		return;
	case OP_MEMALIGN:
		errno = 0;
		r = (int64_t)(uintptr_t)memalign(c->a, c->b);
		reply(T_RESULT, r, r ? 0 : errno, 0);
		return;
	case OP_USABLE:
		reply(T_RESULT, (int64_t)malloc_usable_size((void *)(uintptr_t)c->a), 0, 0);
		return;
	case OP_FORK: {
		int sv[2];
		pid_t pid;
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
			reply(T_RESULT, -1, errno, 0);
			return;
		}
		pid = fork();
		if (pid < 0) {
			e = errno;
			close(sv[0]);
			close(sv[1]);
			reply(T_RESULT, -1, e, 0);
			return;
		}
		if (pid == 0) {
			close(ctrl);
			close(sv[0]);
			ctrl = sv[1];
			open_stderr();
			reply(T_HELLO, getpid(), 0, 0);
			return;
		}
		close(sv[1]);
		send_fd(sv[0], pid);
		close(sv[0]);
		return;
	}
	case OP_VFORK: {
		int sv[2];
		int saved = ctrl;
		struct vfork_arg va;
		pid_t pid;
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
			reply(T_RESULT, -1, errno, 0);
			return;
		}
		/* The controller gets the child's socket first: the parent is suspended until the
		 * child exits or execs, and then it reports the child's pid on its own socket. */
		send_fd(sv[0], 0);
		close(sv[0]);
		va.fd = sv[1];
		pid = clone(vfork_child, vfork_stack + sizeof(vfork_stack),
			    CLONE_VM | CLONE_VFORK | SIGCHLD, &va);
		e = errno;
		ctrl = saved; /* the child shared our memory, including this variable */
		close(sv[1]);
		reply(T_RESULT, pid, pid < 0 ? e : 0, 0);
		return;
	}
	case OP_EXEC:
		do_exec();
		return;
	case OP_EXIT:
		_exit((int)c->a);
	case OP_WAIT: {
		int status = 0;
		pid_t pid = waitpid((pid_t)c->a, &status, c->b ? WNOHANG : 0);
		reply(T_RESULT, pid, pid < 0 ? errno : 0, (uint64_t)(unsigned)status);
		return;
	}
	case OP_SETNAME:
		if (c->len >= sizeof(path) || read_all(ctrl, path, c->len))
			_exit(116);
		path[c->len] = 0;
		r = prctl(PR_SET_NAME, path, 0, 0, 0);
		break;
	default:
		reply(T_RESULT, -1, EINVAL, 0);
		return;
	}
	reply(T_RESULT, r, r < 0 ? errno : 0, 0);
}

static void serve(void)
{
	struct cmd c;
	for (;;) {
		if (read_all(ctrl, &c, sizeof(c)))
			_exit(0); /* the controller is gone: leave nothing behind */
		handle(&c);
	}
}

static long parse_num(const char *s)
{
	long v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	ctrl = (int)parse_num(argv[1]);
	cpu_arg = (int)parse_num(argv[2]);
	strncpy(errdir, argv[3], sizeof(errdir) - 1);
	fcntl(ctrl, F_SETFD, FD_CLOEXEC);
	/* The first agent dies with its controller; fork children see EOF on their sockets. */
	if (getppid() != 1 && getenv("COWSCOPE_AGENT_ROOT"))
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	pin_cpu();
	memset(buf, 0, sizeof(buf));
	memset(altstack, 0, sizeof(altstack));
	setup_signals();
	open_stderr();
	reply(T_HELLO, getpid(), 0, 0);
	serve();
	return 0;
}
