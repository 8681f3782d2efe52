/* SPDX-License-Identifier: MIT */
/*
 * Workspaces: a host git repository shipped into a running VM's /root/repo,
 * and the guest's changes exported back as a patch. Serialised per VM by the
 * workspace lock, never the VM lock: `vm stop`/`delete` do not wait behind a
 * slow import (the import then fails with the connection).
 *
 * prepare: a shallow clone of the host's HEAD (made locally with git) gives
 * the guest a real repository; the host's working-tree files ride on top, in
 * one tar stream (libarchive) over one SSH connection, with an index built
 * on the host so `git status` in the guest shows the host's changes without
 * re-hashing the tree.
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
#include <unistd.h>

#include "artifacts/artifacts.h"
#include "clock.h"
#include "daemon.h"
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

#define GUEST_REPO "/root/repo"
#define SHALLOW_DEPTH "10"
/* The local fetch builds a pack for a copy that lives minutes on this host
 * and then crosses one SSH stream: no delta search (3x faster on a freshly
 * committed repository; deltas already packed are still reused), light
 * compression. A constant: git runs it through sh. */
#define UPLOAD_PACK "git -c pack.window=0 -c pack.compression=1 upload-pack"

/* ssh argv to the VM as root with banger's key and pinned host key. */
static char **ssh_argv(struct vms *v, const struct vm_row *r, const char *remote) {
        _cleanup_free_ char *kh = known_hosts_path(v);
        const char *key = v->d->config->ssh_key_path;
        char **a = xcalloc(24, sizeof(char *));
        size_t n = 0;
        a[n++] = xstrdup("ssh");
        a[n++] = xstrdup("-i");
        a[n++] = xstrdup(key);
        const char *opts[] = { "IdentitiesOnly=yes", "StrictHostKeyChecking=yes", "CheckHostIP=no", "BatchMode=yes",
                               "ConnectTimeout=10", "LogLevel=ERROR" };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                a[n++] = xstrdup("-o");
                a[n++] = xstrdup(opts[i]);
        }
        a[n++] = xstrdup("-o");
        a[n++] = xasprintf("UserKnownHostsFile=%s", kh);
        a[n++] = xstrdup("-o");
        a[n++] = xasprintf("HostKeyAlias=%s.vm", r->name);
        a[n++] = xasprintf("root@%s", r->guest_ip);
        a[n++] = xstrdup(remote);
        a[n] = NULL;
        return a;
}

/* ---- the tar stream ------------------------------------------------------- */

struct tar {
        struct archive *a;
        uint64_t bytes;
        int files; /* regular files written */
};

static int tar_add(struct tar *t, const char *src, const char *name, char **ret_err) {
        struct stat st;
        if (lstat(src, &st) < 0) {
                *ret_err = xasprintf("%s: %s", src, strerror(errno));
                return -errno;
        }
        struct archive_entry *e = archive_entry_new();
        archive_entry_copy_stat(e, &st);
        archive_entry_set_pathname(e, name);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_uname(e, "root");
        archive_entry_set_gname(e, "root");
        int r = 0;
        if (S_ISLNK(st.st_mode)) {
                char target[4096];
                ssize_t n = readlink(src, target, sizeof(target) - 1);
                if (n < 0) {
                        archive_entry_free(e);
                        *ret_err = xasprintf("readlink %s: %s", src, strerror(errno));
                        return -errno;
                }
                target[n] = '\0';
                archive_entry_set_symlink(e, target);
                archive_entry_set_size(e, 0);
        } else if (!S_ISREG(st.st_mode))
                archive_entry_set_size(e, 0);
        if (archive_write_header(t->a, e) != ARCHIVE_OK) {
                *ret_err = xasprintf("tar %s: %s", name, archive_error_string(t->a));
                archive_entry_free(e);
                return -EIO;
        }
        archive_entry_free(e);
        if (S_ISREG(st.st_mode)) {
                _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                char buf[1 << 16];
                ssize_t n;
                if (fd < 0) {
                        *ret_err = xasprintf("%s: %s", src, strerror(errno));
                        return -errno;
                }
                while ((n = read(fd, buf, sizeof(buf))) > 0) {
                        if (archive_write_data(t->a, buf, (size_t) n) != n) {
                                *ret_err = xasprintf("sending %s: %s", name, archive_error_string(t->a));
                                return -EIO;
                        }
                        t->bytes += (uint64_t) n;
                }
                if (n < 0)
                        r = -errno;
                t->files++;
        }
        return r;
}

