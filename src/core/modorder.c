/* SPDX-License-Identifier: MIT */
#include "modorder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

int modname_equal(const char *a, const char *b) {
        for (;; a++, b++) {
                char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
                if (x != y)
                        return 0;
                if (!x)
                        return 1;
        }
}

static long find(const struct modnode *nodes, size_t n, const char *name, size_t len) {
        char buf[128];

        if (len >= sizeof(buf))
                return -1;
        memcpy(buf, name, len);
        buf[len] = '\0';
        for (size_t i = 0; i < n; i++)
                if (modname_equal(nodes[i].name, buf))
                        return (long) i;
        return -1;
}

enum { WHITE, GREY, BLACK };

struct walk {
        const struct modnode *nodes;
        size_t n;
        unsigned char *color;
        size_t *order;
        size_t n_order;
        char **err;
};

static int visit(struct walk *w, size_t i, int depth) {
        if (w->color[i] == BLACK)
                return 0;
        if (w->color[i] == GREY || depth > 64) {
                *w->err = xasprintf("module dependency cycle through '%s'", w->nodes[i].name);
                return -ELOOP;
        }
        w->color[i] = GREY;
        const char *d = w->nodes[i].depends ? w->nodes[i].depends : "";
        while (*d) {
                size_t len = strcspn(d, ",");
                if (len) {
                        long j = find(w->nodes, w->n, d, len);
                        if (j < 0) {
                                *w->err = xasprintf("module '%s' needs '%.*s', which the kernel package lacks",
                                                    w->nodes[i].name, (int) len, d);
                                return -ENOENT;
                        }
                        int r = visit(w, (size_t) j, depth + 1);
                        if (r < 0)
                                return r;
                }
                d += len + (d[len] == ',');
        }
        w->color[i] = BLACK;
        w->order[w->n_order++] = i;
        return 0;
}

int modorder_resolve(const char *const *wanted, size_t n_wanted, const struct modnode *nodes, size_t n_nodes,
                     size_t **ret_order, size_t *ret_n, char **ret_err) {
        _cleanup_free_ unsigned char *color = xcalloc(n_nodes + 1, 1);
        size_t *order = xcalloc(n_nodes + 1, sizeof(size_t));
        struct walk w = { nodes, n_nodes, color, order, 0, ret_err };

        for (size_t k = 0; k < n_wanted; k++) {
                long i = find(nodes, n_nodes, wanted[k], strlen(wanted[k]));
                if (i < 0) {
                        *ret_err = xasprintf("module '%s' is not in the kernel package", wanted[k]);
                        free(order);
                        return -ENOENT;
                }
                int r = visit(&w, (size_t) i, 0);
                if (r < 0) {
                        free(order);
                        return r;
                }
        }
        *ret_order = order;
        *ret_n = w.n_order;
        return 0;
}
