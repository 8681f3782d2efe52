/* SPDX-License-Identifier: MIT */
/*
 * `kernel build`: a catalog kernel whose entry has "build"
 * ({"source_package", "config"}) is compiled here, from a Debian source
 * package and a config fragment embedded in banger (catalog/<config>):
 *
 *   resolve    signed InRelease -> Packages -> the source .deb (as a pull)
 *   cache      an earlier build of the same .deb, fragment and toolchain:
 *              its vmlinux and config (kernel_cache.c), no compile
 *   download   the .deb, its SHA256 checked against the index
 *   unpack     usr/src/<package>.tar.xz out of it, into src/ (kernel_source.c)
 *   configure  make allnoconfig, merge_config.sh -m <fragment>, make
 *              olddefconfig; every line of the fragment must be in .config
 *   compile    make -j<cpus> vmlinux, niced, its output lines counted
 *   install    vmlinux (PVH) and config into the kernel dir, src/ removed
 *
 * All of it in the kernel's staging dir, removed on any failure; a cancel
 * (Ctrl-C) kills make's process group. Everything is built in (no
 * modules), so the kernel dir has no modules disk and banger's initramfs
 * loads nothing. Reproducible: the timestamp is the source package's
 * changelog date, user and host "banger", build number 1, no local version
 * from a VCS, and the tree is built in place (no absolute paths end up in
 * vmlinux): the same .deb, fragment and toolchain make the same vmlinux,
 * which is why those three, and nothing of banger's own build, key the
 * cache.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifacts.h"
#include "bzimage.h"
#include "clock.h"
#include "deb.h"
#include "debian.h"
#include "fetch.h"
#include "fsutil.h"
#include "jsonx.h"
#include "kconfig.h"
#include "kernel_build.h"
#include "log.h"
#include "macro.h"
#include "modulesdisk.h"
#include "proc_spawn.h"
#include "sha256.h"
#include "store/store_artifacts.h"
#include "strbuf.h"

/* Bump when the steps below make something else from the same inputs. */
#define KBUILD_RECIPE "banger-kernel-build-v1"
#define KBUILD_STEP_TIMEOUT_MS (10 * 60 * 1000) /* the config steps; the compile has none */

extern const char kernel_fragment_microvm_6_1[];

static const struct {
        const char *file;
        const char *text;
} fragments[] = {
        { "microvm-6.1.config", kernel_fragment_microvm_6_1 },
};

const char *kernel_fragment(const char *file) {
        for (size_t i = 0; file && i < ELEMENTSOF(fragments); i++)
                if (strcmp(fragments[i].file, file) == 0)
                        return fragments[i].text;
        return NULL;
}

bool kernel_entry_built(json_t *entry) {
        return json_is_object(json_object_get(entry, "build"));
}

/* What a compile needs besides gcc and ld (program, Debian package). */
static const char *const build_tools[][2] = {
        { "make", "make" }, { "bc", "bc" }, { "flex", "flex" }, { "bison", "bison" }, { "perl", "perl" },
};
#define LIBELF_HEADER "/usr/include/gelf.h" /* objtool (the ORC unwinder): libelf-dev */
/* The system's tools only, not what a user's PATH adds (a rustup proxy in
 * ~/.cargo/bin writes into $HOME and changes what Kconfig detects): the
 * same host packages, the same build. */
#define KBUILD_PATH "/usr/sbin:/usr/bin:/sbin:/bin"

