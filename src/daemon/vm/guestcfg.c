/* SPDX-License-Identifier: MIT */
#include "guestcfg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/initramfs.h"
#include "fsutil.h"
#include "macro.h"
#include "parse.h"
#include "proc_spawn.h"
#include "strbuf.h"

/* The files of a VM's guest configuration (paths relative to /), their
 * contents in f->bufs (freed by files_done). */
struct gfiles {
        struct cpio_entry e[8];
        size_t n;
        char *bufs[6];
};

static void files_done(struct gfiles *f) {
        for (size_t i = 0; i < ELEMENTSOF(f->bufs); i++)
                free(f->bufs[i]);
}

static void add(struct gfiles *f, const char *path, const char *data, size_t len, unsigned mode) {
        f->e[f->n++] = (struct cpio_entry) { .path = path, .data = data, .len = len, .mode = mode };
}

static int files(const struct guestcfg *g, struct gfiles *f, struct op_error *e) {
        _cleanup_free_ char *kp = path_join(g->host_key_dir, "ssh_host_ed25519_key");
        _cleanup_free_ char *kpub = xasprintf("%s.pub", kp);
        size_t priv_len, pub_len;
        int r;

        if (!string_is_dns_label(g->hostname)) {
                return op_fail(e, -EINVAL, "'%s' is not a DNS label", g->hostname);
        }
        if ((r = read_file(kp, 1u << 16, &f->bufs[0], &priv_len)) < 0 ||
            (r = read_file(kpub, 1u << 16, &f->bufs[1], &pub_len)) < 0) {
                return op_fail(e, r, "reading the VM's host key in %s: %s", g->host_key_dir, strerror(-r));
        }
        f->bufs[2] = xasprintf("%s\n", g->hostname);
        struct strbuf hb = STRBUF_INIT;
        strbuf_addf(&hb, "127.0.0.1 localhost\n127.0.1.1 %s\n", g->hostname);
        if (g->ip)
                strbuf_addf(&hb, "%s %s.vm %s\n", g->ip, g->hostname, g->hostname);
        if (g->host_alias_ip)
                strbuf_addf(&hb, "%s " GUEST_HOST_NAME "\n", g->host_alias_ip);
        strbuf_addstr(&hb, "::1 localhost ip6-localhost ip6-loopback\n");
        f->bufs[3] = strbuf_detach(&hb, NULL);
        f->bufs[4] = xasprintf("nameserver %s\n", g->dns ? g->dns : "1.1.1.1");
        const char *ak = g->authorized_keys ? g->authorized_keys : "";
        add(f, "etc/hostname", f->bufs[2], strlen(f->bufs[2]), 0644);
        add(f, "etc/hosts", f->bufs[3], strlen(f->bufs[3]), 0644);
        add(f, "etc/resolv.conf", f->bufs[4], strlen(f->bufs[4]), 0644);
        add(f, "etc/ssh/ssh_host_ed25519_key", f->bufs[0], priv_len, 0600);
        add(f, "etc/ssh/ssh_host_ed25519_key.pub", f->bufs[1], pub_len, 0644);
        add(f, "root/.ssh/authorized_keys", ak, strlen(ak), 0600);
        if (g->fstab)
                add(f, "etc/fstab", g->fstab, strlen(g->fstab), 0644);
        if (g->machine_id) {
                f->bufs[5] = xasprintf("%s\n", g->machine_id);
                add(f, "etc/machine-id", f->bufs[5], strlen(f->bufs[5]), 0444);
        }
        return 0;
}

int guestcfg_write(const struct guestcfg *g, const char *out, struct op_error *e) {
        struct gfiles f = { 0 };
        char paths[8][64];
        int r = files(g, &f, e);
        for (size_t i = 0; r == 0 && i < f.n; i++) { /* below banger/root/ in the cpio (banger-init copies them) */
                snprintf(paths[i], sizeof(paths[i]), "banger/root/%s", f.e[i].path);
                f.e[i].path = paths[i];
        }
        if (r == 0)
                r = cpio_write(out, f.e, f.n, false, e);
        files_done(&f);
        return r;
}

