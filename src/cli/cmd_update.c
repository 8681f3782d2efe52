/* SPDX-License-Identifier: MIT */
/*
 * banger update [--check] [--to VERSION] [--dry-run] [--force]: replaces a
 * system install's five programs with a signed release (docs/UPDATE.md).
 *
 *   1. the manifest (<update_url>/manifest.json) names the target: its
 *      latest_stable or --to; --check says what it would do and stops;
 *   2. root, a system install, and no daemon operation in flight (--force);
 *   3. <cache>/updates, a fresh directory of root's, 0700: the cache dir is
 *      the owner's, so the staging directory is opened once and everything
 *      in it goes through that fd, never through a path the owner could swap;
 *   4. SHA256SUMS and its signature (the compiled-in key), the tarball and
 *      its SHA-256 as SHA256SUMS lists it, its five members extracted;
 *   5. the staged programs say they are the target version, and the staged
 *      bangerd can use this install's store (--check-migrations 0 or 1);
 *      --dry-run stops here;
 *   6. each program is kept as <dst>.previous (a hard link) and replaced by
 *      a rename, the two services restart, the daemon must answer with the
 *      target version and the new `banger doctor` must pass; any failure
 *      from here puts every .previous back and restarts the services again;
 *   7. install.toml records the new build; the .previous copies and the
 *      staging directory go. Units are never touched.
 *
 * Progress goes to stderr as "==> stage: detail", the outcome to stdout.
 */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "fsutil.h"
#include "hostinfo.h"
#include "jsonx.h"
#include "macro.h"
#include "proc_spawn.h"
#include "release.h"
#include "rpc_methods.h"
#include "sha256.h"
#include "strbuf.h"
#include "system.h"
#include "version.h"

#define STAGE_DIR "updates"
#define RUN_TIMEOUT_MS (60 * 1000)
#define DOCTOR_TIMEOUT_MS (180 * 1000)

/* keys/release-signing.pub.pem, embedded at build time (scripts/embed.py) */
extern const char release_signing_pub_pem[];

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
        (void) sig;
        interrupted = 1;
}

struct update {
        struct cli_ctx *ctx;       /* borrowed */
        const char *file;          /* the install file (borrowed) */
        char *manifest_url;        /* owned */
        char *base_url;            /* owned: the manifest's directory, no trailing '/' */
        char *pubkey;              /* owned PEM */
        bool pubkey_from_file;
        struct release_manifest m;
        char *current;             /* owned: the installed version */
        char *target;              /* owned */
        bool explicit_target;      /* --to */
        int lock_fd;               /* <prefix>/bin, flock()ed: one update at a time; -1 */
        int cache_fd, stage_fd;    /* <cache>, <cache>/updates; -1 */
        char *stage_path;          /* owned, for messages */
        char *tarball;             /* owned: its file name */
        char *commit, *built_at;   /* owned: the staged banger's */
        int migrations;            /* the staged bangerd --check-migrations: 0 or 1 */
        bool had[RELEASE_N_MEMBERS];     /* the file existed before the swap */
        bool swapped[RELEASE_N_MEMBERS]; /* replaced (its .previous kept when it had one) */
        bool restarted;            /* the services were (being) restarted */
        char *why;                 /* owned: why the swap phase failed */
};

_printf_(3, 4) static void step(struct update *u, const char *stage, const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        cli_progress_note(u->ctx, stage, sb.buf);
}

/* Failures after the swap are reported once, with the rollback's outcome. */
_printf_(3, 4) static int set_why(struct update *u, int err, const char *fmt, ...) {
        struct strbuf sb = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        free(u->why);
        u->why = strbuf_detach(&sb, NULL);
        return err < 0 ? err : -EIO;
}

/* ---- downloads ------------------------------------------------------------- */

struct sink {
        int fd;             /* -1: into mem */
        struct strbuf *mem;
        struct sha256 sha;
        uint64_t got, max;
        int err;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
        struct sink *s = ud;
        size_t len = size * n;
        if (s->got + len > s->max) {
                s->err = -EFBIG;
                return 0;
        }
        int r = s->fd >= 0 ? write_all(s->fd, p, len) : 0;
        if (r < 0) {
                s->err = r;
                return 0;
        }
        if (s->fd < 0)
                strbuf_add(s->mem, p, len);
        sha256_update(&s->sha, p, len);
        s->got += len;
        return len;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        struct sink *s = ud;
        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        if (!interrupted)
                return 0;
        s->err = -EINTR;
        return 1;
}

static CURLcode perform(const char *url, struct sink *s, char errbuf[CURL_ERROR_SIZE]) {
        CURL *c = curl_easy_init();
        if (!c)
                return CURLE_OUT_OF_MEMORY;
        _cleanup_free_ char *agent = xasprintf("banger/%s", banger_version());
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* < 1 KiB/s for 60 s: give up */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, agent);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) s->max);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        return cc;
}

