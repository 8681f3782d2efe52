/* SPDX-License-Identifier: MIT */
#include "plain.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fsutil.h"
#include "strbuf.h"

#define FIRST_CAP (16u << 20)

static _Atomic uint64_t budget, used;

uint64_t plain_budget(void) {
        uint64_t b = atomic_load(&budget);
        if (b == 0) {
                long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
                b = pages > 0 && psize > 0 ? (uint64_t) pages * (uint64_t) psize / 8 : 256u << 20;
                if (b > (UINT64_C(4) << 30))
                        b = UINT64_C(4) << 30;
                atomic_store(&budget, b);
        }
        return b;
}

void plain_set_budget(uint64_t bytes) {
        atomic_store(&budget, bytes ? bytes : 1);
}

/* n more bytes of the budget, or false (nothing taken). */
static bool take(size_t n) {
        uint64_t limit = plain_budget(), cur = atomic_load(&used);
        do {
                if (n > limit || cur > limit - n)
                        return false;
        } while (!atomic_compare_exchange_weak(&used, &cur, cur + n));
        return true;
}

static void give(size_t n) {
        atomic_fetch_sub(&used, n);
}

void plain_init(struct plain *p, char *path) {
        *p = (struct plain) { .path = path, .fd = -1 };
}

static void mem_free(struct plain *p) {
        if (p->mem) {
                munmap(p->mem, p->cap);
                give(p->cap);
        }
        p->mem = NULL;
        p->len = p->cap = 0;
}

/* The memory so far into the temp file; later writes go there. */
static int spill(struct plain *p, char **ret_why) {
        p->fd = open(p->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (p->fd < 0)
                return *ret_why = xasprintf("cannot create %s: %s", p->path, strerror(errno)), -errno;
        p->spilled = true;
        int r = p->len ? write_all(p->fd, p->mem, p->len) : 0;
        mem_free(p);
        if (r < 0)
                *ret_why = xasprintf("writing %s: %s", p->path, strerror(-r));
        return r;
}

/* Room for n more bytes in memory, or false (the budget is spent). */
static bool grow(struct plain *p, size_t n) {
        if (n > SIZE_MAX / 2 - p->len)
                return false;
        size_t want = p->len + n, cap = p->cap ? p->cap : FIRST_CAP;
        while (cap < want)
                cap *= 2;
        if (cap == p->cap)
                return true;
        if (!take(cap - p->cap))
                return false;
        void *m = p->mem ? mremap(p->mem, p->cap, cap, MREMAP_MAYMOVE)
                         : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                give(cap - p->cap);
                return false;
        }
        p->mem = m;
        p->cap = cap;
        return true;
}

int plain_write(struct plain *p, const void *buf, size_t n, char **ret_why) {
        if (!p->spilled && !grow(p, n)) {
                int r = spill(p, ret_why);
                if (r < 0)
                        return r;
        }
        if (!p->spilled) {
                memcpy(p->mem + p->len, buf, n);
                p->len += n;
                return 0;
        }
        int r = write_all(p->fd, buf, n);
        if (r < 0)
                *ret_why = xasprintf("writing %s: %s", p->path, strerror(-r));
        return r;
}

int plain_finish(struct plain *p, char **ret_why) {
        if (p->fd >= 0 && close(p->fd) < 0) {
                p->fd = -1;
                return *ret_why = xasprintf("writing %s: %s", p->path, strerror(errno)), -errno;
        }
        p->fd = -1;
        return 0;
}

void plain_done(struct plain *p) {
        if (p->fd >= 0)
                close(p->fd);
        if (p->spilled)
                unlink(p->path);
        mem_free(p);
        free(p->path);
        *p = (struct plain) { .fd = -1 };
}
