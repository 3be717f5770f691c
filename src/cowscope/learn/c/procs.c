/* Processes and steps: the SIGSEGV guard, regions and files, fork/vfork/exec, the controller. */

RT void on_segv(int sig)
{
    if (segv_armed)
        siglongjmp(segv_jump, 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Die of the SIGSEGV an access took (as the process in the problem does). */
RT void die_segv(void)
{
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    _exit(139);
}

/* Run the statement; segv = 1 if it took a SIGSEGV (the process then dies of it, later). */
#define GUARDED(segv, ...)                        \
    do {                                          \
        segv = 0;                                 \
        if (sigsetjmp(segv_jump, 1)) {            \
            segv = 1;                             \
        } else {                                  \
            segv_armed = 1;                       \
            __VA_ARGS__;                          \
        }                                         \
        segv_armed = 0;                           \
    } while (0)

/* An mmap'd region with a PROT_NONE page on each side (its own VMA, as cowscope maps it). */
RT char *map_region(int i, long npages, int shared, const char *file)
{
    int fd = -1;
    char path[256];
    char *reserve = mmap(NULL, (npages + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reserve == MAP_FAILED)
        die("mmap");
    if (file) {
        snprintf(path, sizeof path, "%s/%s", files_dir, file);
        if ((fd = open(path, O_RDWR)) < 0)
            die(path);
    }
    char *p = mmap(reserve + PAGE, npages * PAGE, PROT_READ | PROT_WRITE,
                   (shared ? MAP_SHARED : MAP_PRIVATE) | (file ? 0 : MAP_ANONYMOUS) | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    if (fd >= 0)
        close(fd);
    R[i] = p;
    R_pages[i] = npages;
    return p;
}

/* A file of the problem: page i holds the letter 'a'+i, written page by page and synced. */
RT void make_file(const char *name, int npages)
{
    char path[256], page[PAGE];
    snprintf(path, sizeof path, "%s/%s", files_dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path);
    for (int i = 0; i < npages; i++) {
        memset(page, 'a' + i, sizeof page);
        if (write(fd, page, sizeof page) != sizeof page)
            die("write");
    }
    fsync(fd);
    close(fd);
}

RT void write_file(const char *name, long first, long count, char letter)
{
    char path[256], page[PAGE];
    snprintf(path, sizeof path, "%s/%s", files_dir, name);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die(path);
    memset(page, letter, sizeof page);
    for (long i = first; i < first + count; i++)
        if (pwrite(fd, page, sizeof page, i * PAGE) != sizeof page)
            die("pwrite");
    close(fd);
}

RT void answer_file(int q, const char *name, long page)
{
    char path[256], c = 0;
    snprintf(path, sizeof path, "%s/%s", files_dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, &c, 1, page * PAGE) != 1)
        die(path);
    close(fd);
    answer_letter(q, 0, c);
}

/* exec: a fresh image of this program, which acknowledges the step and exits. */
RT void do_exec(void)
{
    char fd[16];
    snprintf(fd, sizeof fd, "%d", ack_pipe[1]);
    execl("/proc/self/exe", "learn-exec", "--ack", fd, (char *)NULL);
    die("execl");
}

RT int step(int *me, int n);
RT void machine_step(int n);

RT void serve(int me)
{
    for (;;) {
        int n;
        if (read(cmd_pipe[me][0], &n, sizeof n) != sizeof n)
            _exit(0);
        int who = me;
        int acked = step(&who, n);
        if (who != me) {        /* a fork child: it goes on as the new process */
            me = who;
            continue;
        }
        if (!acked)
            send_ack(ack_pipe[1], n, 0);
    }
}

/* vfork: the child runs on its own stack in the parent's memory until it execs or exits. */
static char vfork_stack[1 << 16] __attribute__((aligned(16)));
struct vfork_arg { int step, child; };

RT int vfork_main(void *arg)
{
    struct vfork_arg *v = arg;
    int me = v->child;
    send_ack(ack_pipe[1], v->step, getpid());
    serve(me);
    return 0;
}

RT int do_fork(int *me, int n, int child)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        *me = child;
        return 1;
    }
    kid[child] = pid;
    send_ack(ack_pipe[1], n, pid);
    return 1;
}

RT int do_vfork(int n, int child)
{
    static struct vfork_arg v;
    v.step = n;
    v.child = child;
    pid_t pid = clone(vfork_main, vfork_stack + sizeof vfork_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &v);
    if (pid < 0)
        die("clone");
    kid[child] = pid;
    return 1;   /* the child acknowledged the step; its exec or exit was its own step */
}

static pid_t pidfd[NPROC];

/* Wait until process p acknowledges step n or dies; returns the pid an ack carried. */
RT int wait_done(int p)
{
    struct pollfd fds[2] = {{ack_pipe[0], POLLIN, 0}, {pidfd[p], POLLIN, 0}};
    struct ack a = {0, 0};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            die("poll");
        if (fds[0].revents & POLLIN) {
            if (read(ack_pipe[0], &a, sizeof a) != sizeof a)
                die("ack");
            return a.pid;
        }
        if (fds[1].revents & (POLLIN | POLLHUP))
            return 0;
    }
}