/* GETs url (at most max bytes) into fd, or into *mem when fd < 0; the
 * SHA-256 of what came in ret_hex. 0, or a reported -errno. */
static int download(struct update *u, const char *url, int fd, struct strbuf *mem, uint64_t max, char ret_hex[65]) {
        struct sink s = { .fd = fd, .mem = mem, .max = max };
        char errbuf[CURL_ERROR_SIZE] = "", hex[65];
        if (sha256_init(&s.sha) < 0)
                return cli_fail(u->ctx, -ENOMEM, "cannot hash %s", url);
        CURLcode cc = perform(url, &s, errbuf);
        sha256_final_hex(&s.sha, hex);
        if (s.err == -EFBIG || cc == CURLE_FILESIZE_EXCEEDED)
                return cli_fail(u->ctx, -EFBIG, "%s is larger than %llu bytes: refused", url, (unsigned long long) max);
        if (s.err == -EINTR)
                return cli_fail(u->ctx, -EINTR, "interrupted while downloading %s", url);
        if (s.err < 0)
                return cli_fail(u->ctx, s.err, "writing %s: %s", url, strerror(-s.err));
        if (cc != CURLE_OK)
                return cli_fail(u->ctx, -EIO, "downloading %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (ret_hex)
                memcpy(ret_hex, hex, sizeof(hex));
        return 0;
}

static int fetch_text(struct update *u, const char *url, uint64_t max, char **ret, size_t *ret_len) {
        struct strbuf sb = STRBUF_INIT;
        int r = download(u, url, -1, &sb, max, NULL);
        if (r < 0) {
                strbuf_release(&sb);
                return r;
        }
        *ret = strbuf_detach(&sb, ret_len);
        return 0;
}

/* ---- where, what, which ------------------------------------------------------ */

static bool http_url(const char *s) {
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static int manifest_location(struct update *u, struct cli_args *a) {
        struct cli_ctx *ctx = u->ctx;
        const char *flag = cli_flag(a, "manifest-url");
        if (flag) {
                const char *slash = http_url(flag) ? strrchr(flag, '/') : NULL;
                if (!slash || slash < strstr(flag, "://") + 3)
                        return cli_fail(ctx, -EINVAL, "--manifest-url must be an http:// or https:// URL of a file");
                u->manifest_url = xstrdup(flag);
                return 0;
        }
        struct config *cfg = NULL;
        _cleanup_free_ char *err = NULL;
        if (hostinfo_load_config(&ctx->layout, &cfg, &err) < 0)
                return cli_fail(ctx, -EINVAL, "%s", err);
        size_t n = strlen(cfg->update_url);
        while (n > 0 && cfg->update_url[n - 1] == '/')
                n--;
        if (n > 0)
                u->manifest_url = xasprintf("%.*s/manifest.json", (int) n, cfg->update_url);
        config_free(cfg);
        if (!u->manifest_url)
                return cli_fail(ctx, -ENOENT, "update_url is not set: set it in %s to where banger's releases "
                                              "are published (docs/UPDATE.md)",
                                ctx->layout.config_file);
        return 0;
}

static int load_source(struct update *u, struct cli_args *a) {
        const char *keyfile = cli_flag(a, "pubkey-file");
        size_t len;
        int r = manifest_location(u, a);
        if (r < 0)
                return r;
        u->base_url = xstrndup(u->manifest_url, (size_t) (strrchr(u->manifest_url, '/') - u->manifest_url));
        if (!keyfile) {
                u->pubkey = xstrdup(release_signing_pub_pem);
                return 0;
        }
        if ((r = read_file(keyfile, RELEASE_PUBKEY_MAX, &u->pubkey, &len)) < 0)
                return cli_fail(u->ctx, r, "--pubkey-file %s: %s", keyfile, strerror(-r));
        u->pubkey_from_file = true;
        return 0;
}

static int load_manifest(struct update *u, struct cli_args *a) {
        _cleanup_free_ char *text = NULL, *err = NULL;
        const char *to = cli_flag(a, "to");
        size_t len;
        int r = fetch_text(u, u->manifest_url, RELEASE_MANIFEST_MAX, &text, &len);
        if (r < 0)
                return r;
        if (release_manifest_parse(text, len, &u->m, &err) < 0)
                return cli_fail(u->ctx, -EINVAL, "%s (from %s)", err, u->manifest_url);
        if (to && to[0] == 'v')
                to++;
        if (to && !release_version_valid(to))
                return cli_fail(u->ctx, -EINVAL, "--to '%s' is not a version (X.Y.Z)", cli_flag(a, "to"));
        if (to && !release_manifest_has(&u->m, to))
                return cli_fail(u->ctx, -ENOENT, "there is no release %s (the latest stable one is %s)", to,
                                u->m.latest_stable);
        u->target = xstrdup(to ? to : u->m.latest_stable);
        u->explicit_target = to != NULL;
        const struct cli_ctx *ctx = u->ctx;
        u->current = xstrdup(ctx->system && ctx->install.version ? ctx->install.version : banger_version());
        return 0;
}

/* 1 when there is nothing to do (said so), 0 to go on. */
static int report_state(struct update *u, bool check) {
        int cmp = release_version_valid(u->current) ? release_version_compare(u->target, u->current)
                                                    : (strcmp(u->target, u->current) == 0 ? 0 : 1);
        bool nothing = cmp == 0 || (cmp < 0 && !u->explicit_target);
        if (check && u->ctx->json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "current", u->current, "latest_stable",
                                                     u->m.latest_stable, "target", u->target, "available", !nothing);
                cli_print_json(j);
                return 1;
        }
        if (cmp == 0)
                printf("banger %s is up to date\n", u->current);
        else if (nothing)
                printf("banger %s is up to date (newer than the latest stable release, %s)\n", u->current, u->target);
        else if (!check)
                return 0;
        else
                printf("%s available: %s -> %s\n", cmp > 0 ? "update" : "downgrade", u->current, u->target);
        return 1;
}

static int preflight(struct update *u) {
        struct cli_ctx *ctx = u->ctx;
        if (geteuid() != 0)
                return cli_fail(ctx, -EPERM, "update needs root: sudo banger update (--check works as anyone)");
        if (ctx->install_error)
                return cli_fail(ctx, -EINVAL, "%s", ctx->install_error);
        if (!ctx->system)
                return cli_fail(ctx, -ENOENT, "banger update updates a system install, and %s does not exist "
                                              "(sudo banger system install)",
                                system_install_file());
        _cleanup_free_ char *bin = path_join(ctx->install.prefix, "bin");
        u->lock_fd = open(bin, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u->lock_fd < 0)
                return cli_fail(ctx, -errno, "%s: %s", bin, strerror(errno));
        if (flock(u->lock_fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? cli_fail(ctx, -EBUSY, "another banger update is running")
                                            : cli_fail(ctx, -errno, "cannot lock %s: %s", bin, strerror(errno));
        return 0;
}

/* The daemon's in-flight operations: a restart must not cut one in half. */
static int check_operations(struct update *u, bool force) {
        struct cli_ctx *ctx = u->ctx;
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:b}", "running_only", true);
        _cleanup_strbuf_ struct strbuf ops = STRBUF_INIT;
        size_t k;
        json_t *op;
        if (cli_try_connect(ctx) < 0)
                return 0; /* not running: nothing in flight */
        int r = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_DAEMON_OPERATIONS_LIST, params, &res);
        cli_disconnect(ctx);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(res, "operations"), k, op) {
                const char *st = json_string_value(json_object_get(op, "state"));
                if (st && strcmp(st, "running") != 0)
                        continue;
                strbuf_addf(&ops, "%s%s %s %s", ops.len ? ", " : "", json_string_value(json_object_get(op, "id")),
                            json_string_value(json_object_get(op, "kind")),
                            json_string_value(json_object_get(op, "target")));
        }
        if (!ops.len)
                return 0;
        if (!force)
                return cli_fail(ctx, -EBUSY, "operations are in flight (%s): wait for them, or --force", ops.buf);
        fprintf(stderr, "banger: warning: updating while operations are in flight (%s)\n", ops.buf);
        return 0;
}

