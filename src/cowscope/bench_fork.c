/* cowscope bench: the real kernel's side of the fork/CoW benchmark.
 *
 * usage: bench_fork PAGES REPEATS
 * Maps PAGES private anonymous pages, fills them with one byte (all resident), then REPEATS times:
 *   fork   - time of fork() in the parent (page tables copied, PTEs write-protected); the child
 *            exits at once;
 *   cow    - fork again; the child writes one byte to every page (PAGES copy-on-write faults)
 *            and reports the time of that loop through a pipe.
 * Prints one line per measurement: "fork NS" and "cow NS" (nanoseconds, CLOCK_MONOTONIC).
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

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PAGES REPEATS\n", argv[0]);
		return 2;
	}
	long pages = atol(argv[1]);
	int repeats = atoi(argv[2]);
	long psz = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)pages * psz;
	volatile char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	madvise((void *)buf, len, MADV_NOHUGEPAGE); /* 4 KiB pages, as the model */
	memset((void *)buf, 0x5a, len);

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