static int tar_add_tree(struct tar *t, const char *src, const char *name, char **ret_err) {
        int r = tar_add(t, src, name, ret_err);
        struct stat st;
        if (r < 0 || lstat(src, &st) < 0 || !S_ISDIR(st.st_mode))
                return r;
        _cleanup_(closedirp) DIR *d = opendir(src);
        struct dirent *de;
        while (d && r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *s = path_join(src, de->d_name), *n = path_join(name, de->d_name);
                r = tar_add_tree(t, s, n, ret_err);
        }
        return r;
}

/* ---- prepare -------------------------------------------------------------- */

static int git_in(const char *dir, const char *const *args, vm_error *e) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        int r = git_capture(dir, args, &out, &err);
        return r < 0 ? vm_fail(e, ART_ERR_FAILED, r, "%s", err) : 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Marks which files the guest takes from the pack (tracked and not in the
 * NUL-separated `changed` list) and writes the lists the guest script reads:
 * .git/banger-from-pack and one .git/banger-mtime-<seconds> per mtime. */
static int plan_from_pack(const char *staging, const char *top, const struct git_file *files, size_t n_files,
                          const char *changed, size_t changed_len, bool *from_pack, char **ret_err) {
        _cleanup_free_ char **ch = NULL;
        size_t nch = 0;
        for (size_t i = 0; i < changed_len;) {
                size_t l = strnlen(changed + i, changed_len - i);
                if (l) {
                        ch = xrealloc(ch, (nch + 1) * sizeof(char *));
                        ch[nch++] = (char *) changed + i;
                }
                i += l + 1;
        }
        if (nch > 1)
                qsort(ch, nch, sizeof(char *), cmp_str);
        struct strbuf list = STRBUF_INIT;
        struct {
                int64_t mtime;
                struct strbuf paths;
        } *groups = NULL;
        size_t ng = 0;
        for (size_t i = 0; i < n_files; i++) {
                const char *key = files[i].path;
                if (files[i].untracked || (nch && bsearch(&key, ch, nch, sizeof(char *), cmp_str)))
                        continue;
                _cleanup_free_ char *full = path_join(top, files[i].path);
                struct stat st;
                if (lstat(full, &st) < 0 || st.st_mtime < 0)
                        continue;
                from_pack[i] = true;
                strbuf_add(&list, files[i].path, strlen(files[i].path) + 1);
                size_t g;
                for (g = 0; g < ng && groups[g].mtime != (int64_t) st.st_mtime; g++)
                        ;
                if (g == ng) {
                        groups = xrealloc(groups, (ng + 1) * sizeof(*groups));
                        groups[ng].mtime = (int64_t) st.st_mtime;
                        strbuf_init(&groups[ng].paths, 0);
                        ng++;
                }
                strbuf_add(&groups[g].paths, files[i].path, strlen(files[i].path) + 1);
        }
        int r = 0;
        _cleanup_free_ char *lp = xasprintf("%s/.git/banger-from-pack", staging);
        if (write_file_atomic(lp, list.buf ? list.buf : "", list.len, 0600) < 0) {
                *ret_err = xasprintf("writing %s", lp);
                r = -EIO;
        }
        for (size_t g = 0; g < ng; g++) {
                _cleanup_free_ char *mp = xasprintf("%s/.git/banger-mtime-%lld", staging, (long long) groups[g].mtime);
                if (r == 0 && write_file_atomic(mp, groups[g].paths.buf, groups[g].paths.len, 0600) < 0) {
                        *ret_err = xasprintf("writing %s", mp);
                        r = -EIO;
                }
                strbuf_release(&groups[g].paths);
        }
        free(groups);
        strbuf_release(&list);
        return r;
}