/* ---- the staging directory ---------------------------------------------------- */

/* Unlinks everything in a directory (by its fd); a subdirectory is an error. */
static int empty_dir(int dfd) {
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        int r = 0;
        if (!d) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                return r;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 && unlinkat(dfd, de->d_name, 0) < 0)
                        r = -errno;
        closedir(d);
        return r;
}

static bool same_inode(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Whatever a previous run left as <cache>/updates: root's directory is
 * emptied through its fd and removed, a link or a file is unlinked; a
 * directory of someone else's is refused (root does not walk a tree the
 * owner can change under it). */
static int stage_clear(struct update *u) {
        struct stat st, st2;
        if (fstatat(u->cache_fd, STAGE_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(u->cache_fd, STAGE_DIR, 0) < 0 ? -errno : 0;
        if (st.st_uid != 0)
                return -EPERM;
        _cleanup_close_ int fd = openat(u->cache_fd, STAGE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st2) < 0)
                return -errno;
        if (!same_inode(&st, &st2))
                return -EAGAIN;
        int r = empty_dir(fd);
        if (r < 0)
                return r;
        return unlinkat(u->cache_fd, STAGE_DIR, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

static int stage_open(struct update *u) {
        struct cli_ctx *ctx = u->ctx;
        const char *cache = ctx->install.cache_dir;
        struct stat st;
        u->stage_path = path_join(cache, STAGE_DIR);
        u->cache_fd = open(cache, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (u->cache_fd < 0)
                return cli_fail(ctx, -errno, "%s: %s (start banger once: sudo banger system restart)", cache,
                                strerror(errno));
        int r = stage_clear(u);
        if (r < 0)
                return cli_fail(ctx, r, "cannot clear %s: %s%s", u->stage_path, strerror(-r),
                                r == -EPERM ? " (it is not root's: remove it)" : "");
        if (mkdirat(u->cache_fd, STAGE_DIR, 0700) < 0)
                return cli_fail(ctx, -errno, "cannot create %s: %s", u->stage_path, strerror(errno));
        _cleanup_close_ int fd = openat(u->cache_fd, STAGE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != 0 || fchmod(fd, 0700) < 0)
                return cli_fail(ctx, -EPERM, "%s was replaced while it was being created", u->stage_path);
        u->stage_fd = TAKE_FD(fd); /* ours from here on: emptied and removed at the end */
        return 0;
}

static void stage_remove(struct update *u) {
        struct stat a, b;
        if (u->stage_fd >= 0) {
                (void) empty_dir(u->stage_fd);
                /* by name only while the name is still ours */
                if (fstat(u->stage_fd, &a) == 0 && fstatat(u->cache_fd, STAGE_DIR, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
                    same_inode(&a, &b))
                        (void) unlinkat(u->cache_fd, STAGE_DIR, AT_REMOVEDIR);
                close(u->stage_fd);
                u->stage_fd = -1;
        }
        if (u->cache_fd >= 0)
                close(u->cache_fd);
        u->cache_fd = -1;
}

/* A staged file by the directory fd we hold (for exec and copies). */
static char *staged(const struct update *u, const char *name) {
        return xasprintf("/proc/%d/fd/%d/%s", (int) getpid(), u->stage_fd, name);
}

/* ---- download and verify ---------------------------------------------------- */

static int fetch_sums(struct update *u, struct release_sums *ret) {
        _cleanup_free_ char *sums_url = xasprintf("%s/%s/SHA256SUMS", u->base_url, u->target);
        _cleanup_free_ char *sig_url = xasprintf("%s.sig", sums_url);
        _cleanup_free_ char *sums = NULL, *sig = NULL, *err = NULL;
        size_t sums_len, sig_len;
        int r;
        step(u, "download", "%s (and .sig)", sums_url);
        if ((r = fetch_text(u, sums_url, RELEASE_SUMS_MAX, &sums, &sums_len)) < 0 ||
            (r = fetch_text(u, sig_url, RELEASE_SIG_MAX, &sig, &sig_len)) < 0)
                return r;
        const char *key = u->pubkey_from_file ? "the --pubkey-file key" : "banger's release key";
        r = release_verify(u->pubkey, strlen(u->pubkey), sums, sums_len, sig, sig_len, &err);
        if (r < 0)
                return cli_fail(u->ctx, r, "release %s refused: %s%s%s", u->target, err, r == -EBADMSG ? " with " : "",
                                r == -EBADMSG ? key : "");
        step(u, "verify", "SHA256SUMS is signed with %s", key);
        if (release_sums_parse(sums, sums_len, ret, &err) < 0)
                return cli_fail(u->ctx, -EINVAL, "release %s refused: %s", u->target, err);
        return 0;
}

static int fetch_tarball(struct update *u, const struct release_sums *sums) {
        u->tarball = release_tarball_name(u->target);
        const char *want = release_sums_find(sums, u->tarball);
        _cleanup_free_ char *url = xasprintf("%s/%s/%s", u->base_url, u->target, u->tarball);
        char got[65];
        if (!want)
                return cli_fail(u->ctx, -ENOENT, "release %s refused: its SHA256SUMS does not list %s", u->target,
                                u->tarball);
        _cleanup_close_ int fd = openat(u->stage_fd, u->tarball, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                        0600);
        if (fd < 0)
                return cli_fail(u->ctx, -errno, "cannot create %s/%s: %s", u->stage_path, u->tarball, strerror(errno));
        step(u, "download", "%s", url);
        int r = download(u, url, fd, NULL, RELEASE_TARBALL_MAX, got);
        if (r < 0)
                return r;
        if (strcmp(got, want) != 0)
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: %s has SHA-256 %s, but the signed SHA256SUMS says %s",
                                u->target, u->tarball, got, want);
        step(u, "verify", "%s matches the signed SHA256SUMS", u->tarball);
        return 0;
}

/* ---- extract ----------------------------------------------------------------- */

static int extract_member(struct update *u, struct archive *a, const char *name) {
        _cleanup_close_ int fd = openat(u->stage_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
        char buf[1 << 16];
        uint64_t total = 0;
        la_ssize_t n;
        if (fd < 0)
                return cli_fail(u->ctx, -errno, "cannot create %s/%s: %s", u->stage_path, name, strerror(errno));
        while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
                total += (uint64_t) n;
                if (total > RELEASE_MEMBER_MAX)
                        return cli_fail(u->ctx, -EFBIG, "release %s refused: %s is larger than %llu bytes", u->target,
                                        name, (unsigned long long) RELEASE_MEMBER_MAX);
                int r = write_all(fd, buf, (size_t) n);
                if (r < 0)
                        return cli_fail(u->ctx, r, "writing %s/%s: %s", u->stage_path, name, strerror(-r));
        }
        if (n < 0)
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: reading %s from the tarball: %s", u->target, name,
                                archive_error_string(a));
        if (fchmod(fd, 0755) < 0 || fsync(fd) < 0)
                return cli_fail(u->ctx, -errno, "%s/%s: %s", u->stage_path, name, strerror(errno));
        return 0;
}

/* Exactly the five programs, regular files at the root, each once. */
static int check_entry(struct update *u, struct archive_entry *e, bool seen[RELEASE_N_MEMBERS]) {
        const char *name = archive_entry_pathname(e);
        int k = release_member_index(name);
        if (k < 0)
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: the tarball holds '%s', which is not one of "
                                                  "banger's five programs",
                                u->target, name ? name : "");
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || archive_entry_symlink(e))
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: '%s' in the tarball is not a regular file",
                                u->target, name);
        if (seen[k])
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: '%s' is in the tarball twice", u->target, name);
        if (archive_entry_size_is_set(e) && archive_entry_size(e) > (la_int64_t) RELEASE_MEMBER_MAX)
                return cli_fail(u->ctx, -EFBIG, "release %s refused: %s is larger than %llu bytes", u->target, name,
                                (unsigned long long) RELEASE_MEMBER_MAX);
        seen[k] = true;
        return 0;
}

