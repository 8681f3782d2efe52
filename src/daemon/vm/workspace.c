/* SPDX-License-Identifier: MIT */
/*
 * Workspaces: a host git repository shipped into a running VM's /root/repo,
 * and the guest's changes exported back as a patch. Serialised per VM by the
 * workspace lock, never the VM lock: `vm stop`/`delete` do not wait behind a
 * slow import (the import then fails with the connection).
 *
 * prepare: a shallow clone of the host's HEAD (made locally with git) gives
 * the guest a real repository, with the host's working-tree files and an
 * index built on the host (what the host staged staged in it too) so `git
 * status` in the guest shows the host's changes without re-hashing the tree.
 * All of it is written by the host into the VM's repo disk (libext2fs), the
 * guest holding the disk unmounted meanwhile (ship_disk), or before the first
 * boot (workspace_preboot). A VM without a repo disk, or whose /root/repo is
 * in use, gets one tar stream (libarchive) through the guest agent instead
 * (SSH for an agent of protocol version 1). Export: workspace_export.c.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <pthread.h>
#include <unistd.h>

#include "frame.h"
#include "fsutil.h"
#include "gitrepo.h"
#include "ids.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "proc_spawn.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vms_internal.h"
#include "vdisk.h"
#include "disk/workdisk.h"

#define SHALLOW_DEPTH "10"
/* The local fetch of commits and trees (blobs come in a pack of their own,
 * see ship_clone). A constant: git runs it through sh. */
#define UPLOAD_PACK "git -c uploadpack.allowFilter=true upload-pack"

char **workspace_ssh_argv(struct vms *v, const struct vm_row *r, const char *remote) {
        _cleanup_free_ char *kh = known_hosts_path(v);
        const char *opts[] = { "IdentitiesOnly=yes", "StrictHostKeyChecking=yes", "CheckHostIP=no", "BatchMode=yes",
                               "ConnectTimeout=10", "LogLevel=ERROR" };
        char **a = xcalloc(24, sizeof(char *));
        size_t n = 0;
        a[n++] = xstrdup("ssh");
        a[n++] = xstrdup("-i");
        a[n++] = xstrdup(config_live_get(v->deps.config)->ssh_key_path);
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                a[n++] = xstrdup("-o");
                a[n++] = xstrdup(opts[i]);
        }
        a[n++] = xstrdup("-o");
        a[n++] = xasprintf("UserKnownHostsFile=%s", kh);
        a[n++] = xstrdup("-o");
        a[n++] = xasprintf("HostKeyAlias=%s.vm", r->name);
        struct vm_handles h;
        if (r->user_net && handle_get(v, r->id, &h) && h.ssh_port) { /* the VMM's port for the guest's sshd */
                a[n++] = xstrdup("-p");
                a[n++] = xasprintf("%u", h.ssh_port);
        }
        a[n++] = xasprintf("root@%s", r->user_net ? "127.0.0.1" : strempty(r->guest_ip));
        a[n++] = xstrdup(remote);
        a[n] = NULL;
        return a;
}

int workspace_agent_script(struct vms *v, const struct vm_paths *p, const char *script, int in_fd, int out_fd,
                           int err_fd, int timeout_ms, int *ret_status, struct op_error *e) {
        uint8_t spec[FRAME_MAX_PAYLOAD];
        size_t n = 0;
        if (!v->deps.agent_exec)
                return 1;
        if (!spec_put_str(spec, sizeof(spec), &n, SPEC_ARG, "bash") ||
            !spec_put_str(spec, sizeof(spec), &n, SPEC_ARG, "-c") ||
            !spec_put_str(spec, sizeof(spec), &n, SPEC_ARG, script))
                return op_fail(e, -E2BIG, "the guest script is too long");
        struct agent_wait w = { .abort_fd = -1, .timeout_ms = timeout_ms };
        int rc = v->deps.agent_exec->fds(v->deps.agent_ud, p->agent, spec, n, in_fd, out_fd, err_fd, &w, ret_status, e);
        if (rc == -EPROTONOSUPPORT) {
                op_error_done(e);
                return 1;
        }
        return rc;
}

/* ---- the tar stream ------------------------------------------------------- */

struct tar {
        struct archive *a;
        uint64_t bytes;
        int files; /* regular files written */
};

static int tar_data(struct tar *t, const char *src, const char *name, struct op_error *err) {
        _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char buf[1 << 16];
        ssize_t n;
        if (fd < 0)
                return op_fail(err, -errno, "%s: %s", src, strerror(errno));
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
                if (archive_write_data(t->a, buf, (size_t) n) != n)
                        return op_fail(err, -EIO, "sending %s: %s", name, archive_error_string(t->a));
                t->bytes += (uint64_t) n;
        }
        if (n < 0)
                return op_fail(err, -errno, "reading %s: %s", src, strerror(errno));
        t->files++;
        return 0;
}

