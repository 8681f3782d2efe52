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

int guestcfg_write(const struct guestcfg *g, const char *out, struct op_error *e) {
        _cleanup_free_ char *priv = NULL, *pub = NULL, *hostname = NULL, *hosts = NULL, *resolv = NULL;
        _cleanup_free_ char *kp = path_join(g->host_key_dir, "ssh_host_ed25519_key");
        _cleanup_free_ char *kpub = xasprintf("%s.pub", kp);
        size_t priv_len, pub_len;
        int r;

        if (!string_is_dns_label(g->hostname)) {
                return op_fail(e, -EINVAL, "'%s' is not a DNS label", g->hostname);
        }
        if ((r = read_file(kp, 1u << 16, &priv, &priv_len)) < 0 || (r = read_file(kpub, 1u << 16, &pub, &pub_len)) < 0) {
                return op_fail(e, r, "reading the VM's host key in %s: %s", g->host_key_dir, strerror(-r));
        }
        hostname = xasprintf("%s\n", g->hostname);
        struct strbuf hb = STRBUF_INIT;
        strbuf_addf(&hb, "127.0.0.1 localhost\n127.0.1.1 %s\n", g->hostname);
        if (g->ip)
                strbuf_addf(&hb, "%s %s.vm %s\n", g->ip, g->hostname, g->hostname);
        strbuf_addstr(&hb, "::1 localhost ip6-localhost ip6-loopback\n");
        hosts = strbuf_detach(&hb, NULL);
        resolv = xasprintf("nameserver %s\n", g->dns ? g->dns : "1.1.1.1");
        const char *ak = g->authorized_keys ? g->authorized_keys : "";
        struct cpio_entry ents[] = {
                { .path = "banger/root/etc/hostname", .data = hostname, .len = strlen(hostname), .mode = 0644 },
                { .path = "banger/root/etc/hosts", .data = hosts, .len = strlen(hosts), .mode = 0644 },
                { .path = "banger/root/etc/resolv.conf", .data = resolv, .len = strlen(resolv), .mode = 0644 },
                { .path = "banger/root/etc/ssh/ssh_host_ed25519_key", .data = priv, .len = priv_len, .mode = 0600 },
                { .path = "banger/root/etc/ssh/ssh_host_ed25519_key.pub", .data = pub, .len = pub_len, .mode = 0644 },
                { .path = "banger/root/root/.ssh/authorized_keys", .data = ak, .len = strlen(ak), .mode = 0600 },
                { .path = "banger/root/etc/fstab", .data = g->fstab, .len = g->fstab ? strlen(g->fstab) : 0, .mode = 0644 },
        };
        return cpio_write(out, ents, g->fstab ? ELEMENTSOF(ents) : ELEMENTSOF(ents) - 1, false, e);
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