int guestcfg_records(const struct guestcfg *g, const void *entropy, size_t entropy_len, struct strbuf *out,
                     struct op_error *e) {
        struct gfiles f = { 0 };
        int r = files(g, &f, e);
        strbuf_addf(out, "entropy %zu\n", entropy_len);
        strbuf_add(out, entropy, entropy_len);
        for (size_t i = 0; r == 0 && i < f.n; i++) {
                if (strncmp(f.e[i].path, "root/", 5) == 0)
                        continue; /* the work disk's: the host wrote them into it before */
                strbuf_addf(out, "file %o %zu /%s\n", f.e[i].mode, f.e[i].len, f.e[i].path);
                strbuf_add(out, f.e[i].data, f.e[i].len);
        }
        files_done(&f);
        return r;
}

static int keygen(const char *path, const char *comment, struct op_error *e) {
        char *argv[] = { (char *) "ssh-keygen", (char *) "-q", (char *) "-t", (char *) "ed25519", (char *) "-N",
                         (char *) "", (char *) "-C", (char *) comment, (char *) "-f", (char *) path, NULL };
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(e, spawn_run_checked(argv, 30000, 0, "apt-get install openssh-client", &msg), &msg);
}

int ssh_host_key_ensure(const char *dir, const char *comment, struct op_error *e) {
        _cleanup_free_ char *kp = path_join(dir, "ssh_host_ed25519_key");
        if (access(kp, R_OK) == 0)
                return 0;
        int r = mkdir_p(dir, 0700);
        if (r < 0) {
                return op_fail(e, r, "cannot create %s: %s", dir, strerror(-r));
        }
        return keygen(kp, comment, e);
}

int ssh_user_key_ensure(const char *key_path, struct op_error *e) {
        if (access(key_path, R_OK) == 0)
                return 0;
        _cleanup_free_ char *dir = xstrdup(key_path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (mkdir_p(dir, 0700) < 0)
                        return op_fail(e, -errno, "cannot create %s: %s", dir, strerror(errno));
        }
        return keygen(key_path, "banger", e);
}

/* Does this known_hosts line name one of the comma-separated hosts? */
static bool line_matches(const char *line, const char *hosts) {
        size_t n = strcspn(line, " \t");
        _cleanup_free_ char *field = xstrndup(line, n);
        _cleanup_free_ char *want = xstrdup(hosts);
        char *save = NULL, *save2 = NULL;
        for (char *w = strtok_r(want, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                _cleanup_free_ char *f = xstrdup(field);
                for (char *h = strtok_r(f, ",", &save2); h; h = strtok_r(NULL, ",", &save2))
                        if (strcmp(h, w) == 0)
                                return true;
        }
        return false;
}

static int rewrite(const char *path, const char *hosts, const char *add_line) {
        _cleanup_free_ char *text = NULL;
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
        size_t len;
        int r = read_file(path, 16u << 20, &text, &len);

        if (r < 0 && r != -ENOENT)
                return r;
        for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
                if (!line_matches(l, hosts))
                        strbuf_addf(&out, "%s\n", l);
        if (add_line)
                strbuf_addf(&out, "%s %s\n", hosts, add_line);
        return write_file_atomic(path, out.buf, out.len, 0600);
}

int known_hosts_set(const char *path, const char *hosts, const char *pubkey_line) {
        _cleanup_free_ char *key = xstrdup(pubkey_line);
        key[strcspn(key, "\n")] = '\0';
        if (!*hosts || strpbrk(hosts, " \t\n") || !*key)
                return -EINVAL;
        return rewrite(path, hosts, key);
}

int known_hosts_remove(const char *path, const char *hosts) {
        return rewrite(path, hosts, NULL);
}