static int tar_add(struct tar *t, const char *src, const char *name, struct op_error *err) {
        struct stat st;
        char target[4096];
        if (lstat(src, &st) < 0)
                return op_fail(err, -errno, "%s: %s", src, strerror(errno));
        struct archive_entry *ent = archive_entry_new();
        archive_entry_copy_stat(ent, &st);
        archive_entry_set_pathname(ent, name);
        archive_entry_set_uid(ent, 0);
        archive_entry_set_gid(ent, 0);
        archive_entry_set_uname(ent, "root");
        archive_entry_set_gname(ent, "root");
        int r = 0;
        if (S_ISLNK(st.st_mode)) {
                ssize_t n = readlink(src, target, sizeof(target) - 1);
                if (n < 0)
                        r = op_fail(err, -errno, "readlink %s: %s", src, strerror(errno));
                target[n < 0 ? 0 : n] = '\0';
                archive_entry_set_symlink(ent, target);
                archive_entry_set_size(ent, 0);
        } else if (!S_ISREG(st.st_mode))
                archive_entry_set_size(ent, 0);
        if (r == 0 && archive_write_header(t->a, ent) != ARCHIVE_OK)
                r = op_fail(err, -EIO, "tar %s: %s", name, archive_error_string(t->a));
        archive_entry_free(ent);
        if (r == 0 && S_ISREG(st.st_mode))
                r = tar_data(t, src, name, err);
        return r;
}

/* fn on src and, below a directory, on everything in it (depth first);
 * entries at the top level starting with skip_top are left out. */
typedef int (*tree_fn)(void *ud, const char *src, const char *name, struct op_error *err);
static int walk_tree(const char *src, const char *name, const char *skip_top, tree_fn fn, void *ud,
                     struct op_error *err) {
        int r = fn(ud, src, name, err);
        struct stat st;
        if (r < 0 || lstat(src, &st) < 0 || !S_ISDIR(st.st_mode))
                return r;
        _cleanup_(closedirp) DIR *d = opendir(src);
        struct dirent *de;
        while (d && r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    (skip_top && strncmp(de->d_name, skip_top, strlen(skip_top)) == 0))
                        continue;
                _cleanup_free_ char *s = path_join(src, de->d_name), *n = path_join(name, de->d_name);
                r = walk_tree(s, n, NULL, fn, ud, err);
        }
        return r;
}

static int tar_add_cb(void *ud, const char *src, const char *name, struct op_error *err) {
        return tar_add(ud, src, name, err);
}

static int tar_add_tree(struct tar *t, const char *src, const char *name, struct op_error *err) {
        return walk_tree(src, name, NULL, tar_add_cb, t, err);
}

/* ---- what ships ------------------------------------------------------------- */

struct ship {
        struct vms *v;
        const struct vm_row *row;
        const struct vm_paths *p;
        const struct git_repo *repo;
        const struct git_file *files;
        size_t n_files, skipped;
        const char *from_sha; /* --from, resolved; NULL */
        const struct workspace_req *q;
        const struct progress *pr;
        char *staging;   /* owned: the local clone */
        bool *from_pack; /* owned: per file, checked out in the guest instead of sent */
        struct tar tar;
        int64_t t0;
        const char *method; /* how it shipped: "disk", "agent" or "ssh" */
};