/* name in KBUILD_PATH, as make will find it: malloc'd path or NULL. */
static char *build_path_find(const char *name) {
        static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                char *p = path_join(dirs[i], name);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

struct build {
        struct artifacts *a;
        const char *name;
        json_t *entry;           /* borrowed */
        const struct progress *p;
        const char *package;     /* borrowed from entry: "linux-source-6.1" */
        const char *frag_file;   /* borrowed from entry */
        const char *fragment;    /* borrowed: the embedded text */
        char frag_sha[65];
        char *toolchain;         /* "gcc (Debian 12.2.0-14) 12.2.0; GNU ld (...) 2.40" */
        char *staging, *src;     /* the kernel's staging dir, the tree in it */
        struct release rel;
        struct deb_package pkg;
        char *deb_url;
        char *ckey;
        int64_t date;            /* the source's changelog date */
        char *release;           /* the kernel's release (uname -r) */
        json_t *cached;          /* the cache entry's manifest on a hit */
        char *env[12];           /* make's environment */
        bool pvh;
};

/* The first line `prog arg` prints (prog from KBUILD_PATH), or NULL. */
static char *first_line(const char *prog, const char *arg) {
        _cleanup_free_ char *path = build_path_find(prog);
        if (!path)
                return NULL;
        char *argv[] = { path, (char *) arg, NULL };
        char *envp[] = { (char *) "PATH=" KBUILD_PATH, (char *) "LC_ALL=C", NULL };
        struct spawn_opts so = { .capture_stdout = true, .timeout_ms = 30000, .envp = envp };
        struct spawn_result res = { 0 };
        char *line = NULL;
        if (spawn_run(argv, &so, &res) == 0 && res.exit_code == 0 && res.out_len)
                line = xstrndup(res.out, strcspn(res.out, "\n"));
        spawn_result_done(&res);
        return line;
}

/* The fragment, and the toolchain that keys the cache with it. */
static int build_inputs(struct build *b, struct op_error *err) {
        json_t *bj = json_object_get(b->entry, "build");
        b->package = json_string_value(json_object_get(bj, "source_package"));
        b->frag_file = json_string_value(json_object_get(bj, "config"));
        b->fragment = kernel_fragment(b->frag_file);
        if (!b->package || !b->fragment)
                return op_fail(err, -ENOENT, "the catalog entry of '%s' names no source package or no config fragment "
                                             "of this banger ('%s')", b->name, strempty(b->frag_file));
        sha256_buf_hex(b->fragment, strlen(b->fragment), b->frag_sha);
        _cleanup_free_ char *cc = first_line("gcc", "--version"), *ld = first_line("ld", "--version");
        if (!cc || !ld)
                return op_fail(err, -ENOENT, "a kernel build needs %s (apt-get install %s)", cc ? "ld" : "gcc",
                               cc ? "binutils" : "gcc");
        b->toolchain = xasprintf("%s; %s", cc, ld);
        return 0;
}

/* The rest of what a compile needs, all missing ones named at once. */
static int build_tools_present(struct op_error *err) {
        struct strbuf progs = STRBUF_INIT, pkgs = STRBUF_INIT;
        for (size_t i = 0; i < ELEMENTSOF(build_tools); i++) {
                _cleanup_free_ char *path = build_path_find(build_tools[i][0]);
                if (path)
                        continue;
                strbuf_addf(&progs, "%s%s", progs.len ? ", " : "", build_tools[i][0]);
                strbuf_addf(&pkgs, " %s", build_tools[i][1]);
        }
        if (access(LIBELF_HEADER, R_OK) < 0) {
                strbuf_addf(&progs, "%slibelf's headers", progs.len ? ", " : "");
                strbuf_addstr(&pkgs, " libelf-dev");
        }
        int r = progs.len ? op_fail(err, -ENOENT, "a kernel build needs %s (apt-get install%s; scripts/setup does)",
                                    progs.buf, pkgs.buf)
                          : 0;
        strbuf_release(&progs);
        strbuf_release(&pkgs);
        return r;
}

/* Signed Release -> Packages -> the source package (as a pull resolves). */
static int build_resolve(struct build *b, struct op_error *err) {
        const char *mirror = config_live_get(b->a->config)->debian_mirror;
        const char *suite = json_string_value(json_object_get(b->entry, "suite"));
        const char *component = json_string_value(json_object_get(b->entry, "component"));
        _cleanup_free_ char *packages = NULL, *msg = NULL;
        size_t plen;
        if (!suite || !component)
                return op_fail(err, -ENOENT, "the catalog entry of '%s' names no suite or component", b->name);
        progress_stage(b->p, "release", "%s/dists/%s/InRelease", mirror, suite);
        int r = mirror_verified_release(b->a, b->staging, mirror, suite, b->p, &b->rel, NULL, err);
        if (r < 0)
                return r;
        progress_stage(b->p, "index", "%s %s (signed %s)", suite, component, b->rel.date ? b->rel.date : "?");
        if ((r = mirror_fetch_packages(&b->rel, mirror, suite, component, b->p, &packages, &plen, err)) < 0)
                return r;
        if ((r = debian_packages_find(packages, plen, b->package, &b->pkg, &msg)) < 0)
                return op_fail(err, r, "%s", msg ? msg : "the source package is not in the index");
        b->deb_url = xasprintf("%s/%s", mirror, b->pkg.filename);
        return 0;
}

/* (recipe, catalog entry, source .deb, fragment, toolchain): never banger's
 * own build, so a new banger does not compile the kernel again. */
static char *build_key(const struct build *b) {
        _cleanup_free_ char *canon = json_dumps(b->entry, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_free_ char *material = xasprintf(KBUILD_RECIPE "\n%s\n%s\n%s\n%s\n", strempty(canon), b->pkg.sha256,
                                                  b->frag_sha, b->toolchain);
        char key[65];
        sha256_buf_hex(material, strlen(material), key);
        return xstrndup(key, 16);
}

/* The vmlinux in staging: a PVH entry note, or no use to banger. */
static int check_vmlinux(struct build *b, struct op_error *err) {
        _cleanup_free_ char *path = path_join(b->staging, "vmlinux"), *elf = NULL;
        size_t len;
        int r = read_file(path, 1u << 30, &elf, &len);
        if (r < 0)
                return op_fail(err, r, "reading %s: %s", path, strerror(-r));
        b->pvh = elf_has_pvh_note((const unsigned char *) elf, len);
        return b->pvh ? 0 : op_fail(err, -EBADMSG, "%s has no PVH entry note (is CONFIG_PVH in %s?)", path, b->frag_file);
}

/* 1 with an earlier build's files in staging, 0 (staging emptied) otherwise. */
static int build_cached(struct build *b, struct op_error *err) {
        json_t *m = NULL;
        if (kernel_cache_get(b->a, b->name, b->ckey, b->staging, &m) == 1) {
                const char *rel = json_string_value(json_object_get(m, "kernel_version"));
                if (rel && modules_release_valid(rel) && check_vmlinux(b, NULL) == 0) {
                        progress_stage(b->p, "cache", "%s %s with %s: the files of an earlier build (%s)", b->package,
                                       b->pkg.version, b->frag_file, b->ckey);
                        b->release = xstrdup(rel);
                        b->cached = m;
                        return 1;
                }
                json_decref(m);
        }
        rm_rf(b->staging);
        return mkdir_p(b->staging, 0755) < 0 ? op_fail(err, -errno, "cannot create %s: %s", b->staging, strerror(errno)) : 0;
}

struct deb_want {
        const char *tarball, *changelog; /* the paths in the .deb */
};

static char *want_source(const char *path, void *ud) {
        const struct deb_want *w = ud;
        if (strcmp(path, w->tarball) == 0)
                return xstrdup("source.tar.xz");
        return strcmp(path, w->changelog) == 0 ? xstrdup("changelog.Debian.gz") : NULL;
}

static bool is_cancelled(void *ud) {
        return progress_cancelled(ud);
}

static void fetch_bytes(void *ud, uint64_t done, uint64_t total) {
        progress_bytes(ud, "download", done, total);
}

/* The .deb (its digest checked), its tarball and changelog, the tree. */
static int build_source(struct build *b, struct op_error *err) {
        _cleanup_free_ char *deb = path_join(b->staging, "source.deb"), *tar = path_join(b->staging, "source.tar.xz");
        _cleanup_free_ char *cl = path_join(b->staging, "changelog.Debian.gz");
        _cleanup_free_ char *tar_in = xasprintf("usr/src/%s.tar.xz", b->package);
        _cleanup_free_ char *cl_in = xasprintf("usr/share/doc/%s/changelog.Debian.gz", b->package);
        struct deb_want w = { tar_in, cl_in };
        int n, r = build_tools_present(err);
        if (r < 0)
                return r;
        progress_stage(b->p, "download", "%s %s (%llu MiB)", b->package, b->pkg.version,
                       (unsigned long long) (b->pkg.size >> 20));
        struct fetch_opts o = { .url = b->deb_url, .expect_sha256 = b->pkg.sha256, .expect_size = b->pkg.size,
                                .progress = fetch_bytes, .cancel = is_cancelled, .ud = (void *) b->p };
        if ((r = fetch_to_file(&o, deb, NULL, err)) < 0)
                return r;
        progress_stage(b->p, "unpack", "%s", tar_in);
        r = deb_extract(deb, b->staging, want_source, &w, &n, err);
        unlink(deb);
        if (r < 0)
                return op_prefix(err, "%s", b->pkg.filename);
        if (access(tar, F_OK) < 0 || access(cl, F_OK) < 0)
                return op_fail(err, -ENOENT, "%s has no %s or no %s", b->pkg.filename, tar_in, cl_in);
        if ((r = kernel_source_date(cl, &b->date, err)) < 0)
                return r;
        r = kernel_source_unpack(tar, b->package, b->src, b->p, err);
        unlink(tar);
        unlink(cl);
        return r;
}

/* make's environment: what makes the build reproducible, nothing of ours. */
static void build_env(struct build *b) {
        char ts[64];
        time_t t = (time_t) b->date;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%a %b %e %H:%M:%S UTC %Y", &tm);
        size_t n = 0;
        b->env[n++] = xstrdup("PATH=" KBUILD_PATH);
        b->env[n++] = xasprintf("HOME=%s", b->src); /* whatever a tool keeps there goes with the tree */
        b->env[n++] = xstrdup("LC_ALL=C");
        b->env[n++] = xstrdup("TZ=UTC");
        b->env[n++] = xasprintf("KBUILD_BUILD_TIMESTAMP=%s", ts);
        b->env[n++] = xstrdup("KBUILD_BUILD_USER=banger");
        b->env[n++] = xstrdup("KBUILD_BUILD_HOST=banger");
        b->env[n++] = xstrdup("KBUILD_BUILD_VERSION=1");
        b->env[n++] = xasprintf("SOURCE_DATE_EPOCH=%lld", (long long) b->date);
        b->env[n] = NULL;
}

/* What a step printed last: the lines that say why it failed. */
static const char *tail_lines(const char *s, size_t len, int lines) {
        while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
                len--;
        const char *p = s + len;
        while (p > s && lines > 0)
                if (*--p == '\n')
                        lines--;
        return p > s ? p + 1 : s;
}

struct make_out {
        const struct progress *p;
        const char *stage; /* NULL: no progress */
        size_t lines, next;
};

static void make_output(void *ud, int stream, const char *buf, size_t len) {
        struct make_out *m = ud;
        for (size_t i = 0; i < len; i++)
                m->lines += buf[i] == '\n';
        if (stream == 1 && m->stage && m->lines >= m->next) {
                progress_stage(m->p, m->stage, "%zu lines of make output", m->lines);
                m->next = m->lines + 250;
        }
}

/* argv in the tree, niced, in its own process group (a cancel kills it
 * whole); a failure says the last lines it printed. */
static int run_step(struct build *b, char *const argv[], const char *what, bool compile, struct op_error *err) {
        struct make_out mo = { b->p, compile ? "compile" : NULL, 0, 250 };
        struct spawn_opts so = { .capture_stdout = true, .capture_stderr = true, .new_pgroup = true,
                                 .die_with_parent = true, .envp = b->env, .cwd = b->src,
                                 .timeout_ms = compile ? 0 : KBUILD_STEP_TIMEOUT_MS, .cancel = is_cancelled,
                                 .cancel_ud = (void *) b->p, .output = make_output, .output_ud = &mo };
        struct spawn_result res = { 0 };
        int r = spawn_run(argv, &so, &res);
        if (r < 0)
                return op_fail(err, r, "cannot run %s: %s", argv[0], strerror(-r));
        if (res.cancelled)
                r = op_fail(err, -ECANCELED, "kernel build cancelled");
        else if (res.timed_out || res.exit_code != 0)
                r = op_fail(err, -EIO, "%s failed (%s %d): %s", what, res.timed_out ? "timed out, status" : "exit",
                            res.exit_code, res.err_len ? tail_lines(res.err, res.err_len, 12)
                                                       : tail_lines(res.out, res.out_len, 12));
        else if (compile)
                log_info("kernel build: %s: %zu lines of make output", b->name, mo.lines);
        spawn_result_done(&res);
        return r;
}

static int run_make(struct build *b, const char *target, bool compile, struct op_error *err) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                cpus = CPU_COUNT(&set);
        _cleanup_free_ char *jobs = xasprintf("-j%ld", cpus > 0 ? cpus : 1), *what = xasprintf("make %s %s", jobs, target);
        if (compile)
                progress_stage(b->p, "compile", "%s (nice 10)", what);
        char *argv[] = { (char *) "nice", (char *) "-n", (char *) "10", (char *) "make", (char *) "ARCH=x86_64",
                         (char *) "LOCALVERSION=", jobs, (char *) target, NULL };
        return run_step(b, argv, what, compile, err);
}

/* allnoconfig + the fragment + olddefconfig, and every line of the
 * fragment in the result (kconfig drops what it cannot satisfy quietly). */
static int build_configure(struct build *b, struct op_error *err) {
        _cleanup_free_ char *frag = path_join(b->staging, b->frag_file), *cfg = path_join(b->src, ".config");
        _cleanup_free_ char *text = NULL;
        struct kconfig_check c = { 0 };
        size_t len;
        progress_stage(b->p, "configure", "allnoconfig + %s (%.12s) + olddefconfig", b->frag_file, b->frag_sha);
        int r = write_file_atomic(frag, b->fragment, strlen(b->fragment), 0644);
        if (r < 0)
                return op_fail(err, r, "writing %s: %s", frag, strerror(-r));
        char *merge[] = { (char *) "sh", (char *) "scripts/kconfig/merge_config.sh", (char *) "-m", (char *) ".config",
                          frag, NULL };
        if ((r = run_make(b, "allnoconfig", false, err)) < 0 || (r = run_step(b, merge, "merge_config.sh", false, err)) < 0 ||
            (r = run_make(b, "olddefconfig", false, err)) < 0)
                return r;
        if ((r = read_file(cfg, 8u << 20, &text, &len)) < 0)
                return op_fail(err, r, "reading %s: %s", cfg, strerror(-r));
        r = kconfig_check_fragment(b->fragment, strlen(b->fragment), text, len, &c);
        if (r < 0)
                op_fail(err, r, "%s: a line that is neither a setting nor a comment: '%s'", b->frag_file, c.report);
        else if (c.dropped)
                r = op_fail(err, -EINVAL, "%s: %zu of its %zu settings are not in the kernel's configuration (their "
                                          "dependencies are not met): %s", b->frag_file, c.dropped, c.options, c.report);
        kconfig_check_done(&c);
        unlink(frag);
        return r;
}

/* vmlinux and config out of the tree, which goes. */
static int build_install(struct build *b, struct op_error *err) {
        _cleanup_free_ char *relf = path_join(b->src, "include/config/kernel.release"), *text = NULL;
        const char *moves[][2] = { { "vmlinux", "vmlinux" }, { ".config", "config" } };
        size_t len;
        progress_stage(b->p, "install", "vmlinux and config");
        int r = read_file(relf, 4096, &text, &len);
        if (r < 0)
                return op_fail(err, r, "reading %s: %s", relf, strerror(-r));
        text[strcspn(text, "\n")] = '\0';
        if (!modules_release_valid(text))
                return op_fail(err, -EBADMSG, "the build names no usable kernel release ('%s')", text);
        b->release = TAKE_PTR(text);
        for (size_t i = 0; i < ELEMENTSOF(moves); i++) {
                _cleanup_free_ char *from = path_join(b->src, moves[i][0]), *to = path_join(b->staging, moves[i][1]);
                if (rename(from, to) < 0)
                        return op_fail(err, -errno, "cannot move %s: %s", from, strerror(errno));
        }
        rm_rf(b->src);
        return check_vmlinux(b, err);
}

/* What the manifest says about the build (a hit keeps the first build's). */
static json_t *build_facts(const struct build *b) {
        json_t *old = b->cached ? json_object_get(b->cached, "build") : NULL;
        if (json_is_object(old))
                return json_incref(old);
        char ts[32];
        time_t t = (time_t) b->date;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "fragment", b->frag_file, "fragment_sha256", b->frag_sha,
                         "toolchain", b->toolchain, "timestamp", ts, "deb_sha256", b->pkg.sha256, "recipe",
                         KBUILD_RECIPE);
}

