/* cowscope native malloc harness: run a malloc-cases operation file on the real glibc.
 *
 * Usage: malloc_harness OPS_FILE [STATE_FILE]
 *        malloc_harness --bench OPS_FILE REPEAT   (m/f only, timed, no per-op output)
 *
 * Prints one line per operation in the `.expected` format of tests/fixtures/malloc-cases
 * (the Python wrapper adds the `# stderr:` and `# exit:` lines).  With STATE_FILE, dumps the
 * arena (bins, tcache, parameters) after every operation in the `.state` format.
 *
 * Threads: a line may start with a thread number; `p T` creates thread T (pthread_create with
 * default attributes, from the line's thread), `e` ends the line's thread (it returns), `j T`
 * joins T.  Each thread runs its operations itself, one thread at a time in the file's order
 * (the main thread hands an operation over and waits for it), so the run is deterministic.
 * Files with threads also print the calling thread's arena (`ar=`, `atop=`, `asys=`), heaps
 * of non-main arenas named `A<k>` / `A<k>.<j>` (see ptmalloc/labels.py).
 *
 * The harness never allocates on the heap itself: the ops file is read into .bss, output is
 * formatted by hand and written with write(2).  main_arena and mp_ are located by scanning
 * libc's writable data for their statically initialised contents, the tcache pointer through
 * libc's TLS block (dl_iterate_phdr), so no debug symbols are needed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "malloc_harness.h"

#define MAX_IDS (1 << 20)
#define MAX_OPS_BYTES (32 << 20)
#define MAX_MAPS 65536

static char ops_buf[MAX_OPS_BYTES];
static char maps_buf[1 << 20];
static void *ptrs[MAX_IDS];
static uintptr_t map_base[MAX_MAPS];
static int map_k[MAX_MAPS];
static int n_live, next_k;
static uintptr_t H, A, MP, TLS_BLOCK;
static int state_fd = -1;

/* ---- output ------------------------------------------------------------------------------ */
static char out[1 << 16];
static size_t outn;