static int git_in(const char *dir, const char *const *args, struct op_error *e) {
        _cleanup_free_ char *out = NULL, *msg = NULL;
        return op_take_msg(e, git_capture(dir, args, &out, &msg), &msg);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The NUL-separated list as a sorted array of pointers into it. */
static char **split_sorted(const char *list, size_t len, size_t *ret_n) {
        char **v = NULL;
        size_t n = 0;
        for (size_t i = 0; i < len;) {
                size_t l = strnlen(list + i, len - i);
                if (l) {
                        v = xrealloc(v, (n + 1) * sizeof(char *));
                        v[n++] = (char *) list + i;
                }
                i += l + 1;
        }
        if (n > 1)
                qsort(v, n, sizeof(char *), cmp_str);
        *ret_n = n;
        return v;
}

struct mtime_group {
        int64_t mtime;
        struct strbuf paths;
};

static struct mtime_group *group_for(struct mtime_group **groups, size_t *ng, int64_t mtime) {
        for (size_t g = 0; g < *ng; g++)
                if ((*groups)[g].mtime == mtime)
                        return &(*groups)[g];
        *groups = xrealloc(*groups, (*ng + 1) * sizeof(**groups));
        (*groups)[*ng].mtime = mtime;
        strbuf_init(&(*groups)[*ng].paths, 0);
        return &(*groups)[(*ng)++];
}

static int write_groups(const char *staging, const struct strbuf *list, struct mtime_group *groups, size_t ng,
                        struct op_error *e) {
        _cleanup_free_ char *lp = xasprintf("%s/.git/banger-from-pack", staging);
        int r = write_file_atomic(lp, list->buf ? list->buf : "", list->len, 0600);
        if (r < 0)
                return op_fail(e, r, "writing %s: %s", lp, strerror(-r));
        for (size_t g = 0; g < ng; g++) {
                _cleanup_free_ char *mp = xasprintf("%s/.git/banger-mtime-%lld", staging, (long long) groups[g].mtime);
                if ((r = write_file_atomic(mp, groups[g].paths.buf, groups[g].paths.len, 0600)) < 0)
                        return op_fail(e, r, "writing %s: %s", mp, strerror(-r));
        }
        return 0;
}

/* Marks which files the guest takes from the pack (tracked and not in the
 * NUL-separated `changed` list) and writes the lists the guest script reads:
 * .git/banger-from-pack and one .git/banger-mtime-<seconds> per mtime. */
static int plan_from_pack(struct ship *s, const char *changed, size_t changed_len, struct op_error *e) {
        size_t nch;
        _cleanup_free_ char **ch = split_sorted(changed, changed_len, &nch);
        _cleanup_strbuf_ struct strbuf list = STRBUF_INIT;
        struct mtime_group *groups = NULL;
        size_t ng = 0;
        s->from_pack = xcalloc(s->n_files + 1, sizeof(bool));
        for (size_t i = 0; i < s->n_files; i++) {
                const char *key = s->files[i].path;
                if (s->files[i].untracked || (nch && bsearch(&key, ch, nch, sizeof(char *), cmp_str)))
                        continue;
                _cleanup_free_ char *full = path_join(s->repo->toplevel, key);
                struct stat st;
                if (lstat(full, &st) < 0 || st.st_mtime < 0)
                        continue;
                s->from_pack[i] = true;
                strbuf_add(&list, key, strlen(key) + 1);
                strbuf_add(&group_for(&groups, &ng, (int64_t) st.st_mtime)->paths, key, strlen(key) + 1);
        }
        int r = write_groups(s->staging, &list, groups, ng, e);
        for (size_t g = 0; g < ng; g++)
                strbuf_release(&groups[g].paths);
        free(groups);
        return r;
}

/* Guest-side steps after extraction, as one shell script (every value quoted). */
static char *guest_script(const struct workspace_req *q, const char *from_sha) {
        struct strbuf sb = STRBUF_INIT;
        /* emptied, not removed: it may be the repo disk's mount point */
        strbuf_addstr(&sb, "set -e; mkdir -p " GUEST_REPO "; find " GUEST_REPO " -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +"
                           "; tar -b 256 -x -C " GUEST_REPO
                           "; cd " GUEST_REPO
                           "; if [ -s .git/banger-from-pack ]; then git checkout-index -q -z --stdin"
                           " <.git/banger-from-pack; fi"
                           "; for f in .git/banger-mtime-*; do [ -e \"$f\" ] || continue;"
                           " xargs -0 -a \"$f\" touch -h -m -d \"@${f##*-}\" --; done"
                           "; rm -f .git/banger-from-pack .git/banger-mtime-*");
        if (q->branch) {
                _cleanup_free_ char *b = shell_quote(q->branch), *f = from_sha ? shell_quote(from_sha) : NULL;
                strbuf_addf(&sb, "; git checkout -q -b %s%s%s", b, f ? " " : "", f ? f : "");
        }
        strbuf_addstr(&sb, "; git rev-parse HEAD");
        return strbuf_detach(&sb, NULL);
}

/* ---- the steps of prepare ---------------------------------------------------- */

/* The blobs the staging repository lacks (its fetch left them out), as
 * `git pack-objects` input, into a file of the staging .git. 0 with *ret_n
 * set, or -errno. */
static int list_missing(struct ship *s, const char *path, size_t *ret_n, struct op_error *e) {
        _cleanup_free_ char *out = NULL, *msg = NULL;
        size_t len = 0;
        int rc = git_capture_n(s->staging,
                               (const char *const[]) { "rev-list", "--objects", "--missing=print", s->repo->head,
                                                       s->from_sha ? s->from_sha : s->repo->head, NULL },
                               &out, &len, &msg);
        if (rc < 0)
                return op_take_msg(e, rc, &msg);
        _cleanup_strbuf_ struct strbuf list = STRBUF_INIT;
        size_t n = 0;
        for (char *line = out, *end; line && line < out + len; line = end ? end + 1 : NULL) {
                end = strchr(line, '\n');
                if (end)
                        *end = '\0';
                size_t h = line[0] == '?' ? strspn(line + 1, "0123456789abcdef") : 0;
                if ((h != 40 && h != 64) || line[1 + h] != '\0') /* SHA-1 or SHA-256 */
                        continue;
                strbuf_addf(&list, "%s\n", line + 1);
                n++;
        }
        if ((rc = write_file_atomic(path, list.buf ? list.buf : "", list.len, 0600)) < 0)
                return op_fail(e, rc, "writing %s: %s", path, strerror(-rc));
        *ret_n = n;
        return 0;
}

/* What the fetch marked as lent by a promisor remote is ours now. */
static void drop_promisor_marks(const char *staging) {
        _cleanup_free_ char *dir = xasprintf("%s/.git/objects/pack", staging);
        _cleanup_(closedirp) DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (l > 9 && strcmp(de->d_name + l - 9, ".promisor") == 0)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
}

/* A shallow local clone of HEAD (and --from) with the host's origin and
 * identity. The fetch brings commits and trees only (--filter=blob:none);
 * the blobs those commits need come in one pack made straight from the
 * host's objects (no delta search, no compression: the copy lives minutes
 * on this host and then goes into the work disk or through the agent).
 * For the 98 MB benchmark repository: 1.4 s and 1.3 s of CPU, against
 * 2.0 s and 3.2 s for a full fetch, whose receiving side hashes every
 * object again. */
static int ship_clone(struct ship *s, struct op_error *e) {
        const struct git_repo *repo = s->repo;
        _cleanup_free_ char *rnd = random_hex(4), *url = xasprintf("file://%s", repo->toplevel);
        _cleanup_free_ char *head_ref = xasprintf("refs/heads/%s", repo->branch ? repo->branch : "banger-workspace");
        s->staging = xasprintf("%s/" VM_WS_STAGING_PREFIX "%s", s->p->dir, rnd);
        _cleanup_free_ char *blobs = xasprintf("%s/.git/banger-blobs", s->staging);
        _cleanup_free_ char *pack_base = xasprintf("%s/.git/objects/pack/pack", s->staging);
        const char *tip2 = s->from_sha ? s->from_sha : repo->head;
        size_t n_blobs = 0;
        int rc;
        if ((rc = git_in(s->p->dir, (const char *const[]) { "init", "-q", s->staging, NULL }, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "remote", "add", "banger-src", url, NULL }, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "fetch", "-q", "--no-tags", "--depth", SHALLOW_DEPTH,
                                                             "--filter=blob:none", "--upload-pack=" UPLOAD_PACK,
                                                             "banger-src", repo->head, tip2, NULL },
                         e)) < 0 ||
            (rc = list_missing(s, blobs, &n_blobs, e)) < 0)
                return rc;
        if (n_blobs) {
                _cleanup_close_ int in = open(blobs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                _cleanup_free_ char *out = NULL, *msg = NULL;
                if (in < 0)
                        return op_fail(e, -errno, "%s: %s", blobs, strerror(errno));
                rc = git_capture_in(repo->toplevel,
                                    (const char *const[]) { "-c", "pack.compression=0", "-c", "core.fsync=none",
                                                            "pack-objects", "-q",
                                                            "--window=0", pack_base, NULL },
                                    in, &out, &msg);
                if (rc < 0)
                        return op_take_msg(e, rc, &msg);
        }
        unlink(blobs);
        drop_promisor_marks(s->staging);
        if ((rc = git_in(s->staging, (const char *const[]) { "remote", "remove", "banger-src", NULL }, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "update-ref", head_ref, repo->head, NULL }, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "symbolic-ref", "HEAD", head_ref, NULL }, e)) < 0)
                return rc;
        if (repo->origin &&
            (rc = git_in(s->staging, (const char *const[]) { "remote", "add", "origin", repo->origin, NULL }, e)) < 0)
                return rc;
        if (repo->user_name &&
            (rc = git_in(s->staging, (const char *const[]) { "config", "user.name", repo->user_name, NULL }, e)) < 0)
                return rc;
        if (repo->user_email &&
            (rc = git_in(s->staging, (const char *const[]) { "config", "user.email", repo->user_email, NULL }, e)) < 0)
                return rc;
        return 0;
}

