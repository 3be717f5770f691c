/* cowscope agent: the controller's socket, signals, process lifecycle, dispatch (see agent.h). */
#include "agent.h"

int ctrl = -1;               /* this process's socket to the controller */
static int cpu_arg;
static char errdir[512];
static char exe_path[] = "/proc/self/exe";
unsigned char buf[BUF_SIZE];
static unsigned char altstack[64 * 1024];
static unsigned char vfork_stack[256 * 1024] __attribute__((aligned(16)));

int write_all(int fd, const void *p, size_t n)
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

int read_all(int fd, void *p, size_t n)
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

void reply(uint32_t tag, int64_t ret, int err, uint64_t aux)
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

/* --- replies and payloads every op uses -------------------------------------------------- */

/* The usual reply of a call returning 0 / -1 with errno. */
void reply_rc(int64_t r)
{
	reply(T_RESULT, r, r < 0 ? errno : 0, 0);
}

/* The reply of an allocation: the pointer, and errno when it is NULL. */
void reply_ptr(void *p)
{
	reply(T_RESULT, (int64_t)(uintptr_t)p, p ? 0 : errno, 0);
}

/* Read a command's payload as a NUL-terminated string (a path or a name). */
void read_text(struct cmd *c, char *out, size_t size)
{
	if (c->len >= size || read_all(ctrl, out, c->len))
		_exit(113);
	out[c->len] = 0;
}

/* --- process ops, one function each (the memory ops are in agent_mem.c) ------------------ */

static void op_ping(struct cmd *c)
{
	(void)c;
	reply(T_RESULT, getpid(), 0, 0);
}

static void op_info(struct cmd *c)
{
	(void)c;
	reply(T_RESULT, (int64_t)(uintptr_t)sbrk(0), 0, (uint64_t)getpid());
}

/* fork: the child gets a fresh socket, passed to the controller by the parent (SCM_RIGHTS). */
static void op_fork(struct cmd *c)
{
	int sv[2];
	pid_t pid;
	(void)c;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) { /* no leak into an exec */
		reply(T_RESULT, -1, errno, 0);
		return;
	}
	pid = fork();
	if (pid < 0) {
		int e = errno;
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
		fork_child_takes_over();
		reply(T_HELLO, getpid(), 0, 0);
		return;
	}
	close(sv[1]);
	send_fd(sv[0], pid);
	close(sv[0]);
}

/* vfork: the controller gets the child's socket first: the parent is suspended until the
 * child exits or execs, and then it reports the child's pid on its own socket. */
static void op_vfork(struct cmd *c)
{
	int sv[2];
	int saved = ctrl;
	struct vfork_arg va;
	pid_t pid;
	int e;
	(void)c;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) { /* no leak into an exec */
		reply(T_RESULT, -1, errno, 0);
		return;
	}
	send_fd(sv[0], 0);
	close(sv[0]);
	va.fd = sv[1];
	pid = clone(vfork_child, vfork_stack + sizeof(vfork_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &va);
	e = errno;
	ctrl = saved; /* the child shared our memory, including this variable */
	close(sv[1]);
	reply(T_RESULT, pid, pid < 0 ? e : 0, 0);
}

static void op_exec(struct cmd *c)
{
	(void)c;
	do_exec();
}

static void op_exit(struct cmd *c)
{
	_exit((int)c->a);
}

/* waitpid(c->a, WNOHANG if c->b): ret = the pid, aux = the raw status. */
static void op_wait(struct cmd *c)
{
	int status = 0;
	pid_t pid = waitpid((pid_t)c->a, &status, c->b ? WNOHANG : 0);
	reply(T_RESULT, pid, pid < 0 ? errno : 0, (uint64_t)(unsigned)status);
}

static void op_setname(struct cmd *c)
{
	char name[64];
	read_text(c, name, sizeof(name));
	reply_rc(prctl(PR_SET_NAME, name, 0, 0, 0));
}

/* The dispatch table: op code -> its function (a table, not a function: exempt from the
 * 80-line rule, one line per op). */
static void (*const ops[OP_COUNT])(struct cmd *) = {
	[OP_PING] = op_ping, [OP_MMAP] = op_mmap, [OP_MUNMAP] = op_munmap,
	[OP_MPROTECT] = op_mprotect, [OP_MADVISE] = op_madvise, [OP_MREMAP] = op_mremap,
	[OP_BRK] = op_brk, [OP_SBRK] = op_sbrk, [OP_READ] = op_read, [OP_WRITE] = op_write,
	[OP_FILL] = op_fill, [OP_TOUCH] = op_touch, [OP_MALLOC] = op_malloc, [OP_FREE] = op_free,
	[OP_CALLOC] = op_calloc, [OP_REALLOC] = op_realloc, [OP_MEMALIGN] = op_memalign,
	[OP_USABLE] = op_usable, [OP_FORK] = op_fork, [OP_VFORK] = op_vfork, [OP_EXEC] = op_exec,
	[OP_EXIT] = op_exit, [OP_WAIT] = op_wait, [OP_SETNAME] = op_setname, [OP_MLOCK] = op_mlock,
	[OP_MUNLOCK] = op_munlock, [OP_INFO] = op_info, [OP_POSIX_MEMALIGN] = op_posix_memalign,
	[OP_ALIGNED_ALLOC] = op_aligned_alloc, [OP_MALLOPT] = op_mallopt,
	[OP_MALLOC_TRIM] = op_malloc_trim, [OP_MALLINFO2] = op_mallinfo2,
	[OP_THREAD_CREATE] = op_thread_create, [OP_THREAD_JOIN] = op_thread_join,
	[OP_MALLOC_STATS] = op_malloc_stats,
};

void handle(struct cmd *c)
{
	uint32_t op = c->op & 0xffff;
	if (op < OP_COUNT && ops[op])
		ops[op](c);
	else
		reply(T_RESULT, -1, EINVAL, 0);
}

/* Read commands; run each on the thread its slot names (slot 0: this thread). */
void serve(void)
{
	struct cmd c;
	for (;;) {
		if (read_all(ctrl, &c, sizeof(c)))
			_exit(0); /* the controller is gone: leave nothing behind */
		if (c.op >> 16)
			run_on_thread(c.op >> 16, &c);
		else
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
	threads_init();
	open_stderr();
	reply(T_HELLO, getpid(), 0, 0);
	serve();
	return 0;
}
