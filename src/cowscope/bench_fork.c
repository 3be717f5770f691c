/* cowscope bench: the real kernel's side of the fork/CoW benchmark.
 *
 * usage: bench_fork PAGES REPEATS [thp]
 * Maps PAGES private anonymous pages, fills them with one byte (all resident), then REPEATS times:
 *   fork   - time of fork() in the parent (page tables copied, PTEs write-protected); the child
 *            exits at once;
 *   cow    - fork again; the child writes one byte to every page (PAGES copy-on-write faults)
 *            and reports the time of that loop through a pipe.
 * Prints one line per measurement: "fork NS" and "cow NS" (nanoseconds, CLOCK_MONOTONIC).
 * With "thp" the buffer is 2 MiB-aligned with MADV_HUGEPAGE (PMD-mapped THPs where the kernel's THP
 * mode allows it; "thp_kb KB" reports AnonHugePages of the buffer) and only fork is timed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void reap(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		;
}

/* AnonHugePages of this process, in kB (smaps_rollup) */
static long anon_huge_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "thp") == 0)) {
		fprintf(stderr, "usage: %s PAGES REPEATS [thp]\n", argv[0]);
		return 2;
	}
	long pages = atol(argv[1]);
	int repeats = atoi(argv[2]);
	int thp = argc == 4;
	long psz = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)pages * psz, huge = 2UL << 20;
	char *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	volatile char *buf = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	/* 4 KiB pages, as the model's default; or THPs for the huge-page figure */
	madvise((void *)buf, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset((void *)buf, 0x5a, len);
	if (thp) {
		printf("thp_kb %ld\n", anon_huge_kb());
		for (int r = 0; r < repeats; r++) {
			int64_t t0 = now_ns();
			pid_t pid = fork();
			if (pid == 0)
				_exit(0);
			int64_t t1 = now_ns();
			if (pid < 0) {
				perror("fork");
				return 1;
			}
			reap(pid);
			printf("fork %lld\n", (long long)(t1 - t0));
		}
		return 0;
	}

	for (int r = 0; r < repeats; r++) {
		int64_t t0 = now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		int64_t t1 = now_ns();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		reap(pid);
		printf("fork %lld\n", (long long)(t1 - t0));

		int fds[2];
		if (pipe(fds) < 0) {
			perror("pipe");
			return 1;
		}
		pid = fork();
		if (pid == 0) {
			int64_t c0 = now_ns();
			for (long i = 0; i < pages; i++)
				buf[i * psz] = (char)(i + 1);
			int64_t c1 = now_ns() - c0;
			if (write(fds[1], &c1, sizeof c1) != sizeof c1)
				_exit(1);
			_exit(0);
		}
		int64_t cow = 0;
		if (read(fds[0], &cow, sizeof cow) != sizeof cow) {
			fprintf(stderr, "child did not report\n");
			return 1;
		}
		close(fds[0]);
		close(fds[1]);
		reap(pid);
		printf("cow %lld\n", (long long)cow);
		fflush(stdout);
	}
	return 0;
}