static int build_commit(struct build *b, struct op_error *err) {
        const char *distro = json_string_value(json_object_get(b->entry, "distro"));
        _cleanup_free_ char *now = now_rfc3339(), *final_dir = kernel_dir(b->a, b->name);
        _cleanup_free_ char *source = xasprintf("build:%s=%s+%.12s", b->package, b->pkg.version, b->frag_sha);
        json_t *facts = build_facts(b);
        json_object_set_new(facts, "cache_key", json_string(b->ckey));
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:b, s:s, s:o}", "name", b->name,
                              "distro", strempty(distro), "arch", "x86_64", "kernel_version", b->release, "package",
                              b->package, "package_version", b->pkg.version, "source", source, "release_date",
                              b->rel.date ? b->rel.date : "", "imported_at", now, "modules_order", "pvh", b->pvh,
                              "modules_release", b->release, "build", facts);
        int r = kernel_write_manifest(b->staging, m, err);
        json_decref(m);
        if (r < 0)
                return r;
        struct kernel_row row = { (char *) b->name, (char *) strempty(distro), (char *) "x86_64", b->release, final_dir,
                                  source, now };
        return kernel_commit(b->a, b->name, b->staging, &row, err);
}

static void build_done(struct build *b) {
        debian_release_done(&b->rel);
        deb_package_done(&b->pkg);
        json_decref(b->cached);
        for (size_t i = 0; b->env[i]; i++)
                free(b->env[i]);
        free(b->toolchain);
        free(b->staging);
        free(b->src);
        free(b->deb_url);
        free(b->ckey);
        free(b->release);
}

