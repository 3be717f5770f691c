/* cowscope native malloc harness: threads and the names of non-main arenas' heaps.
 *
 * Thread T (created by a `p T` line) runs worker(): it waits for an operation, runs it with
 * run_op() on its own stack, TLS, tcache and arena, and hands the result back, so exactly one
 * thread runs at a time, in the file's order.  `e` ends the thread (glibc's thread freeres: its tcache back to the arenas, its arena to the free
 * list); the main thread waits until the kernel has cleared the thread's tid.  The thread
 * returns from its start routine rather than calling pthread_exit, whose first use dlopens
 * libgcc_s for unwinding (mallocs this model does not make).  Heaps are named
 * as ptmalloc/labels.py names them: arena k (creation order) has A<k>, later heaps A<k>.<j>.
 */
#include "malloc_harness.h"
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>

#define MAX_THREADS 4096
#define HEAP_MAX ((uintptr_t)64 << 20)
#define PD_TID 0x2d0          /* offsetof(struct pthread, tid) in glibc 2.36 */

struct hthread {
    pthread_t id;
    sem_t go, done;
    uintptr_t tls;             /* libc's static TLS block of the thread */
    int state;                 /* 0 never created, 1 running, 2 exited, 3 joined */
};
static struct hthread thr[MAX_THREADS];
static struct op *cur_op;

static int my_libc_tls(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "libc.so.6")) {
        *(uintptr_t *)data = (uintptr_t)info->dlpi_tls_data;
        return 1;
    }
    return 0;
}

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    dl_iterate_phdr(my_libc_tls, &thr[t].tls);
    sem_post(&thr[t].done);                    /* ready */
    for (;;) {
        sem_wait(&thr[t].go);
        if (cur_op->kind == 'e') {            /* return, not pthread_exit: its unwinder */
            thr[t].state = 2;                  /* would dlopen libgcc_s (mallocs) first */
            return NULL;
        }
        cur_op->has_ret = run_op(cur_op);      /* rc travels back in has_ret, see thread_run */
        sem_post(&thr[t].done);
    }
    return NULL;
}

static int thread_create(int t) {
    if (t <= 0 || t >= MAX_THREADS || thr[t].state != 0) return -1;
    sem_init(&thr[t].go, 0, 0);
    sem_init(&thr[t].done, 0, 0);
    thr[t].state = 1;
    if (pthread_create(&thr[t].id, NULL, worker, (void *)(intptr_t)t) != 0) return -1;
    sem_wait(&thr[t].done);
    return 0;
}

static int thread_join(int t) {
    if (t <= 0 || t >= MAX_THREADS || thr[t].state != 2) return -1;
    pthread_join(thr[t].id, NULL);
    thr[t].state = 3;
    return 0;
}

/* Wait until the exiting thread is gone: the kernel clears its tid (CLONE_CHILD_CLEARTID). */
static void wait_gone(int t) {
    volatile int *tidp = (volatile int *)((char *)thr[t].id + PD_TID);
    struct timespec ms = {0, 1000000};
    int tid;
    while ((tid = *tidp) != 0) syscall(SYS_futex, tidp, FUTEX_WAIT, tid, &ms, NULL, 0);
}

static int thread_run(int t, struct op *o) {
    if (t < 0 || t >= MAX_THREADS || (t > 0 && thr[t].state != 1) || (t == 0 && o->kind == 'e')) return -1;
    cur_op = o;
    sem_post(&thr[t].go);
    if (o->kind == 'e') {
        wait_gone(t);
        o->has_ret = 0;
        return 0;
    }
    sem_wait(&thr[t].done);
    int rc = o->has_ret;                       /* run_op's return value */
    o->has_ret = strchr("mcar", o->kind) != NULL;
    return rc;
}

/* ---- heap names ------------------------------------------------------------------------------ */
#define MAX_HEAPS 8192
static uintptr_t heap_base[MAX_HEAPS];
static int heap_k[MAX_HEAPS], heap_j[MAX_HEAPS], n_heaps;
static int heap_later[MAX_THREADS + 2];
static uintptr_t arena_of_k[MAX_THREADS + 2];
static int n_arenas;

static int heap_find(uintptr_t base) {
    for (int i = 0; i < n_heaps; i++)
        if (heap_base[i] == base) return i;
    return -1;
}

/* The heaps of arena av (number k), oldest first, named if new; live[] marks them. */
static void label_chain(uintptr_t av, int k, char *live) {
    static uintptr_t chain[4096];
    int n = 0;
    for (uintptr_t h = U64(av + 96) & ~(HEAP_MAX - 1); h && n < 4096; h = U64(h + 8)) chain[n++] = h;
    while (n-- > 0) {
        int i = heap_find(chain[n]);
        if (i < 0 && n_heaps < MAX_HEAPS) {
            i = n_heaps++;
            heap_base[i] = chain[n];
            heap_k[i] = k;
            heap_j[i] = chain[n] == av - 0x30 ? 0 : ++heap_later[k];
        }
        if (i >= 0) live[i] = 1;
    }
}

static void labels_refresh(void) {
    static uintptr_t list[MAX_THREADS];
    static char live[MAX_HEAPS];
    int n = 0;
    for (uintptr_t av = U64(A + 2160); av != A && n < MAX_THREADS; av = U64(av + 2160)) list[n++] = av;
    n_arenas = n;
    memset(live, 0, sizeof live);
    for (int i = 0; i < n; i++) {
        arena_of_k[n - i] = list[i];
        label_chain(list[i], n - i, live);
    }
    int m = 0;
    for (int i = 0; i < n_heaps; i++)
        if (live[i]) { heap_base[m] = heap_base[i]; heap_k[m] = heap_k[i]; heap_j[m] = heap_j[i]; m++; }
    n_heaps = m;
}

/* A<k>[.<j>]+off for an address in a named heap; 0 if it is in none. */
static int put_heap_addr(uintptr_t p) {
    int i = heap_find(p & ~(HEAP_MAX - 1));
    if (i < 0) return 0;
    puts_("A"); dec(heap_k[i]);
    if (heap_j[i]) { puts_("."); dec(heap_j[i]); }
    puts_("+"); hex(p - heap_base[i]);
    return 1;
}

static void put_arena(int t) {
    uintptr_t tls = t == 0 ? TLS_BLOCK : (thr[t].state == 1 ? thr[t].tls : 0);
    uintptr_t av = tls ? U64(tls + 0x58) : 0;
    if (!av) { puts_(" ar=-"); return; }
    if (av == A) { puts_(" ar=main"); return; }
    int k = 0;
    for (int i = 1; i <= n_arenas; i++)
        if (arena_of_k[i] == av) k = i;
    uintptr_t top = U64(av + 96);
    puts_(" ar=A"); dec(k);
    puts_(" atop="); if (!put_heap_addr(top)) { puts_("H+"); hex(top - H); }
    puts_(":"); hex(CSIZE(top));
    puts_(" asys="); hex(U64(av + 2184));
}