/* What the host has staged (git add, git rm --cached) is staged in the
 * guest too: the host's index against HEAD as a binary patch, applied to
 * the new index only (its blobs land in the staging repo's objects). */
static int ship_staged(struct ship *s, const char *gd, const char *wt, struct op_error *e) {
        _cleanup_free_ char *path = xasprintf("%s/.git/banger-staged.patch", s->staging);
        _cleanup_free_ char *out_opt = xasprintf("--output=%s", path);
        /* written by git itself: the patch's bytes exactly (binary parts end in blank lines) */
        int rc = git_in(s->repo->toplevel,
                        (const char *const[]) { "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false", "diff",
                                                "--cached", "--binary", "--full-index", "--no-color", "--no-ext-diff",
                                                "--no-renames", out_opt, "HEAD", NULL },
                        e);
        struct stat st;
        if (rc == 0 && stat(path, &st) == 0 && st.st_size > 0)
                rc = git_in(s->staging,
                            (const char *const[]) { gd, wt, "apply", "--cached", "--whitespace=nowarn", path, NULL }, e);
        unlink(path);
        return rc < 0 ? op_prefix(e, "staging what the host staged") : 0;
}

/* The index is built here, against the host's work tree, so the guest never
 * re-hashes every file (slow under TCG): with checkStat=minimal git compares
 * only size and mtime (seconds), which the tar stream preserves. Files
 * changed on the host keep stale stat data and are hashed (and shown
 * modified) in the guest. Tracked files identical to HEAD do not travel
 * twice: the guest checks them out of the (compressed) pack and gives them
 * the host's mtimes, so this index stays valid. */
static int ship_index(struct ship *s, struct op_error *e) {
        _cleanup_free_ char *gd = xasprintf("--git-dir=%s/.git", s->staging);
        _cleanup_free_ char *wt = xasprintf("--work-tree=%s", s->repo->toplevel);
        _cleanup_free_ char *head_ref = xasprintf("refs/heads/%s", s->repo->branch ? s->repo->branch : "banger-workspace");
        _cleanup_free_ char *out = NULL, *msg = NULL;
        int rc;
        if ((rc = git_in(s->staging, (const char *const[]) { gd, wt, "read-tree", head_ref, NULL }, e)) < 0 ||
            (rc = ship_staged(s, gd, wt, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "config", "core.checkStat", "minimal", NULL }, e)) < 0 ||
            (rc = git_in(s->staging, (const char *const[]) { "config", "core.trustctime", "false", NULL }, e)) < 0)
                return rc;
        /* "needs update" is not an error */
        (void) git_capture(s->staging, (const char *const[]) { gd, wt, "update-index", "-q", "--refresh", NULL }, &out,
                           &msg);
        return 0;
}

/* For the stream only: the files that differ from the index travel, the
 * rest the guest checks out of the pack (plan_from_pack). */