static int do_build(struct artifacts *a, const char *name, json_t *entry, bool force, const struct progress *p,
                    struct op_error *err) {
        struct build b = { .a = a, .name = name, .entry = entry, .p = p,
                           .staging = staging_dir(a->layout->kernels_dir, name) };
        int hit = 0;
        b.src = path_join(b.staging, "src");
        int r = mkdir_p(b.staging, 0755) < 0 ? op_fail(err, -errno, "cannot create %s: %s", b.staging, strerror(errno)) : 0;
        if (r == 0)
                r = build_inputs(&b, err);
        if (r == 0)
                r = build_resolve(&b, err);
        if (r == 0) {
                b.ckey = build_key(&b);
                r = hit = force ? 0 : build_cached(&b, err);
        }
        if (r == 0 && (r = build_source(&b, err)) == 0) {
                build_env(&b);
                r = build_configure(&b, err);
        }
        if (r == 0)
                r = run_make(&b, "vmlinux", true, err);
        if (r == 0)
                r = build_install(&b, err);
        if (r >= 0)
                r = build_commit(&b, err);
        if (r == 0 && !hit) {
                _cleanup_free_ char *kdir = kernel_dir(a, name);
                kernel_cache_put(a, name, b.ckey, kdir);
        }
        if (r < 0)
                rm_rf(b.staging);
        build_done(&b);
        return r;
}

/* The catalog entry of a kernel built from source, or an error. */
static int built_entry(const char *name, json_t **ret, struct op_error *err) {
        if (!kernel_name_valid(name))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "invalid kernel name '%s'", name);
        _cleanup_json_ json_t *cat = kernel_catalog();
        json_t *e = catalog_find(cat, "kernels", name);
        if (!e) {
                _cleanup_free_ char *names = catalog_names(cat, "kernels");
                return op_fail_as(err, RPC_NOT_FOUND, -ENOENT, "no kernel '%s' in the catalog (available: %s)", name,
                                  names);
        }
        if (!kernel_entry_built(e)) {
                json_decref(e);
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL,
                                  "kernel '%s' is not built from source: 'banger kernel pull %s' downloads it", name, name);
        }
        *ret = e;
        return 0;
}

int kernel_build(struct artifacts *a, const char *name, bool force, const struct progress *p, json_t **ret,
                 struct op_error *err) {
        _cleanup_json_ json_t *entry = NULL;
        int rc = built_entry(name, &entry, err);
        return rc < 0 ? rc : kernel_obtain(a, name, entry, force, p, do_build, "already_built", ret, err);
}
