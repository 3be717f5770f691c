/* The facts an answer is read from, and the answers as the program prints them. */

struct look {
    int present, file, excl;
    int zero;                  /* the zero page */
    long mapcount;             /* -1: unknown (no root) */
    int anon_excl;             /* PG_anon_exclusive; -1: unknown (no root) */
    unsigned long long pfn;
};

/* Without root the zero page is told by its contents: an anon page that is mapped more than
   once and holds 0 at its start. In these programs every anonymous page a region gets comes
   from a write, which stores a letter at the page's start (a single write) or over the whole
   page (memset), so only the zero page reads 0 there. */
RT struct look look_page(const char *addr)
{
    struct look l = {0, 0, 0, 0, -1, -1, 0};
    unsigned long long pm = proc_u64("/proc/self/pagemap", (unsigned long)addr / PAGE);
    l.present = (pm & PM_PRESENT) != 0;
    if (!l.present)
        return l;
    l.file = (pm & PM_FILE) != 0;
    l.excl = (pm & PM_EXCL) != 0;
    l.pfn = pm & PM_PFN;
    if (!have_pfn) {
        l.zero = !l.file && !l.excl && *(volatile const char *)addr == 0;
        return l;
    }
    l.zero = l.pfn == zero_pfn;
    l.mapcount = l.zero ? 0 : (long)proc_u64("/proc/kpagecount", l.pfn);
    if (!l.zero && !l.file)
        l.anon_excl = (proc_u64("/proc/kpageflags", l.pfn) & KPF_ANON_EXCLUSIVE) != 0;
    return l;
}

RT long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* What an access did to its page (explain.outcome). With root: same PFN and PG_anon_exclusive
   clear before the write is a reuse, set is no fault; without root the access's own minor
   faults (getrusage) tell a reuse (one) from nothing (none). */
RT const char *outcome(struct look b, struct look a, int segv, int write, int file_vma, long faults)
{
    if (segv)
        return "segv";
    if (a.file)
        return "page-cache";
    if (a.zero)
        return "zero-page";
    if (!write)
        return "none";
    if (!b.present)
        return file_vma ? "copy" : "zero-fill";
    if (b.file)
        return "copy";
    if (b.zero)
        return "zero-fill";
    if (have_pfn)
        return b.pfn != a.pfn ? "copy" : b.anon_excl ? "none" : "reuse";
    if (!b.excl)
        return "copy";      /* mapped more than once: never reused */
    return faults ? "reuse" : "none";
}

/* Why: the page's state before the access (explain.reason). */
RT const char *reason(struct look b, int file_vma, int segv, int write, long faults)
{
    if (segv)
        return "unmapped";
    if (file_vma && (!b.present || b.file))
        return "file";
    if (!b.present)
        return "untouched";
    if (b.zero)
        return "zero";
    if (!b.excl)
        return "shared";
    if (b.anon_excl >= 0)
        return b.anon_excl ? "own" : "once";
    if (!write)
        return NULL;        /* a read does not fault on a write-protected page */
    return faults ? "once" : "own";
}

RT void answer_outcome(int q, struct look b, struct look a, int segv, int write, int file_vma, long faults,
                       int why)
{
    const char *o = outcome(b, a, segv, write, file_vma, faults);
    const char *w = why ? reason(b, file_vma, segv, write, faults) : "";
    if (why)
        out("Q%d: %s (why: %s)%s\n", q, o ? o : "?", w ? w : "?", o && w ? "" : "  [needs root]");
    else
        out("Q%d: %s%s\n", q, o ? o : "?", o ? "" : "  [needs root]");
}

RT char page_char(struct look l)
{
    if (!l.present)
        return '.';
    if (l.file)
        return 'f';
    if (l.zero)
        return '0';
    if (!have_pfn)
        return l.excl ? '#' : '2';   /* shared, by 2 or more: the count needs root */
    if (l.mapcount <= 1)
        return '#';
    return l.mapcount >= 10 ? '+' : (char)('0' + l.mapcount);
}

RT void strip(const char *addr, long npages, char *buf)
{
    for (long i = 0; i < npages; i++)
        buf[i] = page_char(look_page(addr + i * PAGE));
    buf[npages] = 0;
}

/* The whole of a /proc file into `text`. */
RT long slurp(const char *path)
{
    int fd = open(path, O_RDONLY);
    long n = 0, r;
    if (fd < 0)
        die(path);
    while ((r = read(fd, text + n, sizeof text - 1 - n)) > 0)
        n += r;
    close(fd);
    text[n] = 0;
    return n;
}