static int ship_plan(struct ship *s, struct op_error *e) {
        _cleanup_free_ char *gd = xasprintf("--git-dir=%s/.git", s->staging);
        _cleanup_free_ char *wt = xasprintf("--work-tree=%s", s->repo->toplevel);
        _cleanup_free_ char *changed = NULL, *msg = NULL;
        size_t changed_len = 0;
        int rc = git_capture_n(s->staging, (const char *const[]) { gd, wt, "diff-files", "--name-only", "-z", NULL },
                               &changed, &changed_len, &msg);
        if (rc < 0)
                return op_take_msg(e, rc, &msg);
        return plan_from_pack(s, changed, changed_len, e);
}

/* .git and the files that are not in the pack, as one tar stream. */
static int write_stream(struct ship *s, int fd, struct op_error *e) {
        _cleanup_free_ char *gitdir = path_join(s->staging, ".git");
        s->tar = (struct tar) { .a = archive_write_new() };
        archive_write_set_format_pax_restricted(s->tar.a);
        archive_write_set_bytes_in_last_block(s->tar.a, 1);
        int rc = archive_write_open_fd(s->tar.a, fd) == ARCHIVE_OK ? tar_add_tree(&s->tar, gitdir, ".git", e)
                                                                      : op_fail(e, -EIO, "tar stream: cannot open");
        for (size_t i = 0; rc == 0 && i < s->n_files; i++) {
                if (s->from_pack[i])
                        continue;
                _cleanup_free_ char *src = path_join(s->repo->toplevel, s->files[i].path);
                rc = tar_add(&s->tar, src, s->files[i].path, e);
        }
        if (archive_write_close(s->tar.a) != ARCHIVE_OK && rc == 0)
                rc = op_fail(e, -EIO, "tar stream: %s", archive_error_string(s->tar.a));
        archive_write_free(s->tar.a);
        return rc;
}

struct producer {
        struct ship *s;
        int fd;
        int rc;
        struct op_error e;
};

static void *produce(void *arg) {
        struct producer *pr = arg;
        pr->rc = write_stream(pr->s, pr->fd, &pr->e);
        close(pr->fd); /* the guest's tar sees the end */
        return NULL;
}

/* The tar stream through the agent: written by a thread into a pipe while
 * the exec reads it. 1 when the agent is too old (ssh then). */
static int ship_agent(struct ship *s, const char *script, int errfd, struct op_error *e) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return op_fail(e, -errno, "pipe: %s", strerror(errno));
        struct producer pr = { .s = s, .fd = pipefd[1], .e = OP_ERROR_INIT };
        pthread_t t;
        if (pthread_create(&t, NULL, produce, &pr) != 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return op_fail(e, -EAGAIN, "cannot start the tar writer");
        }
        int status = -1;
        int rc = workspace_agent_script(s->v, s->p, script, pipefd[0], -1, errfd, 0, &status, e);
        close(pipefd[0]); /* a writer still going sees EPIPE and stops */
        pthread_join(t, NULL);
        if (rc == 0 && pr.rc < 0)
                rc = op_fail(e, pr.rc, "%s", op_error_message(&pr.e));
        else if (rc == 0 && status != 0)
                rc = op_fail(e, -EIO, "the guest's tar and git steps exited with %d", status);
        op_error_done(&pr.e);
        return rc;
}

static int ship_ssh(struct ship *s, const char *script, int errfd, struct op_error *e) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return op_fail(e, -errno, "pipe: %s", strerror(errno));
        _cleanup_strv_free_ char **argv = workspace_ssh_argv(s->v, s->row, script);
        struct spawn_fd_map fds[] = { { 0, pipefd[0] }, { 2, errfd } };
        struct spawn_opts so = { .fds = fds, .n_fds = errfd >= 0 ? 2 : 1 };
        pid_t pid;
        int rc = spawn_start(argv, &so, &pid);
        close(pipefd[0]);
        if (rc < 0) {
                close(pipefd[1]);
                return op_fail(e, rc, "cannot run ssh: %s", strerror(-rc));
        }
        rc = write_stream(s, pipefd[1], e);
        close(pipefd[1]);
        int code = spawn_wait(pid);
        return rc < 0 ? rc : code != 0 ? op_fail(e, -EIO, "ssh exited with %d", code) : 0;
}

static int ship_stream(struct ship *s, struct op_error *e) {
        progress_stage(s->pr, "ship", "%zu files in one tar stream through the agent", s->n_files);
        _cleanup_free_ char *errlog = path_join(s->p->dir, "workspace-ship.log");
        _cleanup_close_ int errfd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        _cleanup_free_ char *script = guest_script(s->q, s->from_sha);
        s->method = "agent";
        int rc = ship_agent(s, script, errfd, e);
        if (rc == 1) {
                progress_stage(s->pr, "ship", "the guest agent is too old for streams: over ssh");
                s->method = "ssh";
                rc = ship_ssh(s, script, errfd, e);
        }
        if (rc == 0) {
                unlink(errlog);
                return 0;
        }
        _cleanup_free_ char *log = NULL;
        size_t len;
        if (read_file(errlog, 8192, &log, &len) < 0)
                log = NULL; /* no guest output to add */
        return op_fail(e, rc, "shipping the workspace failed: %s%s%s", op_error_message(e),
                       log && *log ? "; guest: " : "", log ? log : "");
}