static int extract_all(struct update *u, struct archive *a) {
        bool seen[RELEASE_N_MEMBERS] = { false };
        struct archive_entry *e;
        int r, ar;
        while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                if ((r = check_entry(u, e, seen)) < 0 || (r = extract_member(u, a, archive_entry_pathname(e))) < 0)
                        return r;
        }
        if (ar != ARCHIVE_EOF)
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: %s is not a gzip'd tar: %s", u->target,
                                u->tarball, archive_error_string(a));
        for (int k = 0; k < RELEASE_N_MEMBERS; k++)
                if (!seen[k])
                        return cli_fail(u->ctx, -EBADMSG, "release %s refused: the tarball lacks %s", u->target,
                                        release_members[k]);
        return 0;
}

static int extract(struct update *u) {
        _cleanup_close_ int fd = openat(u->stage_fd, u->tarball, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return cli_fail(u->ctx, -errno, "%s/%s: %s", u->stage_path, u->tarball, strerror(errno));
        struct archive *a = archive_read_new();
        if (!a)
                return cli_fail(u->ctx, -ENOMEM, "cannot allocate an archive reader");
        archive_read_support_filter_gzip(a);
        archive_read_support_format_tar(a);
        int r = archive_read_open_fd(a, fd, 1 << 16) == ARCHIVE_OK
                        ? extract_all(u, a)
                        : cli_fail(u->ctx, -EBADMSG, "release %s refused: %s is not a gzip'd tar: %s", u->target,
                                   u->tarball, archive_error_string(a));
        archive_read_free(a);
        if (r == 0)
                step(u, "stage", "%s, %s, %s, %s and %s in %s", release_members[4], release_members[3], release_members[2],
                     release_members[1], release_members[0], u->stage_path);
        return r;
}

/* ---- sanity --------------------------------------------------------------------- */

/* Runs a staged program: 0 when it ran (its exit code in res), else reported. */
static int run_staged(struct update *u, const char *name, char *const args[], struct spawn_result *res) {
        _cleanup_free_ char *bin = staged(u, name);
        char *argv[8] = { bin };
        for (int k = 0; k < 6 && args[k]; k++)
                argv[k + 1] = args[k];
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = RUN_TIMEOUT_MS };
        int r = spawn_run(argv, &o, res);
        return r < 0 ? cli_fail(u->ctx, r, "cannot run the staged %s: %s", name, strerror(-r)) : 0;
}