/* Guest-side steps after extraction, as one shell script (every value quoted). */
static char *guest_script(const struct workspace_req *q, const char *from_sha) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "set -e; rm -rf " GUEST_REPO "; mkdir -p " GUEST_REPO "; tar -x -C " GUEST_REPO
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

static int ship(struct vms *v, const struct vm_row *row, const struct vm_paths *p, const struct git_repo *repo,
                const struct git_file *files, size_t n_files, size_t skipped, const char *from_sha,
                const struct workspace_req *q, const struct progress *pr, char **ret_staging, json_t **ret,
                vm_error *e) {
        _cleanup_free_ char *err = NULL, *url = NULL;
        char *staging;
        int rc;

        int64_t t0 = mono_ms_now();
        progress_stage(pr, "clone", "shallow clone of %.12s (depth " SHALLOW_DEPTH ")", repo->head);
        _cleanup_free_ char *rnd = random_hex(4);
        staging = *ret_staging = xasprintf("%s/.ws-staging-%s", p->dir, rnd);
        url = xasprintf("file://%s", repo->toplevel);
        const char *branch = repo->branch ? repo->branch : "banger-workspace";
        _cleanup_free_ char *head_ref = xasprintf("refs/heads/%s", branch);
        if ((rc = git_in(p->dir, (const char *const[]) { "init", "-q", staging, NULL }, e)) < 0 ||
            (rc = git_in(staging, (const char *const[]) { "fetch", "-q", "--no-tags", "--depth", SHALLOW_DEPTH,
                                                          "--upload-pack=" UPLOAD_PACK, url, repo->head,
                                                          from_sha ? from_sha : repo->head, NULL },
                         e)) < 0 ||
            (rc = git_in(staging, (const char *const[]) { "update-ref", head_ref, repo->head, NULL }, e)) < 0 ||
            (rc = git_in(staging, (const char *const[]) { "symbolic-ref", "HEAD", head_ref, NULL }, e)) < 0)
                return rc;
        if (repo->origin &&
            (rc = git_in(staging, (const char *const[]) { "remote", "add", "origin", repo->origin, NULL }, e)) < 0)
                return rc;
        if (repo->user_name &&
            (rc = git_in(staging, (const char *const[]) { "config", "user.name", repo->user_name, NULL }, e)) < 0)
                return rc;
        if (repo->user_email &&
            (rc = git_in(staging, (const char *const[]) { "config", "user.email", repo->user_email, NULL }, e)) < 0)
                return rc;
        /* The index is built here, against the host's work tree, so the
         * guest never re-hashes every file (slow under TCG): with
         * checkStat=minimal git compares only size and mtime (seconds),
         * which the tar stream preserves. Files changed on the host keep
         * stale stat data and are hashed (and shown modified) in the guest. */
        _cleanup_free_ char *gd = xasprintf("--git-dir=%s/.git", staging), *wt = xasprintf("--work-tree=%s", repo->toplevel);
        if ((rc = git_in(staging, (const char *const[]) { gd, wt, "read-tree", head_ref, NULL }, e)) < 0 ||
            (rc = git_in(staging, (const char *const[]) { "config", "core.checkStat", "minimal", NULL }, e)) < 0 ||
            (rc = git_in(staging, (const char *const[]) { "config", "core.trustctime", "false", NULL }, e)) < 0)
                return rc;
        {
                _cleanup_free_ char *o = NULL, *x = NULL; /* "needs update" is not an error */
                git_capture(staging, (const char *const[]) { gd, wt, "update-index", "-q", "--refresh", NULL }, &o, &x);
        }
        /* Tracked files identical to HEAD do not travel twice: the guest
         * checks them out of the pack (which is compressed) and gives them
         * the host's mtimes, so the index built here stays valid. Changed
         * and untracked files ride in the tar stream. */
        _cleanup_free_ char *changed = NULL;
        size_t changed_len = 0;
        if ((rc = git_capture_n(staging, (const char *const[]) { gd, wt, "diff-files", "--name-only", "-z", NULL },
                                &changed, &changed_len, &err)) < 0)
                return vm_fail(e, ART_ERR_FAILED, rc, "%s", err);
        _cleanup_free_ bool *from_pack = xcalloc(n_files + 1, sizeof(bool));
        if ((rc = plan_from_pack(staging, repo->toplevel, files, n_files, changed, changed_len, from_pack, &err)) < 0)
                return vm_fail(e, ART_ERR_FAILED, rc, "%s", strempty(err));

        progress_stage(pr, "ship", "%zu files over one ssh stream", n_files);
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return vm_fail(e, ART_ERR_FAILED, -errno, "pipe: %s", strerror(errno));
        _cleanup_free_ char *errlog = path_join(p->dir, "workspace-ssh.log");
        _cleanup_close_ int errfd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        _cleanup_free_ char *script = guest_script(q, from_sha);
        _cleanup_strv_free_ char **argv = ssh_argv(v, row, script);
        struct spawn_fd_map fds[] = { { 0, pipefd[0] }, { 2, errfd } };
        struct spawn_opts so = { .fds = fds, .n_fds = errfd >= 0 ? 2 : 1 };
        pid_t pid;
        so.capture_stdout = false;
        rc = spawn_start(argv, &so, &pid);
        close(pipefd[0]);
        if (rc < 0) {
                close(pipefd[1]);
                rc = vm_fail(e, ART_ERR_FAILED, rc, "cannot run ssh: %s", strerror(-rc));
                return rc;
        }
        struct tar t = { .a = archive_write_new() };
        archive_write_set_format_pax_restricted(t.a);
        archive_write_set_bytes_in_last_block(t.a, 1);
        int ar = archive_write_open_fd(t.a, pipefd[1]);
        _cleanup_free_ char *gitdir = path_join(staging, ".git");
        rc = ar == ARCHIVE_OK ? tar_add_tree(&t, gitdir, ".git", &err) : -EIO;
        for (size_t i = 0; rc == 0 && i < n_files; i++) {
                if (from_pack[i])
                        continue;
                _cleanup_free_ char *src = path_join(repo->toplevel, files[i].path);
                rc = tar_add(&t, src, files[i].path, &err);
        }
        if (archive_write_close(t.a) != ARCHIVE_OK && rc == 0) {
                err = xasprintf("tar stream: %s", archive_error_string(t.a));
                rc = -EIO;
        }
        archive_write_free(t.a);
        close(pipefd[1]);
        int code = spawn_wait(pid);
        if (rc < 0 || code != 0) {
                _cleanup_free_ char *log = NULL;
                size_t len;
                read_file(errlog, 8192, &log, &len);
                rc = vm_fail(e, ART_ERR_FAILED, rc < 0 ? rc : -EIO, "shipping the workspace failed%s%s%s%s",
                             err ? ": " : "", strempty(err), log && *log ? "; guest: " : "", log ? log : "");
                return rc;
        }
        unlink(errlog);

        /* the record */
        _cleanup_json_ json_t *ws = json_pack("{s:s, s:s, s:s}", "guest_path", GUEST_REPO, "host_path", repo->toplevel,
                                              "head_commit", repo->head);
        if (q->branch)
                json_object_set_new(ws, "branch", json_string(q->branch));
        _cleanup_free_ char *wtext = json_dump_compact(ws);
        store_vm_set_workspace(v->d->store, row->id, wtext);
        store_vm_touch(v->d->store, row->id);
        *ret = json_deep_copy(ws);
        json_object_set_new(*ret, "files", json_integer((json_int_t) n_files));
        json_object_set_new(*ret, "stream_files", json_integer(t.files));
        json_object_set_new(*ret, "bytes", json_integer((json_int_t) t.bytes));
        json_object_set_new(*ret, "skipped_untracked", json_integer((json_int_t) skipped));
        json_object_set_new(*ret, "elapsed_ms", json_integer(mono_ms_now() - t0));
        log_info("workspace %s -> %s:%s: %zu files (+ .git), %llu bytes in %lld ms", repo->toplevel, row->name, GUEST_REPO, n_files,
                 (unsigned long long) t.bytes, (long long) (mono_ms_now() - t0));
        return 0;
}

