/* cowscope agent: memory syscalls, loads and stores, glibc malloc (see agent.h). */
#include "agent.h"

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
	if (fl & MMAP_FIXED)
		flags |= MAP_FIXED;
	if (fl & MMAP_POPULATE)
		flags |= MAP_POPULATE;
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

void op_mmap(struct cmd *c)
{
	char path[4096];
	int64_t r;
	int e = 0;

	path[0] = 0;
	if (c->len)
		read_text(c, path, sizeof(path));
	r = do_mmap(c, path);
	if (r < 0 && r > -4096) {
		e = (int)-r;
		r = -1;
	}
	reply(T_RESULT, r, e, 0);
}

void op_munmap(struct cmd *c) { reply_rc(munmap(ptr(c->a), c->b)); }
void op_mprotect(struct cmd *c) { reply_rc(mprotect(ptr(c->a), c->b, prot_of(c->c))); }
void op_madvise(struct cmd *c) { reply_rc(madvise(ptr(c->a), c->b, (int)c->c)); }
void op_mlock(struct cmd *c) { reply_rc(mlock(ptr(c->a), c->b)); }
void op_munlock(struct cmd *c) { reply_rc(munlock(ptr(c->a), c->b)); }

void op_mremap(struct cmd *c)
{
	/* e: MREMAP_FIXED to that address (with MREMAP_MAYMOVE) */
	void *p = c->e ? mremap(ptr(c->a), c->b, c->c, (c->d ? MREMAP_MAYMOVE : 0) | MREMAP_FIXED, ptr(c->e))
		       : mremap(ptr(c->a), c->b, c->c, c->d ? MREMAP_MAYMOVE : 0);
	if (p == MAP_FAILED)
		reply(T_RESULT, -1, errno, 0);
	else
		reply(T_RESULT, (int64_t)(uintptr_t)p, 0, 0);
}

/* brk(2) through glibc: the break after the call (unchanged when refused). */
void op_brk(struct cmd *c)
{
	int r = 0;
	if (c->a)
		r = brk(ptr(c->a));
	reply(T_RESULT, (int64_t)(uintptr_t)sbrk(0), r ? errno : 0, 0);
}

void op_sbrk(struct cmd *c)
{
	void *old = sbrk((intptr_t)c->a);
	if (old == (void *)-1)
		reply(T_RESULT, -1, errno, 0);
	else
		reply(T_RESULT, (int64_t)(uintptr_t)old, 0, 0);
}

/* Load c->b bytes from c->a, sent back in T_DATA pieces of at most BUF_SIZE. */
void op_read(struct cmd *c)
{
	const unsigned char *src = ptr(c->a);
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
}

/* Store the c->b payload bytes at c->a. */
void op_write(struct cmd *c)
{
	unsigned char *dst = ptr(c->a);
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
}

void op_fill(struct cmd *c)
{
	volatile unsigned char *dst = ptr(c->a);
	for (uint64_t i = 0; i < c->b; i++)
		dst[i] = (unsigned char)c->c;
	reply(T_RESULT, 0, 0, 0);
}

/* One access per page of [c->a, c->a + c->b): a load, or (c->c) a store of the byte there. */
void op_touch(struct cmd *c)
{
	uint64_t start = c->a & ~(PAGE - 1);
	uint64_t end = c->a + c->b;
	uint64_t sum = 0;
	for (uint64_t va = start; va < end; va += PAGE) {
		unsigned char *p = ptr(va < c->a ? c->a : va);
		if (c->c)
			__atomic_fetch_or(p, 0, __ATOMIC_RELAXED); /* one write access, no read first */
		else
			sum += *(volatile unsigned char *)p;
	}
	reply(T_RESULT, (int64_t)sum, 0, 0);
}

void op_malloc(struct cmd *c) { errno = 0; reply_ptr(malloc(c->a)); }
void op_calloc(struct cmd *c) { errno = 0; reply_ptr(calloc(c->a, c->b)); }
void op_realloc(struct cmd *c) { errno = 0; reply_ptr(realloc(ptr(c->a), c->b)); }
void op_memalign(struct cmd *c) { errno = 0; reply_ptr(memalign(c->a, c->b)); }
void op_aligned_alloc(struct cmd *c) { errno = 0; reply_ptr(aligned_alloc(c->a, c->b)); }

void op_free(struct cmd *c)
{
	free(ptr(c->a));
	reply(T_RESULT, 0, 0, 0);
}

void op_usable(struct cmd *c)
{
	reply(T_RESULT, (int64_t)malloc_usable_size(ptr(c->a)), 0, 0);
}

/* posix_memalign: ret = its error number (0 on success), aux = the pointer. */
void op_posix_memalign(struct cmd *c)
{
	void *p = NULL;
	int err = posix_memalign(&p, c->a, c->b);
	reply(T_RESULT, err, 0, (uint64_t)(uintptr_t)p);
}

void op_mallopt(struct cmd *c)
{
	reply(T_RESULT, mallopt((int)(int64_t)c->a, (int)(int64_t)c->b), 0, 0);
}

void op_malloc_trim(struct cmd *c)
{
	reply(T_RESULT, malloc_trim(c->a), 0, 0);
}

/* struct mallinfo2 as one T_DATA piece (ten size_t fields, in the struct's order). */
void op_mallinfo2(struct cmd *c)
{
	struct mallinfo2 mi = mallinfo2();
	(void)c;
	reply(T_DATA, (int64_t)sizeof(mi), 0, 0);
	if (write_all(ctrl, &mi, sizeof(mi)))
		_exit(114);
	reply(T_RESULT, 0, 0, 0);
}

/* malloc_stats(3): glibc prints it on stderr (this process's .err file). */
void op_malloc_stats(struct cmd *c)
{
	(void)c;
	malloc_stats();
	reply(T_RESULT, 0, 0, 0);
}