static char *first_line(const struct spawn_result *res) {
        const char *s = res->err_len ? res->err : res->out;
        return xstrndup(s, strcspn(s, "\n"));
}

/* "<name> v<target> (commit ...": the programs say which release they are. */
static int check_says_version(struct update *u, const char *name) {
        struct spawn_result res = { 0 };
        char *args[] = { (char *) "--version", NULL };
        _cleanup_free_ char *want = xasprintf("%s v%s (", name, u->target), *line = NULL;
        int r = run_staged(u, name, args, &res);
        if (r == 0 && (res.exit_code != 0 || strncmp(res.out, want, strlen(want)) != 0)) {
                line = first_line(&res);
                r = cli_fail(u->ctx, -EBADMSG, "release %s refused: the staged %s says '%s'", u->target, name, line);
        }
        spawn_result_done(&res);
        return r;
}

static int read_build(struct update *u) {
        struct spawn_result res = { 0 };
        char *args[] = { (char *) "--json", (char *) "version", NULL };
        int r = run_staged(u, "banger", args, &res);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *j = res.exit_code == 0 ? json_loadb(res.out, res.out_len, 0, NULL) : NULL;
        spawn_result_done(&res);
        const char *v = json_string_value(json_object_get(j, "version"));
        const char *c = json_string_value(json_object_get(j, "commit"));
        const char *b = json_string_value(json_object_get(j, "built_at"));
        if (!v || !c || !b || strcmp(v, u->target) != 0)
                return cli_fail(u->ctx, -EBADMSG, "release %s refused: the staged banger's --json version is not "
                                                  "{version %s, commit, built_at}",
                                u->target, u->target);
        u->commit = xstrdup(c);
        u->built_at = xstrdup(b);
        return 0;
}