/* A kB field of the smaps block of the VMA that starts at addr (-1: no such VMA). */
RT long smaps_kb(const char *addr, const char *field)
{
    char head[32];
    int hn = snprintf(head, sizeof head, "%lx-", (unsigned long)addr);
    size_t fl = strlen(field);
    slurp("/proc/self/smaps");
    for (char *line = text; *line; ) {
        char *next = strchr(line, '\n');
        if (!strncmp(line, head, hn)) {
            for (char *f = next ? next + 1 : line + strlen(line); *f; ) {
                char *end = strchr(f, '\n');
                if (!strncmp(f, field, fl) && f[fl] == ':')
                    return strtol(f + fl + 1, NULL, 10);
                if (strchr(f, '-') && strchr(f, '-') < strchr(f, ' '))
                    break;  /* the next VMA's header */
                if (!end)
                    break;
                f = end + 1;
            }
            return -1;
        }
        if (!next)
            break;
        line = next + 1;
    }
    return -1;
}

/* The [heap] and libc's writable data mapping (main_arena, mp_), from /proc/self/maps. */
RT int heap_and_libc(char **start, long *npages, int max)
{
    int n = 0;
    slurp("/proc/self/maps");
    for (char *line = text; *line && n < max; ) {
        char *next = strchr(line, '\n');
        if (next)
            *next = 0;
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
            (strstr(line, "[heap]") || (strstr(line, "libc.so") && perms[0] == 'r' && perms[1] == 'w'))) {
            start[n] = (char *)lo;
            npages[n++] = (long)((hi - lo) / PAGE);
        }
        if (!next)
            break;
        line = next + 1;
    }
    return n;
}

struct ranges { char *start[NREG + 8]; long npages[NREG + 8]; int n; };

RT struct ranges copy_ranges(void)
{
    struct ranges r;
    r.n = 0;
    for (int i = 0; i < NREG; i++)
        if (R[i]) {
            r.start[r.n] = R[i];
            r.npages[r.n++] = R_pages[i];
        }
    r.n += heap_and_libc(r.start + r.n, r.npages + r.n, 8);
    return r;
}

/* Per page: the PFN (0: not present). Without root, an encoding of what pagemap still shows
   that changes exactly when a page is replaced by a copy: a page mapped more than once (or a
   page-cache page) that becomes this process's own anonymous page. */
RT long pfns(struct ranges *r, unsigned long long *table)
{
    long k = 0;
    for (int i = 0; i < r->n; i++)
        for (long p = 0; p < r->npages[i] && k < (1 << 16); p++) {
            unsigned long long pm = proc_u64("/proc/self/pagemap", (unsigned long)(r->start[i] + p * PAGE) / PAGE);
            if (!(pm & PM_PRESENT))
                table[k++] = 0;
            else if (have_pfn)
                table[k++] = pm & PM_PFN;
            else
                table[k++] = (pm & PM_FILE) || !(pm & PM_EXCL) ? 1 : 2;
        }
    return k;
}

RT void answer_copies(int q, struct ranges *r, long n)
{
    long copied = 0;
    pfns(r, pf_after);
    for (long i = 0; i < n; i++)
        copied += pf_before[i] && pf_after[i] && pf_before[i] != pf_after[i];
    out("Q%d: %ld\n", q, copied);
}

/* malloc returned p for block i: which earlier block had that address, or new. */
RT void answer_addr(int q, int i, char *p, const char *const names[], const int order[], int norder)
{
    const char *same = "new";
    for (int k = 0; k < norder; k++)
        if (blk[order[k]] == (long)p) {
            same = names[order[k]];
            break;
        }
    B[i] = p;
    blk[i] = (long)p;
    out("Q%d: %s\n", q, same);
}

/* Pages of the C library's code (its r-xp mapping) that are this process's own copies. */
RT void answer_own_code(int q)
{
    long own = 0;
    slurp("/proc/self/maps");
    for (char *line = text; *line; ) {
        char *next = strchr(line, '\n');
        if (next)
            *next = 0;
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && !strcmp(perms, "r-xp") && strstr(line, "libc.so")) {
            for (unsigned long at = lo; at < hi; at += PAGE)
                own += page_char(look_page((const char *)at)) == '#';
            break;
        }
        if (!next)
            break;
        line = next + 1;
    }
    out("Q%d: %ld\n", q, own);
}

RT void answer_letter(int q, int segv, char c)
{
    if (segv)
        out("Q%d: segv\n", q);
    else if (c)
        out("Q%d: %c\n", q, c);
    else
        out("Q%d: 0\n", q);
}
