/* SPDX-License-Identifier: MIT */
/*
 * The files a VM gets before its first boot: the root disk (a qcow2 overlay
 * on the image's rootfs, or Firecracker's copy or device-mapper COW file:
 * dmroot.c), the work disk (seeded, grown, with authorized_keys, the
 * host's git identity and [[file_sync]] files written with libext2fs), the
 * VM's SSH host key, and its entry in banger's known_hosts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "proc_spawn.h"
#include "strbuf.h"
#include "vm/guestcfg.h"
#include "disk/workdisk.h"
#include "vms_internal.h"

#define FILE_SYNC_MAX_BYTES (256u << 20)
#define FILE_SYNC_MAX_DEPTH 16

static char *git_global(const char *key) {
        char *argv[] = { (char *) "git", (char *) "config", (char *) "--global", (char *) "--get", (char *) key, NULL };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 5000 };
        struct spawn_result res = { 0 };
        char *out = NULL;
        if (spawn_run(argv, &o, &res) == 0 && res.exit_code == 0 && res.out_len > 0) {
                res.out[strcspn(res.out, "\n")] = '\0';
                if (*res.out && !strpbrk(res.out, "\"\\\n"))
                        out = xstrdup(res.out);
        }
        spawn_result_done(&res);
        return out;
}

/* A [[file_sync]] entry: a file (with the entry's mode), or a directory
 * copied recursively (files keep their own permission bits). Missing host
 * paths are skipped; symlinks are not followed below the top. */
static int sync_path(const char *image, const char *host, const char *guest, unsigned mode, int depth,
                     struct op_error *e) {
        struct stat st;
        if ((depth == 0 ? stat(host, &st) : lstat(host, &st)) < 0) {
                if (depth == 0)
                        log_info("file_sync %s skipped: %s", host, strerror(errno));
                return 0;
        }
        if (S_ISREG(st.st_mode)) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                int r = read_file(host, FILE_SYNC_MAX_BYTES, &data, &len);
                if (r < 0)
                        return op_fail(e, r, "reading %s: %s", host, strerror(-r));
                return workdisk_write_file(image, guest, data, len, depth == 0 ? mode : (st.st_mode & 0777), 0, 0, e);
        }
        if (!S_ISDIR(st.st_mode) || depth > FILE_SYNC_MAX_DEPTH)
                return 0;
        _cleanup_(closedirp) DIR *d = opendir(host);
        struct dirent *de;
        int r = 0;
        while (d && r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *h = path_join(host, de->d_name), *g = path_join(guest, de->d_name);
                r = sync_path(image, h, g, mode, depth + 1, e);
        }
        return r;
}

/* The host's global git identity as the guest root's ~/.gitconfig. */
static int write_gitconfig(const char *work, struct op_error *e) {
        _cleanup_free_ char *name = git_global("user.name"), *mail = git_global("user.email");
        if (!name && !mail)
                return 0;
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "[user]\n");
        if (name)
                strbuf_addf(&sb, "\tname = %s\n", name);
        if (mail)
                strbuf_addf(&sb, "\temail = %s\n", mail);
        int rc = workdisk_write_file(work, "/.gitconfig", sb.buf, sb.len, 0644, 0, 0, e);
        return rc < 0 ? op_prefix(e, "work disk .gitconfig") : 0;
}

static int prepare_work_disk(struct vms *v, const struct vm_row *r, const struct vm_paths *p,
                             const struct boot_files *bf, struct op_error *e) {
        const struct config *c = config_live_get(v->deps.config);
        _cleanup_free_ char *ak = NULL, *pubpath = xasprintf("%s.pub", c->ssh_key_path);
        size_t len;
        int rc;
        if ((rc = ssh_user_key_ensure(c->ssh_key_path, e)) < 0)
                return op_prefix(e, "ssh key %s", c->ssh_key_path);
        if ((rc = read_file(pubpath, 1 << 16, &ak, &len)) < 0)
                return op_fail(e, rc, "ssh key %s: %s", pubpath, strerror(-rc));
        if ((rc = workdisk_create(p->work, (uint64_t) r->disk_size_bytes, bf->work_seed, e)) < 0 ||
            (rc = workdisk_write_file(p->work, "/.ssh/authorized_keys", ak, len, 0600, 0, 0, e)) < 0)
                return op_prefix(e, "work disk");
        if ((rc = write_gitconfig(p->work, e)) < 0)
                return rc;
        /* blank until a workspace is written into it: the guest mounts it
         * only then */
        if ((rc = repodisk_create(p->repo, (uint64_t) r->disk_size_bytes, e)) < 0)
                return op_prefix(e, "repo disk");
        for (size_t i = 0; i < c->n_file_sync; i++) {
                const struct file_sync_entry *f = &c->file_sync[i];
                /* guest paths are under /root/, which is the work disk's / */
                if ((rc = sync_path(p->work, f->host, f->guest + strlen("/root"), f->mode, 0, e)) < 0)
                        return op_prefix(e, "file_sync %s -> %s", f->host, f->guest);
        }
        return 0;
}

/* The VM's host key, pinned in banger's known_hosts before the first boot. */
int vms_pin_host_key(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct op_error *e) {
        _cleanup_free_ char *kh = known_hosts_path(v), *patterns = vm_kh_patterns(r), *hostpub = NULL;
        _cleanup_free_ char *hostpub_path = path_join(p->hostkey, "ssh_host_ed25519_key.pub");
        size_t len;
        int rc = ssh_host_key_ensure(p->hostkey, r->name, e);
        if (rc < 0)
                return op_prefix(e, "host key");
        if ((rc = read_file(hostpub_path, 1 << 16, &hostpub, &len)) < 0)
                return op_fail(e, rc, "reading %s: %s", hostpub_path, strerror(-rc));
        pthread_mutex_lock(&v->kh_mu);
        rc = known_hosts_set(kh, patterns, hostpub);
        pthread_mutex_unlock(&v->kh_mu);
        return rc < 0 ? op_fail(e, rc, "writing %s: %s", kh, strerror(-rc)) : 0;
}

int vms_prepare_disks(struct vms *v, const struct vm_row *r, const struct boot_files *bf, struct op_error *e) {
        struct vm_paths p;
        int rc;
        vm_paths_init(v, r, &p);
        if (mkdir_p(p.dir, 0700) < 0)
                rc = op_fail(e, -errno, "cannot create %s: %s", p.dir, strerror(errno));
        else if ((rc = vms_root_disk_create(v, r, &p, bf, e)) < 0)
                op_prefix(e, "system overlay");
        else if ((rc = prepare_work_disk(v, r, &p, bf, e)) == 0)
                rc = vms_pin_host_key(v, r, &p, e);
        vm_paths_done(&p);
        return rc;
}
