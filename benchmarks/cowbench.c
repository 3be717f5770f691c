/* The overhead benchmark's workload: map N pages, write them all, fork; the child writes one byte
 * per page (N copy-on-write copies) and prints how long that took in ns. Usage: cowbench N */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PS 4096L

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 262144;
	char *buf = mmap(NULL, n * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	madvise(buf, n * PS, MADV_NOHUGEPAGE);
	for (long i = 0; i < n; i++)
		buf[i * PS] = 1;
	pid_t pid = fork();
	if (pid == 0) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (long i = 0; i < n; i++)
			buf[i * PS] = 2;
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
		fflush(stdout);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	return 0;
}