/* The staged bangerd on this install's store: 0 up to date, 1 migrations
 * it will apply; 2 (newer than it knows, or unreadable) aborts. */
static int check_migrations(struct update *u) {
        struct spawn_result res = { 0 };
        char *args[] = { (char *) "--check-migrations", (char *) "--system", (char *) "--install", (char *) u->file,
                         NULL };
        int r = run_staged(u, "bangerd", args, &res);
        if (r < 0)
                return r;
        _cleanup_free_ char *line = first_line(&res);
        if (res.exit_code == 0 || res.exit_code == 1)
                u->migrations = res.exit_code;
        else
                r = cli_fail(u->ctx, -EPROTO, "release %s refused: its bangerd cannot use this install's store "
                                              "(--check-migrations exit %d: %s)",
                             u->target, res.exit_code, line);
        spawn_result_done(&res);
        return r;
}

static int sanity(struct update *u) {
        int r;
        if ((r = check_says_version(u, "banger")) < 0 || (r = check_says_version(u, "bangerd")) < 0 ||
            (r = check_says_version(u, "bangerd-root")) < 0 || (r = read_build(u)) < 0 ||
            (r = check_migrations(u)) < 0)
                return r;
        step(u, "check", "the staged programs are v%s (commit %s); the store is %s", u->target, u->commit,
             u->migrations ? "behind (the new bangerd migrates it)" : "up to date");
        return 0;
}

static int stage(struct update *u) {
        struct release_sums sums = { 0 };
        int r = stage_open(u);
        if (r == 0)
                r = fetch_sums(u, &sums);
        if (r == 0)
                r = fetch_tarball(u, &sums);
        release_sums_done(&sums);
        if (r == 0)
                r = extract(u);
        if (r == 0)
                r = sanity(u);
        return r;
}

/* ---- swap, restart, doctor, rollback ----------------------------------------- */

static char *dest(const struct update *u, int k) {
        const struct install_info *i = &u->ctx->install;
        return xasprintf("%s/%s/%s", i->prefix, release_member_is_lib(k) ? "lib/banger" : "bin", release_members[k]);
}

/* <dst>.previous is a hard link to the current file, then the staged one
 * is renamed over <dst>: <dst> is there, old or new, at every moment. */
static int swap_one(struct update *u, int k) {
        _cleanup_free_ char *dst = dest(u, k), *prev = xasprintf("%s.previous", dst);
        _cleanup_free_ char *tmp = xasprintf("%s.new", dst), *src = staged(u, release_members[k]);
        struct stat st;
        int r = 0;
        if (unlink(prev) < 0 && errno != ENOENT)
                return set_why(u, -errno, "cannot remove the old %s: %s", prev, strerror(errno));
        u->had[k] = lstat(dst, &st) == 0;
        if (u->had[k] && link(dst, prev) < 0)
                return set_why(u, -errno, "cannot keep %s as %s: %s", dst, prev, strerror(errno));
        r = copy_file_sparse(src, tmp, 0700);
        if (r == 0 && (chown(tmp, 0, 0) < 0 || chmod(tmp, 0755) < 0))
                r = -errno;
        if (r == 0 && rename(tmp, dst) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                if (u->had[k])
                        (void) unlink(prev); /* dst is still the old one */
                return set_why(u, r, "cannot install %s: %s", dst, strerror(-r));
        }
        u->swapped[k] = true;
        return 0;
}