static int ship_record(struct ship *s, json_t **ret, struct op_error *e) {
        struct vms *v = s->v;
        _cleanup_json_ json_t *ws = json_pack("{s:s, s:s, s:s}", "guest_path", GUEST_REPO, "host_path",
                                              s->repo->toplevel, "head_commit", s->repo->head);
        if (s->q->branch)
                json_object_set_new(ws, "branch", json_string(s->q->branch));
        json_object_set_new(ws, "files", json_integer((json_int_t) s->n_files));
        json_object_set_new(ws, "bytes", json_integer((json_int_t) s->tar.bytes));
        json_object_set_new(ws, "skipped_untracked", json_integer((json_int_t) s->skipped));
        _cleanup_free_ char *wtext = json_dump_compact(ws);
        int rc = store_vm_set_workspace(v->deps.store, s->row->id, wtext);
        if (rc < 0)
                return op_fail(e, rc, "recording the workspace of %s: %s", s->row->name, strerror(-rc));
        if (store_vm_touch(v->deps.store, s->row->id) < 0)
                log_warn("vm %s: cannot record its activity", s->row->name);
        int64_t ms = v->deps.mono_ms() - s->t0;
        *ret = json_deep_copy(ws);
        json_object_set_new(*ret, "files", json_integer((json_int_t) s->n_files));
        json_object_set_new(*ret, "stream_files", json_integer(s->tar.files));
        json_object_set_new(*ret, "bytes", json_integer((json_int_t) s->tar.bytes));
        json_object_set_new(*ret, "skipped_untracked", json_integer((json_int_t) s->skipped));
        json_object_set_new(*ret, "elapsed_ms", json_integer(ms));
        json_object_set_new(*ret, "method", json_string(s->method));
        log_info("workspace %s -> %s:%s: %zu files (+ .git), %llu bytes in %lld ms (%s)", s->repo->toplevel,
                 s->row->name, GUEST_REPO, s->n_files, (unsigned long long) s->tar.bytes, (long long) ms, s->method);
        return 0;
}

static int ship_disk(struct ship *s, struct op_error *e);
static int guest_branch(struct vms *v, const struct vm_row *row, const char *branch, const char *from_sha,
                        struct op_error *e);

static int ship(struct ship *s, json_t **ret, struct op_error *e) {
        s->t0 = s->v->deps.mono_ms();
        int rc = ship_disk(s, e);
        if (rc == 1) {
                progress_stage(s->pr, "clone", "shallow clone of %.12s (depth " SHALLOW_DEPTH ")", s->repo->head);
                rc = ship_clone(s, e);
                if (rc == 0)
                        rc = ship_index(s, e);
                if (rc == 0)
                        rc = ship_plan(s, e);
                if (rc == 0)
                        rc = ship_stream(s, e);
        }
        if (rc == 0)
                rc = ship_record(s, ret, e);
        if (s->staging)
                rm_rf(s->staging);
        free(s->staging);
        free(s->from_pack);
        return rc;
}

/* ---- prepare ------------------------------------------------------------------- */

static int check_request(const struct workspace_req *q, struct op_error *e) {
        _cleanup_free_ char *out = NULL, *msg = NULL;
        if (!q->host_path || q->host_path[0] != '/')
                return op_bad_request(e, "path must be absolute");
        if (q->from && !q->branch)
                return op_bad_request(e, "--from needs --branch");
        if (q->branch &&
            git_capture("/", (const char *const[]) { "check-ref-format", "--branch", q->branch, NULL }, &out, &msg) < 0)
                return op_bad_request(e, "invalid branch name '%s'", q->branch);
        return 0;
}

/* --from REF as a full commit id. */
static int resolve_from(const struct git_repo *repo, const char *from, char **ret, struct op_error *e) {
        _cleanup_free_ char *sha = NULL, *msg = NULL, *c = NULL, *ce = NULL;
        int rc = git_capture(repo->toplevel, (const char *const[]) { "rev-parse", "--verify", "-q", from, NULL }, &sha,
                             &msg);
        if (rc < 0 || !sha || strlen(sha) < 40)
                return op_bad_request(e, "--from %s is not a commit in %s", from, repo->toplevel);
        _cleanup_free_ char *spec = xasprintf("%s^{commit}", sha);
        if (git_capture(repo->toplevel, (const char *const[]) { "rev-parse", "--verify", "-q", spec, NULL }, &c, &ce) < 0)
                return op_bad_request(e, "--from %s is not a commit", from);
        *ret = TAKE_PTR(c);
        return 0;
}

static json_t *dry_run_json(const struct git_repo *repo, const struct git_file *files, size_t n, size_t skipped) {
        json_t *list = json_array();
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
                char mode[8];
                snprintf(mode, sizeof(mode), "%06o", (unsigned) files[i].mode);
                json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:b}", "path", files[i].path, "mode", mode,
                                                      "size", (json_int_t) files[i].size, "untracked",
                                                      files[i].untracked));
                bytes += files[i].size;
        }
        return json_pack("{s:s, s:s, s:o, s:I, s:I, s:b}", "host_path", repo->toplevel, "head_commit", repo->head,
                         "files", list, "bytes", (json_int_t) bytes, "skipped_untracked", (json_int_t) skipped,
                         "dry_run", true);
}

static int prepare_running(struct vms *v, const struct vm_row *row, struct ship *s, json_t **ret,
                           struct op_error *e) {
        struct vm_paths p;
        int rc;
        vm_paths_init(v, row, &p);
        s->p = &p;
        if (vms_live_pid(v, row, &p, NULL) <= 0)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", row->name, row->state);
        else {
                struct vm_lock *l = vms_workspace_lock(v, row->id);
                rc = ship(s, ret, e);
                vms_workspace_unlock(v, l);
        }
        vm_paths_done(&p);
        return rc;
}