int workspace_prepare(struct vms *v, const char *ref, const struct workspace_req *q, const struct progress *pr,
                      json_t **ret, vm_error *e) {
        struct vm_row row = { 0 };
        struct vm_paths p = { 0 };
        struct git_repo repo = { 0 };
        struct git_file *files = NULL;
        size_t n_files = 0, skipped = 0;
        struct vm_lock *l = NULL;
        _cleanup_free_ char *err = NULL, *tap = NULL, *staging = NULL, *from_sha = NULL, *url = NULL;
        int rc;

        if (!q->host_path || q->host_path[0] != '/')
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "path must be absolute");
        if (q->from && !q->branch)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "--from needs --branch");
        if (q->branch && (git_capture("/", (const char *const[]) { "check-ref-format", "--branch", q->branch, NULL },
                                      &url, &err) < 0)) {
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "invalid branch name '%s'", q->branch);
        }
        free(TAKE_PTR(url));
        free(TAKE_PTR(err));
        if ((rc = vms_get_row(v, ref, &row, e)) < 0)
                return rc;
        if ((rc = git_repo_inspect(q->host_path, &repo, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, rc, "%s", err);
                goto out;
        }
        if ((rc = git_repo_files(repo.toplevel, q->include_untracked, &files, &n_files, &skipped, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "%s", err);
                goto out;
        }
        if (q->from) {
                rc = git_capture(repo.toplevel, (const char *const[]) { "rev-parse", "--verify", "-q", q->from, NULL },
                                 &from_sha, &err);
                if (rc < 0 || !from_sha || strlen(from_sha) < 40) {
                        rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "--from %s is not a commit in %s", q->from,
                                     repo.toplevel);
                        goto out;
                }
                _cleanup_free_ char *c = NULL, *ce = NULL, *spec = xasprintf("%s^{commit}", from_sha);
                if (git_capture(repo.toplevel, (const char *const[]) { "rev-parse", "--verify", "-q", spec, NULL }, &c,
                                &ce) < 0) {
                        rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "--from %s is not a commit", q->from);
                        goto out;
                }
                free(from_sha);
                from_sha = TAKE_PTR(c);
        }
        if (q->dry_run) {
                json_t *list = json_array();
                uint64_t bytes = 0;
                for (size_t i = 0; i < n_files; i++) {
                        char mode[8];
                        snprintf(mode, sizeof(mode), "%06o", (unsigned) files[i].mode);
                        json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:b}", "path", files[i].path, "mode", mode,
                                                              "size", (json_int_t) files[i].size, "untracked",
                                                              files[i].untracked));
                        bytes += files[i].size;
                }
                *ret = json_pack("{s:s, s:s, s:o, s:I, s:I, s:b}", "host_path", repo.toplevel, "head_commit", repo.head,
                                 "files", list, "bytes", (json_int_t) bytes, "skipped_untracked", (json_int_t) skipped,
                                 "dry_run", true);
                goto out;
        }
        vm_paths_init(v, &row, &p);
        if (vms_live_pid(v, &row, &p, &tap) <= 0) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", row.name, row.state);
                goto out;
        }

        l = vms_workspace_lock(v, row.id);
        rc = ship(v, &row, &p, &repo, files, n_files, skipped, from_sha, q, pr, &staging, ret, e);