static void flush_to(int fd) {
    size_t off = 0;
    while (off < outn) {
        ssize_t n = write(fd, out + off, outn - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    outn = 0;
}
static void puts_(const char *s) {
    while (*s && outn < sizeof out - 1) out[outn++] = *s++;
}
static void hex(uint64_t v) {
    char t[20];
    int n = 0;
    puts_("0x");
    do { t[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    while (n) out[outn++] = t[--n];
}
static void dec(int64_t v) {
    char t[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    if (v < 0) puts_("-");
    do { t[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (n) out[outn++] = t[--n];
}
static void hptr(uintptr_t p) {  /* 0, A+off, H+off */
    if (p == 0) { puts_("0"); return; }
    if (p >= A && p < A + 0x898) { puts_("A+"); hex(p - A); return; }
    if (threaded && put_heap_addr(p)) return;
    if (p >= H) { puts_("H+"); hex(p - H); return; }
    hex(p);
}

/* ---- glibc internals we read ----------------------------------------------------------- */
#define U64(a) (*(volatile uint64_t *)(uintptr_t)(a))
#define U32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define U16(a) (*(volatile uint16_t *)(uintptr_t)(a))
#define CSIZE(p) (U64((p) + 8) & ~(uint64_t)7)

static int find_tls(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    if (info->dlpi_name && strstr(info->dlpi_name, "libc.so.6")) {
        TLS_BLOCK = (uintptr_t)info->dlpi_tls_data;
        return 1;
    }
    return 0;
}

static void locate_libc_state(void) {
    int fd = open("/proc/self/maps", O_RDONLY);
    size_t n = 0;
    ssize_t k;
    while (fd >= 0 && (k = read(fd, maps_buf + n, sizeof maps_buf - 1 - n)) > 0) n += (size_t)k;
    if (fd >= 0) close(fd);
    maps_buf[n] = 0;
    for (char *line = maps_buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strstr(line, "libc.so.6") && strstr(line, " rw-p ")) {
            uintptr_t lo = strtoull(line, NULL, 16), hi = strtoull(strchr(line, '-') + 1, NULL, 16);
            for (uintptr_t x = lo; x + 0x898 <= hi; x += 8) {
                if (!A && U64(x + 2160) == x && U64(x + 2176) == 1) A = x;
                if (!MP && U64(x) == 0x20000 && U64(x + 8) == 0x20000 && U64(x + 16) == 0x20000 &&
                    U64(x + 24) == 8 && U32(x + 64) == 65536 && U64(x + 104) == 64 &&
                    U64(x + 112) == 1032 && U64(x + 120) == 7)
                    MP = x;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    dl_iterate_phdr(find_tls, NULL);
}

static uintptr_t tcache_ptr(void) {
    /* libc TLS: tcache at +0x48, thread_arena at +0x58 (checked against &main_arena). */
    if (!TLS_BLOCK) return 0;
    if (U64(TLS_BLOCK + 0x58) == A) return U64(TLS_BLOCK + 0x48);
    for (uintptr_t off = 0x10; off < 0x90; off += 8)
        if (U64(TLS_BLOCK + off) == A) return U64(TLS_BLOCK + off - 0x10);
    return 0;
}

static void dump_state(int n) {
    uintptr_t top = U64(A + 96);
    puts_("== "); dec(n); puts_("\nbrk=H+"); hex((uintptr_t)sbrk(0) - H);
    puts_(" top="); hptr(top);
    if (top && top != A + 0x60) { puts_(" topsz="); hex(U64(top + 8)); }
    puts_(" last_remainder="); hptr(U64(A + 104));
    puts_(" system_mem="); hex(U64(A + 2184));
    puts_(" have_fastchunks="); dec((int32_t)U32(A + 8));
    puts_(" binmap=");
    for (int i = 0; i < 4; i++) { if (i) puts_(","); hex(U32(A + 2144 + 4 * i)); }
    puts_("\nmp: mmap_threshold="); hex(U64(MP + 16));
    puts_(" trim_threshold="); hex(U64(MP)); puts_(" top_pad="); hex(U64(MP + 8));
    puts_(" n_mmaps="); dec((int32_t)U32(MP + 60)); puts_(" mmapped_mem="); hex(U64(MP + 80));
    puts_(" no_dyn_threshold="); dec((int32_t)U32(MP + 72));
    puts_(" sbrk_base="); hptr(U64(MP + 96)); puts_("\n");
    flush_to(state_fd);
    uintptr_t tc = tcache_ptr();
    for (int i = 0; tc && i < 64; i++) {
        unsigned cnt = U16(tc + 2 * i);
        uintptr_t e = U64(tc + 128 + 8 * i);
        if (!cnt && !e) continue;
        puts_("tcache["); dec(i); puts_("] csize="); hex((uint64_t)(i + 2) * 16);
        puts_(" count="); dec(cnt); puts_(":");
        for (unsigned j = 0; e && j <= cnt + 8; j++) {
            puts_(" "); hptr(e);
            e = (e >> 12) ^ U64(e);
        }
        puts_("\n");
        flush_to(state_fd);
    }
    for (int i = 0; i < 10; i++) {
        uintptr_t p = U64(A + 16 + 8 * i);
        if (!p) continue;
        puts_("fastbin["); dec(i); puts_("] csize="); hex((uint64_t)(i + 2) * 16); puts_(":");
        for (int j = 0; p && j < 100000; j++) {
            puts_(" "); hptr(p);
            p = ((p + 16) >> 12) ^ U64(p + 16);
            if (outn > sizeof out - 64) flush_to(state_fd);
        }
        puts_("\n");
        flush_to(state_fd);
    }
    for (int i = 1; i < 128; i++) {
        uintptr_t b = A + 0x60 + (uintptr_t)(i - 1) * 16, p = U64(b + 16);
        if (p == b || !p) continue;  /* !p: malloc not initialised yet (malloc_init_state) */
        if (i == 1) puts_("unsorted:");
        else { puts_("bin["); dec(i); puts_("]:"); }
        for (int j = 0; p != b && j < 100000; j++) {
            puts_(" "); hptr(p); puts_("/"); hex(U64(p + 8));
            p = U64(p + 16);
            if (outn > sizeof out - 64) flush_to(state_fd);
        }
        puts_("\n");
        flush_to(state_fd);
    }
}

/* ---- mmapped chunk numbering (k-th mapping in creation order) ------------------------------ */
static uintptr_t mmap_base_of(void *mem) {
    uintptr_t p = (uintptr_t)mem - 16;
    if (!mem || !(U64(p + 8) & 2)) return 0;
    return p - U64(p);
}
static int map_index(uintptr_t base) {
    for (int i = 0; i < n_live; i++)
        if (map_base[i] == base) return map_k[i];
    if (n_live < MAX_MAPS) { map_base[n_live] = base; map_k[n_live++] = next_k; }
    return next_k++;
}
static void map_drop(uintptr_t base) {
    for (int i = 0; base && i < n_live; i++)
        if (map_base[i] == base) { map_base[i] = map_base[--n_live]; map_k[i] = map_k[n_live]; return; }
}

static void put_ret(void *mem) {
    puts_("ret=");
    if (!mem) { puts_("0"); return; }
    uintptr_t base = mmap_base_of(mem);
    if (base) { puts_("M"); dec(map_index(base)); puts_("+"); hex((uintptr_t)mem - base); }
    else if (!put_heap_addr((uintptr_t)mem)) { puts_("H+"); hex((uintptr_t)mem - H); }
    puts_(" usz="); hex(malloc_usable_size(mem));
    if (base) {
        uintptr_t p = (uintptr_t)mem - 16;
        puts_(" mlen="); hex(U64(p) + CSIZE(p));
    }
}

static void put_status(void) {
    uintptr_t top = U64(A + 96);
    puts_(" brk="); hex((uintptr_t)sbrk(0) - H);
    puts_(" top=");
    if (!top || top == A + 0x60) puts_("none");
    else { puts_("H+"); hex(top - H); puts_(":"); hex(CSIZE(top)); }
    puts_(" mm="); dec((int32_t)U32(MP + 60)); puts_(":"); hex(U64(MP + 80));
    puts_(" thr="); hex(U64(MP + 16)); puts_(" trim="); hex(U64(MP));
}

static long start_brk_from_proc(void) {
    int fd = open("/proc/self/stat", O_RDONLY);
    char buf[2048];
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *s = strrchr(buf, ')');
    int field = 2;
    while (s && *s) {
        if (*s == ' ') {
            field++;
            if (field == 47) return strtol(s + 1, NULL, 10);
        }
        s++;
    }
    return -1;
}

/* --bench OPS_FILE REPEAT: time only m/f operations (no output per op); print best ns. */
static int op_kind[1 << 22];
static uint32_t op_id[1 << 22];
static size_t op_size[1 << 22];

static int bench(const char *path, int repeat) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 2;
    size_t len = 0;
    ssize_t k;
    while ((k = read(fd, ops_buf + len, sizeof ops_buf - 1 - len)) > 0) len += (size_t)k;
    close(fd);
    ops_buf[len] = 0;
    int n = 0;
    for (char *s = ops_buf; *s && n < (1 << 22);) {
        char kind = *s;
        char *e;
        unsigned long id = strtoul(s + 1, &e, 10);
        size_t size = kind == 'm' ? strtoull(e, &e, 10) : 0;
        op_kind[n] = kind; op_id[n] = (uint32_t)(id & (MAX_IDS - 1)); op_size[n++] = size;
        s = strchr(s, '\n');
        if (!s) break;
        s++;
    }
    uint64_t best = ~(uint64_t)0;
    for (int r = 0; r < repeat; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
        for (int i = 0; i < n; i++) {
            if (op_kind[i] == 'm') ptrs[op_id[i]] = malloc(op_size[i]);
            else { free(ptrs[op_id[i]]); ptrs[op_id[i]] = NULL; }
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
        uint64_t ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)(t1.tv_nsec - t0.tv_nsec);
        if (ns < best) best = ns;
    }
    puts_(""); dec((int64_t)best); puts_(" ns for "); dec(n); puts_(" ops\n");
    flush_to(1);
    return 0;
}

/* ---- one operation, run by whichever thread the line names --------------------------------- */
static int run_op(struct op *o) {
    size_t id = (size_t)o->a[0] & (MAX_IDS - 1);
    o->mem = NULL;
    o->has_ret = 1;
    switch (o->kind) {
    case 'm': o->mem = malloc((size_t)o->a[1]); break;
    case 'c': o->mem = calloc((size_t)o->a[1], (size_t)o->a[2]); break;
    case 'a': o->mem = memalign((size_t)o->a[1], (size_t)o->a[2]); break;
    case 'r': {
        uintptr_t old_base = mmap_base_of(ptrs[id]);
        o->mem = realloc(ptrs[id], (size_t)o->a[1]);
        if (old_base && (o->mem || o->a[1] == 0) && (!o->mem || mmap_base_of(o->mem) != old_base))
            map_drop(old_base);
        break;
    }
    case 'f': case 'x': {
        uintptr_t base = mmap_base_of(ptrs[id]);
        free(ptrs[id]);
        map_drop(base);
        if (o->kind == 'f') ptrs[id] = NULL;
        o->has_ret = 0;
        break;
    }
    case 'F': free((char *)ptrs[id] + o->a[1]); o->has_ret = 0; break;
    case 't': malloc_trim((size_t)o->a[0]); o->has_ret = 0; break;
    case 'o': mallopt((int)o->a[0], (int)o->a[1]); o->has_ret = 0; break;
    case 'w': *(uint64_t *)((char *)ptrs[id] + o->a[1]) = (uint64_t)o->a[2]; o->has_ret = 0; break;
    case 's': sbrk((intptr_t)o->a[0]); o->has_ret = 0; break;
    case 'p': o->has_ret = 0; return thread_create((int)o->a[0]);
    case 'j': o->has_ret = 0; return thread_join((int)o->a[0]);
    default: return -1;
    }
    if (o->has_ret) ptrs[id] = o->mem;
    return 0;
}

/* Split a line into tokens; returns how many (at most 6). */
static int tokens(char *line, char **tok) {
    int nt = 0;
    for (char *s = line; *s && nt < 6;) {
        while (*s == ' ' || *s == '\t' || *s == '\r') *s++ = 0;
        if (!*s) break;
        tok[nt++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r') s++;
    }
    return nt;
}

/* Run one line: optional thread number, then the operation; print its result line. */
static int run_line(int n, char **tok, int nt) {
    struct op o = {0};
    char **t = tok;
    if (*t[0] >= '0' && *t[0] <= '9') { o.thread = atoi(t[0]); t++; nt--; }
    if (nt < 1) return -1;
    o.kind = t[0][0];
    for (int i = 1; i < nt && i < 5; i++) o.a[i - 1] = (int64_t)strtoull(t[i], NULL, 0);
    dec(n); puts_(" ");
    for (int i = 0; i < nt + (t - tok); i++) { if (i) puts_(" "); puts_(tok[i]); }
    puts_(" => ");  /* kept in the buffer: an operation that aborts leaves no line */
    int rc = o.thread == 0 && o.kind != 'e' ? run_op(&o) : thread_run(o.thread, &o);
    if (rc != 0) return rc;
    if (threaded) labels_refresh();
    if (o.has_ret) put_ret(o.mem);
    else puts_("ret=-");
    put_status();
    if (threaded) put_arena(o.thread);
    puts_("\n");
    flush_to(1);
    if (state_fd >= 0) dump_state(n);
    return 0;
}

static size_t read_ops(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return (size_t)-1;
    size_t len = 0;
    ssize_t k;
    while ((k = read(fd, ops_buf + len, sizeof ops_buf - 1 - len)) > 0) len += (size_t)k;
    close(fd);
    ops_buf[len] = 0;
    return len;
}

/* Blank out comments; count operations; note whether any line names a thread. */
static int count_ops(void) {
    int nops = 0;
    for (char *line = ops_buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        for (char *h = strchr(line, '#'); h && *h; h++) *h = ' ';
        char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (*s) nops++;
        if ((*s >= '0' && *s <= '9') || *s == 'p' || *s == 'e' || *s == 'j') threaded = 1;
        line = nl ? nl + 1 : NULL;
        if (nl) *nl = '\n';
    }
    return nops;
}

int main(int argc, char **argv) {
    if (argc > 3 && strcmp(argv[1], "--bench") == 0) return bench(argv[2], atoi(argv[3]));
    H = (uintptr_t)sbrk(0);
    long start_brk = start_brk_from_proc();
    if (argc < 2) {
        static const char usage[] = "usage: malloc_harness OPS_FILE [STATE_FILE]\n";
        write(2, usage, sizeof usage - 1);
        return 2;
    }
    if (read_ops(argv[1]) == (size_t)-1) { write(2, "cannot open ops file\n", 21); return 2; }
    if (argc > 2) state_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (state_fd >= 0) { puts_("# H="); hex(H); puts_("\n"); flush_to(state_fd); }
    locate_libc_state();
    if (!A || !MP) { write(2, "cannot locate main_arena/mp_ in libc\n", 37); return 3; }
    int nops = count_ops();
    puts_("# harness glibc-"); puts_(gnu_get_libc_version()); puts_(" ops="); dec(nops);
    puts_(" heap_untouched_at_main="); puts_(start_brk >= 0 && (uintptr_t)start_brk == H ? "yes" : "no");
    puts_(" heap_base_page_aligned="); puts_((H & 4095) == 0 ? "yes" : "no"); puts_("\n");
    flush_to(1);
    int n = 0;
    for (char *line = ops_buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *tok[6];
        int nt = tokens(line, tok);
        line = nl ? nl + 1 : NULL;
        if (nt == 0) continue;
        if (run_line(n, tok, nt) != 0) { write(2, "bad op\n", 7); return 2; }
        n++;
    }
    puts_("# end\n");
    flush_to(1);
    return 0;
}