int workspace_prepare(struct vms *v, const char *ref, const struct workspace_req *q, const struct progress *pr,
                      json_t **ret, struct op_error *e) {
        struct vm_row row = { 0 };
        struct git_repo repo = { 0 };
        struct git_file *files = NULL;
        size_t n_files = 0, skipped = 0;
        _cleanup_free_ char *msg = NULL, *from_sha = NULL;
        int rc;

        if ((rc = check_request(q, e)) < 0 || (rc = vms_get_row(v, ref, &row, e)) < 0)
                return rc;
        if ((rc = git_repo_inspect(q->host_path, &repo, &msg)) < 0) {
                op_take_msg(e, rc, &msg);
                op_recode(e, RPC_BAD_REQUEST);
        }
        else if ((rc = git_repo_files(repo.toplevel, q->include_untracked, &files, &n_files, &skipped, &msg)) < 0)
                op_take_msg(e, rc, &msg);
        else if (q->from)
                rc = resolve_from(&repo, q->from, &from_sha, e);
        if (rc == 0 && q->dry_run)
                *ret = dry_run_json(&repo, files, n_files, skipped);
        else if (rc == 0) {
                struct ship s = { .v = v, .row = &row, .repo = &repo, .files = files, .n_files = n_files,
                                  .skipped = skipped, .from_sha = from_sha, .q = q, .pr = pr };
                rc = prepare_running(v, &row, &s, ret, e);
        }
        git_files_free(files, n_files);
        git_repo_done(&repo);
        vm_row_done(&row);
        return rc;
}

/* ---- before boot: straight into the work disk --------------------------------- */

static int put_cb(void *ud, const char *src, const char *name, struct op_error *err) {
        return workdisk_put(ud, name, src, 0, 0, err);
}

struct clone_job {
        struct ship *s;
        int rc;
        struct op_error e;
};

static void *clone_job_run(void *arg) {
        struct clone_job *j = arg;
        j->rc = ship_clone(j->s, &j->e);
        if (j->rc == 0)
                j->rc = ship_index(j->s, &j->e);
        return NULL;
}

/* A new filesystem on the repo disk with the work tree's files, written
 * while another thread makes the clone and its index (git's processes on
 * the other core), then the clone's .git; labelled complete last. The
 * guest must not have the disk mounted. */
static int disk_write(struct ship *s, const char *repo_disk, struct op_error *e) {
        struct workdisk *wd = NULL;
        _cleanup_free_ char *gitdir = NULL;
        int rc = repodisk_reset(repo_disk, VDISK_REPO_LABEL_NEW, e);
        if (rc < 0 || (rc = workdisk_open(repo_disk, &wd, e)) < 0)
                return op_prefix(e, "repo disk");
        struct clone_job j = { .s = s, .e = OP_ERROR_INIT };
        pthread_t t;
        bool threaded = pthread_create(&t, NULL, clone_job_run, &j) == 0;
        if (!threaded)
                clone_job_run(&j);
        for (size_t i = 0; rc == 0 && i < s->n_files; i++) {
                _cleanup_free_ char *src = path_join(s->repo->toplevel, s->files[i].path);
                _cleanup_free_ char *dst = xasprintf("/%s", s->files[i].path);
                rc = workdisk_put(wd, dst, src, 0, 0, e);
        }
        if (threaded)
                pthread_join(t, NULL);
        if (rc == 0 && j.rc < 0)
                rc = op_fail(e, j.rc, "%s", op_error_message(&j.e));
        op_error_done(&j.e);
        /* the staging repo's .git, minus the lists only the guest script reads */
        if (rc == 0) {
                gitdir = path_join(s->staging, ".git");
                rc = walk_tree(gitdir, "/.git", "banger-", put_cb, wd, e);
        }
        if (rc == 0)
                workdisk_set_label(wd, VDISK_REPO_LABEL);
        s->tar.bytes = workdisk_bytes(wd);
        s->tar.files = (int) s->n_files;
        s->method = "disk";
        _cleanup_op_error_ struct op_error ce = OP_ERROR_INIT;
        if (workdisk_close(wd, &ce) < 0 && rc == 0)
                rc = op_fail(e, ce.err, "%s", op_error_message(&ce));
        return rc;
}

static int preboot_write(struct ship *s, const char *repo_disk, struct op_error *e) {
        progress_stage(s->pr, "workspace",
                       "shallow clone of %.12s (depth " SHALLOW_DEPTH ") and %zu files into the repo disk before boot",
                       s->repo->head, s->n_files);
        return disk_write(s, repo_disk, e);
}

/* One of the repo disk's calls (docs/GUEST.md); 0, or -errno with why. */
static int repo_call(struct ship *s, const char *method, const char *key, struct op_error *e) {
        _cleanup_json_ json_t *res = NULL;
        int rc = s->v->deps.agent_call(s->v->deps.agent_ud, s->p->agent, method, 30000, NULL, &res, e);
        if (rc < 0)
                return rc;
        if (!json_is_true(json_object_get(res, key))) {
                const char *why = json_string_value(json_object_get(res, "error"));
                return op_fail(e, -EBUSY, "%s", why ? why : "refused");
        }
        return 0;
}