static int swap_all(struct update *u) {
        const struct install_info *i = &u->ctx->install;
        step(u, "swap", "%s/bin and %s/lib/banger (the current programs kept as *.previous)", i->prefix, i->prefix);
        _cleanup_free_ char *lib = path_join(i->prefix, "lib/banger");
        int r = mkdir_p(lib, 0755);
        if (r < 0)
                return set_why(u, r, "cannot create %s: %s", lib, strerror(-r));
        for (int k = 0; k < RELEASE_N_MEMBERS && r == 0; k++)
                r = swap_one(u, k);
        return r;
}

static int ping_version(struct update *u, const char *want) {
        struct cli_ctx *ctx = u->ctx;
        _cleanup_json_ json_t *res = NULL;
        int r = cli_try_connect(ctx);
        if (r == 0)
                r = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_PING, NULL, &res);
        cli_disconnect(ctx);
        if (r < 0)
                return set_why(u, r, "bangerd does not answer at %s", cli_socket_path(ctx));
        const char *v = json_string_value(json_object_get(res, "version"));
        if (want && (!v || strcmp(v, want) != 0))
                return set_why(u, -EPROTO, "bangerd answers as v%s, not v%s", v ? v : "?", want);
        return 0;
}

static int restart(struct update *u, const char *want) {
        u->restarted = true;
        step(u, "restart", "bangerd-root and bangerd (running VMs keep running)");
        int r = system_restart_services(u->ctx, &u->ctx->install, u->file);
        if (r < 0)
                return set_why(u, r, "the services did not restart");
        return ping_version(u, want);
}

/* The FAIL checks of `banger --json doctor`, "check: detail; ...". */
static char *doctor_fails(const struct spawn_result *res) {
        _cleanup_json_ json_t *j = json_loadb(res->out, res->out_len, 0, NULL);
        struct strbuf sb = STRBUF_INIT;
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(j, "checks"), k, c) {
                if (!json_is_string(json_object_get(c, "status")) ||
                    strcmp(json_string_value(json_object_get(c, "status")), "FAIL") != 0)
                        continue;
                strbuf_addf(&sb, "%s%s: %s", sb.len ? "; " : "", json_string_value(json_object_get(c, "check")),
                            json_string_value(json_object_get(c, "detail")));
        }
        if (!sb.len)
                strbuf_addf(&sb, "exit %d: %.200s", res->exit_code, res->err_len ? res->err : res->out);
        return strbuf_detach(&sb, NULL);
}

static int run_doctor(struct update *u) {
        _cleanup_free_ char *bin = system_bin(&u->ctx->install, "banger"), *fails = NULL;
        char *argv[] = { bin, (char *) "--json", (char *) "doctor", NULL };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = DOCTOR_TIMEOUT_MS };
        struct spawn_result res = { 0 };
        step(u, "doctor", "%s doctor", bin);
        /* the new CLI on this install, as `sudo banger doctor` would run */
        setenv("BANGER_INSTALL_FILE", u->file, 1);
        setenv("NO_COLOR", "1", 1);
        int r = spawn_run(argv, &o, &res);
        if (r < 0)
                return set_why(u, r, "cannot run %s doctor: %s", bin, strerror(-r));
        if (res.exit_code != 0) {
                fails = doctor_fails(&res);
                r = set_why(u, -EPROTO, "the new banger doctor fails: %s", fails);
        }
        spawn_result_done(&res);
        return r;
}

static int record(struct update *u) {
        struct install_info *i = &u->ctx->install;
        free(i->version);
        free(i->commit);
        free(i->built_at);
        i->version = xstrdup(u->target);
        i->commit = xstrdup(u->commit);
        i->built_at = xstrdup(u->built_at);
        _cleanup_free_ char *text = install_format(i);
        int r = write_file_atomic(u->file, text, strlen(text), 0644);
        return r < 0 ? set_why(u, r, "writing %s: %s", u->file, strerror(-r)) : 0;
}

/* Every swapped file back from its .previous (or removed when it had none). */
static int restore(struct update *u, struct strbuf *errs) {
        for (int k = RELEASE_N_MEMBERS - 1; k >= 0; k--) {
                if (!u->swapped[k])
                        continue;
                _cleanup_free_ char *dst = dest(u, k), *prev = xasprintf("%s.previous", dst);
                if (u->had[k] ? rename(prev, dst) < 0 : unlink(dst) < 0)
                        strbuf_addf(errs, "%s%s: %s", errs->len ? "; " : "", dst, strerror(errno));
                else
                        u->swapped[k] = false;
        }
        return errs->len ? -EIO : 0;
}

