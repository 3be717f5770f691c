/* A small program whose copy-on-write writes come from known functions (tests of cowscope trace).
 * The parent fills a buffer and forks. The child writes the first half of the pages through
 * child_writes() (the store is the inlined touch_page()) and waits; the parent then writes the
 * second half in parent_writes() while the child still maps it: a copy in the parent. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#define PAGES 1024
#define PS 4096

static inline __attribute__((always_inline)) void touch_page(volatile char *p, char v) { *p = v; }

__attribute__((noinline)) void child_writes(volatile char *buf) {
	for (int i = 0; i < PAGES / 2; i++)
		touch_page(buf + (long)i * PS, 2);
}

__attribute__((noinline)) void parent_writes(volatile char *buf) {
	for (int i = PAGES / 2; i < PAGES; i++)
		buf[(long)i * PS] = 3;
}

int main(void) {
	char *buf = aligned_alloc(PS, (long)PAGES * PS);
	int done[2], go[2];
	char c = 0;
	memset(buf, 1, (long)PAGES * PS);
	if (pipe(done) || pipe(go))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		close(go[1]);
		child_writes(buf);
		if (write(done[1], &c, 1) != 1 || read(go[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	if (read(done[0], &c, 1) != 1)
		return 1;
	parent_writes(buf);
	usleep(300000); /* the child lives on a while too: tracers read mappings while processes live */
	close(go[1]);
	waitpid(pid, NULL, 0);
	return 0;
}