/* A running VM with a repo disk: the guest unmounts /root/repo, the host
 * writes the whole workspace into the disk at host speed (no stream, no
 * guest CPU: the 98 MB benchmark repository in ~2.6 s against ~6.4 s
 * through the agent), the guest mounts it again. 1 when this VM cannot
 * (no repo disk, an agent without the calls, /root/repo in use): the
 * stream is used instead, as before. */
static int ship_disk(struct ship *s, struct op_error *e) {
        _cleanup_op_error_ struct op_error de = OP_ERROR_INIT;
        if (!vm_has_repo_disk(s->p))
                return 1;
        if (repo_call(s, "repo_detach", "detached", &de) < 0) {
                log_info("vm %s: the workspace goes through the agent: the repo disk: %s", s->row->name,
                         op_error_message(&de));
                return 1;
        }
        progress_stage(s->pr, "ship", "shallow clone of %.12s (depth " SHALLOW_DEPTH ") and %zu files into the repo disk",
                       s->repo->head, s->n_files);
        int rc = disk_write(s, s->p->repo, e);
        if (rc == 0 && (rc = repo_call(s, "repo_attach", "attached", e)) < 0)
                op_prefix(e, "mounting the repo disk in the guest");
        if (rc == 0 && s->q->branch)
                rc = guest_branch(s->v, s->row, s->q->branch, s->from_sha, e);
        return rc;
}

int workspace_preboot_check(const struct workspace_req *q, struct op_error *e) {
        struct git_repo repo = { 0 };
        _cleanup_free_ char *msg = NULL;
        int rc = check_request(q, e);
        if (rc == 0 && (rc = git_repo_inspect(q->host_path, &repo, &msg)) < 0) {
                op_take_msg(e, rc, &msg);
                op_recode(e, RPC_BAD_REQUEST);
        }
        git_repo_done(&repo);
        return rc;
}

int workspace_preboot(struct vms *v, const struct vm_row *row, const char *repo_disk, const struct workspace_req *q,
                      const struct progress *pr, struct op_error *e) {
        struct git_repo repo = { 0 };
        struct git_file *files = NULL;
        size_t n_files = 0, skipped = 0;
        _cleanup_free_ char *msg = NULL, *from_sha = NULL;
        struct vm_paths p;
        int rc;
        vm_paths_init(v, row, &p);
        if ((rc = git_repo_inspect(q->host_path, &repo, &msg)) < 0)
                op_take_msg(e, rc, &msg);
        else if ((rc = git_repo_files(repo.toplevel, q->include_untracked, &files, &n_files, &skipped, &msg)) < 0)
                op_take_msg(e, rc, &msg);
        else if (q->from)
                rc = resolve_from(&repo, q->from, &from_sha, e);
        if (rc == 0) {
                struct ship s = { .v = v, .row = row, .p = &p, .repo = &repo, .files = files, .n_files = n_files,
                                  .skipped = skipped, .from_sha = from_sha, .q = q, .pr = pr, .t0 = v->deps.mono_ms() };
                _cleanup_json_ json_t *res = NULL;
                rc = preboot_write(&s, repo_disk, e);
                if (rc == 0)
                        rc = ship_record(&s, &res, e);
                if (s.staging)
                        rm_rf(s.staging);
                free(s.staging);
                free(s.from_pack);
        }
        git_files_free(files, n_files);
        git_repo_done(&repo);
        vm_paths_done(&p);
        return rc;
}

/* After the boot of a VM whose workspace was written before it: the guest-
 * only branch, through the agent. */
/* The guest-only branch (at from_sha when given) in a workspace the host
 * wrote into the repo disk, through the agent. */
static int guest_branch(struct vms *v, const struct vm_row *row, const char *branch, const char *from_sha,
                        struct op_error *e) {
        _cleanup_free_ char *b = shell_quote(branch), *f = from_sha ? shell_quote(from_sha) : NULL;
        _cleanup_free_ char *script = xasprintf("cd " GUEST_REPO " && git checkout -q -b %s%s%s", b, f ? " " : "",
                                                f ? f : "");
        struct vm_paths p;
        vm_paths_init(v, row, &p);
        int status = -1;
        int rc = workspace_agent_script(v, &p, script, -1, -1, -1, 60000, &status, e);
        vm_paths_done(&p);
        if (rc == 1)
                return op_fail(e, -EPROTONOSUPPORT, "the guest agent is too old to check out --branch");
        if (rc == 0 && status != 0)
                rc = op_fail(e, -EIO, "git checkout -b %s in the guest exited with %d", branch, status);
        return rc;
}

int workspace_preboot_finish(struct vms *v, const struct vm_row *row, const struct workspace_req *q,
                             struct op_error *e) {
        if (!q->branch)
                return 0;
        _cleanup_free_ char *from_sha = NULL;
        struct git_repo repo = { 0 };
        _cleanup_free_ char *msg = NULL;
        int rc = 0;
        if (q->from) {
                if ((rc = git_repo_inspect(q->host_path, &repo, &msg)) < 0)
                        op_take_msg(e, rc, &msg);
                else
                        rc = resolve_from(&repo, q->from, &from_sha, e);
                git_repo_done(&repo);
                if (rc < 0)
                        return rc;
        }
        return guest_branch(v, row, q->branch, from_sha, e);
}