static int rollback(struct update *u, int err) {
        _cleanup_strbuf_ struct strbuf errs = STRBUF_INIT;
        _cleanup_free_ char *why = u->why ? TAKE_PTR(u->why) : xstrdup("the update failed");
        step(u, "rollback", "%s", why);
        int r = restore(u, &errs);
        /* the restored programs only need to answer: they are what ran before */
        if (r == 0 && u->restarted && (r = restart(u, NULL)) < 0)
                strbuf_addstr(&errs, u->why);
        if (r < 0)
                return cli_fail(u->ctx, err, "update to %s failed, and so did the rollback (%s): the previous programs "
                                             "are the *.previous files in %s/bin and %s/lib/banger",
                                u->target, errs.buf, u->ctx->install.prefix, u->ctx->install.prefix);
        return cli_fail(u->ctx, err, "update to %s failed: %s (rolled back to previous install)", u->target, why);
}

static void drop_previous(struct update *u) {
        for (int k = 0; k < RELEASE_N_MEMBERS; k++) {
                _cleanup_free_ char *dst = dest(u, k), *prev = xasprintf("%s.previous", dst);
                if (u->swapped[k] && u->had[k])
                        (void) unlink(prev);
        }
}

/* From the first rename to install.toml: not interruptible (a signal now
 * would leave a half-swapped install); what fails is rolled back. */
static int apply(struct update *u) {
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        sigprocmask(SIG_BLOCK, &block, NULL); /* children start with an empty mask (proc_spawn) */
        int r = swap_all(u);
        if (r == 0)
                r = restart(u, u->target);
        if (r == 0)
                r = run_doctor(u);
        if (r == 0)
                r = record(u);
        if (r < 0)
                return rollback(u, r);
        drop_previous(u);
        /* the new version's man pages; a failure here is reported, not rolled back */
        if (system_write_man_pages(u->ctx, &u->ctx->install) < 0)
                fprintf(stderr, "banger: warning: the man pages in %s/share/man were not refreshed\n",
                        u->ctx->install.prefix);
        if (u->ctx->json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "from", u->current, "to", u->target, "commit",
                                                     u->commit, "built_at", u->built_at);
                cli_print_json(j);
        } else
                printf("updated banger %s -> %s (commit %s, built %s): both services restarted, doctor passes\n",
                       u->current, u->target, u->commit, u->built_at);
        return 0;
}

static int dry_run_report(struct update *u) {
        const struct install_info *i = &u->ctx->install;
        printf("dry run: banger %s (commit %s, built %s) is verified and staged; the update would\n"
               "  replace banger, bangerd, bangerd-root in %s/bin and banger-agent, banger-init in %s/lib/banger\n"
               "    (keeping the current ones as *.previous until it succeeds)\n"
               "  restart bangerd-root and bangerd%s\n"
               "  run the new banger doctor, rolling back if it fails\n"
               "  record %s in %s\n"
               "nothing was changed; the staging directory is removed\n",
               u->target, u->commit, u->built_at, i->prefix, i->prefix,
               u->migrations ? " (the new bangerd migrates the store)" : "", u->target, u->file);
        return 0;
}

static void update_done(struct update *u) {
        stage_remove(u);
        release_manifest_done(&u->m);
        char **owned[] = { &u->manifest_url, &u->base_url, &u->pubkey,   &u->current, &u->target,
                           &u->stage_path,   &u->tarball,  &u->commit,   &u->built_at, &u->why };
        for (size_t k = 0; k < ELEMENTSOF(owned); k++)
                free(*owned[k]);
        if (u->lock_fd >= 0)
                close(u->lock_fd);
        curl_global_cleanup();
}

int cmd_update(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_(update_done) struct update u = { .ctx = ctx, .file = system_install_file(), .lock_fd = -1,
                                                   .cache_fd = -1, .stage_fd = -1 };
        bool check = cli_has(a, "check");
        struct sigaction sa = { .sa_handler = on_signal };
        int r;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (!check && (r = preflight(&u)) < 0)
                return r;
        if ((r = load_source(&u, a)) < 0 || (r = load_manifest(&u, a)) < 0)
                return r;
        if (report_state(&u, check) > 0)
                return 0;
        if ((r = check_operations(&u, cli_has(a, "force"))) < 0 || (r = stage(&u)) < 0)
                return r;
        if (interrupted)
                return cli_fail(ctx, -EINTR, "interrupted; nothing was changed");
        return cli_has(a, "dry-run") ? dry_run_report(&u) : apply(&u);
}
