/* cowscope native malloc harness: what malloc_harness.c and malloc_threads.c share.
 * The two are compiled as one translation unit (malloc_harness.c first, see ptmalloc/native.py). */
#ifndef COWSCOPE_MALLOC_HARNESS_H
#define COWSCOPE_MALLOC_HARNESS_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>

/* One line of the ops file: the calling thread (0: the initial one), the call, its result. */
struct op {
    int thread;
    char kind;
    int64_t a[4];
    void *mem;
    int has_ret;
};

static int threaded;   /* the file names threads: results show each call's arena */

/* malloc_harness.c */
static int run_op(struct op *o);
/* malloc_threads.c */
static int thread_create(int t);
static int thread_join(int t);
static int thread_run(int t, struct op *o);
static void labels_refresh(void);
static int put_heap_addr(uintptr_t p);
static void put_arena(int t);
#endif