RT void watch(int p, pid_t pid)
{
    pidfd[p] = (pid_t)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd[p] < 0)
        die("pidfd_open");
}

RT void setup(void)
{
    cpu_set_t one;
    int cpu = sched_getcpu();
    CPU_ZERO(&one);
    CPU_SET(cpu < 0 ? 0 : cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
    for (int i = 0; i < NPROC; i++)
        if (pipe(cmd_pipe[i]) < 0)
            die("pipe");
    if (pipe(ack_pipe) < 0)
        die("pipe");
    blk = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (blk == MAP_FAILED)
        die("mmap");
    snprintf(files_dir, sizeof files_dir, "/var/tmp/cowscope-learn-XXXXXX");
    if (!mkdtemp(files_dir)) {
        snprintf(files_dir, sizeof files_dir, "/tmp/cowscope-learn-XXXXXX");
        if (!mkdtemp(files_dir))
            die("mkdtemp");
    }
    /* the zero page's PFN: read a never-touched page, it maps the zero page */
    volatile char *probe = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED)
        die("mmap");
    (void)probe[0];
    zero_pfn = proc_u64("/proc/self/pagemap", (unsigned long)probe / PAGE) & PM_PFN;
    have_pfn = zero_pfn != 0 && access("/proc/kpagecount", R_OK) == 0 && access("/proc/kpageflags", R_OK) == 0;
    munmap((void *)probe, PAGE);
    signal(SIGSEGV, on_segv);
}

RT void cleanup(pid_t first)
{
    for (int i = 0; i < NPROC; i++)
        if (pidfd[i] > 0)
            syscall(SYS_pidfd_send_signal, pidfd[i], SIGKILL, NULL, 0);
    waitpid(first, NULL, 0);
    for (int i = 0; i < NFILE; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", files_dir, FILE_NAMES[i]);
        unlink(path);
    }
    rmdir(files_dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--ack")) {   /* the image an exec step runs */
        send_ack(atoi(argv[2]), -1, getpid());
        _exit(0);
    }
    setup();
    out("%s\n", TITLE);
    out("%s\n", have_pfn ? "PFNs, map counts and page flags: readable (exact answers)"
                         : "not root: no PFNs, map counts or page flags; answers needing them print ?");
    pid_t first = fork();
    if (first < 0)
        die("fork");
    if (first == 0)
        serve(0);
    watch(0, first);
    for (int n = 0; n < NSTEPS; n++) {
        if (ACTOR[n] < 0) {
            machine_step(n);
            continue;
        }
        int v = n;
        if (write(cmd_pipe[ACTOR[n]][1], &v, sizeof v) != sizeof v)
            die("command");
        int pid = wait_done(ACTOR[n]);
        if (CHILD[n] >= 0)
            watch(CHILD[n], pid);
    }
    cleanup(first);
    return 0;
}