out:
        if (staging)
                rm_rf(staging);
        if (l)
                vms_workspace_unlock(v, l);
        git_files_free(files, n_files);
        git_repo_done(&repo);
        vm_paths_done(&p);
        vm_row_done(&row);
        return rc;
}

/* ---- export --------------------------------------------------------------- */

static int do_export(struct vms *v, const struct vm_row *row, const char *guest_path, const char *base_c,
                     const char *output, json_t **ret, vm_error *e) {
        _cleanup_free_ char *qbase = NULL, *qpath = NULL;
        int rc;

        qbase = shell_quote(base_c);
        qpath = shell_quote(guest_path);
        /* a temporary index: the guest's own index and work tree stay as they are */
        _cleanup_free_ char *script = xasprintf(
                "set -e; cd %s; base=$(git rev-parse --verify -q %s^{commit}) || { echo \"unknown base commit %s\" >&2; exit 3; }; "
                "idx=\"$(git rev-parse --absolute-git-dir)/banger-export-index\"; rm -f \"$idx\"; "
                "trap 'rm -f \"$idx\"' EXIT; git read-tree --index-output=\"$idx\" \"$base\"; "
                "GIT_INDEX_FILE=\"$idx\" git add -A; "
                "GIT_INDEX_FILE=\"$idx\" git diff --cached --binary \"$base\"; "
                "GIT_INDEX_FILE=\"$idx\" git diff --cached --name-only \"$base\" >&2",
                qpath, qbase, base_c);
        _cleanup_close_ int outfd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (outfd < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -errno, "cannot write %s: %s", output, strerror(errno));
                return rc;
        }
        _cleanup_strv_free_ char **argv = ssh_argv(v, row, script);
        struct spawn_fd_map fds[] = { { 1, outfd } };
        struct spawn_opts so = { .fds = fds, .n_fds = 1, .capture_stderr = true, .timeout_ms = 600000 };
        struct spawn_result res = { 0 };
        rc = spawn_run(argv, &so, &res);
        if (rc < 0 || res.exit_code != 0) {
                rc = vm_fail(e, res.exit_code == 3 ? ART_ERR_BAD_REQUEST : ART_ERR_FAILED, rc < 0 ? rc : -EIO,
                             "exporting the workspace of %s failed: %s", row->name, rc < 0 ? strerror(-rc) : res.err);
                spawn_result_done(&res);
                unlink(output);
                return rc;
        }
        json_t *names = json_array();
        char *save = NULL;
        for (char *tok = strtok_r(res.err, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
                json_array_append_new(names, json_string(tok));
        spawn_result_done(&res);
        struct stat st;
        *ret = json_pack("{s:s, s:s, s:o, s:I}", "base_commit", base_c, "output", output, "files", names, "bytes",
                         (json_int_t) (fstat(outfd, &st) == 0 ? st.st_size : 0));
        store_vm_touch(v->d->store, row->id);
        return 0;
}

int workspace_export(struct vms *v, const char *ref, const char *base, const char *output, json_t **ret, vm_error *e) {
        struct vm_row row = { 0 };
        struct vm_paths p = { 0 };
        struct vm_lock *l = NULL;
        _cleanup_free_ char *tap = NULL, *guest_path = NULL, *base_c = NULL;
        int rc;

        if (!output || output[0] != '/')
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "output must be an absolute path");
        if ((rc = vms_get_row(v, ref, &row, e)) < 0)
                return rc;
        vm_paths_init(v, &row, &p);
        _cleanup_json_ json_t *ws = row.workspace_json ? json_loads(row.workspace_json, 0, NULL) : NULL;
        guest_path = xstrdup(ws && json_string_value(json_object_get(ws, "guest_path"))
                                     ? json_string_value(json_object_get(ws, "guest_path"))
                                     : GUEST_REPO);
        const char *recorded = ws ? json_string_value(json_object_get(ws, "head_commit")) : NULL;
        base_c = xstrdup(base && *base ? base : recorded ? recorded : "HEAD");
        if (vms_live_pid(v, &row, &p, &tap) <= 0) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", row.name, row.state);
                goto out;
        }
        l = vms_workspace_lock(v, row.id);
        rc = do_export(v, &row, guest_path, base_c, output, ret, e);
out:
        if (l)
                vms_workspace_unlock(v, l);
        vm_paths_done(&p);
        vm_row_done(&row);
        return rc;
}
