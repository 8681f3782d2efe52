/* SPDX-License-Identifier: MIT */
/*
 * Finished kernel pulls, kept by what they were made from: the catalog
 * entry and the .deb's digest in the signed index. A pull whose package is
 * unchanged takes the files from here instead of downloading, unpacking and
 * building the modules disk again (`--force` always does the real work).
 *
 *   <cache>/kernel-pulls/<name>-<key>/manifest.json   the pull's manifest
 *   <cache>/kernel-pulls/<name>-<key>/<files>         as its "files" name them
 *
 * The key also names the build that derived the files (version, commit,
 * build time), so a changed module selection or modules disk is never
 * served from an older build's entry. Files are hard links where the cache
 * and the state dir share a filesystem, so a kernel's files and its cache
 * entry may be one inode: every file is checked against the manifest's
 * digest on the way out, only the names a pull makes are taken (vmlinux is
 * unpacked again, so whether it boots PVH is never read from here), and an
 * entry that does not match is removed (a miss, never a wrong kernel). The
 * cache dir must be private (ours, 0700), else it is not used. One entry
 * per kernel name; a half-written entry is a dead ".tmp-<pid>" that the
 * next start sweeps.
 *
 * Kernels built from source (kernel_build.c) are kept here too, by their own
 * key (the source .deb, the config fragment, the compiler: never banger's
 * build, as a compile takes tens of minutes). Their entries hold what the
 * build made, vmlinux and config, and no modules; vmlinux is served from
 * here, checked against its digest like every other file.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "sha256.h"
#include "version.h"
#include "jsonx.h"

#define KCACHE_FORMAT "banger-kernel-pull-v1"

char *kernel_cache_key(json_t *entry, const char *deb_sha256) {
        _cleanup_free_ char *canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_free_ char *material = xasprintf(KCACHE_FORMAT "\n%s\n%s\n%s %s %s\n", canon ? canon : "", deb_sha256,
                                                  banger_version(), banger_commit(), banger_built_at());
        char key[65];
        sha256_buf_hex(material, strlen(material), key);
        return xstrndup(key, 16);
}

static char *entry_dir(const struct artifacts *a, const char *name, const char *key) {
        _cleanup_free_ char *base = xasprintf("%s-%s", name, key);
        return path_join(a->kernel_cache_dir, base);
}

/* A name from a manifest's "files": relative, plain components. */
static bool rel_ok(const char *rel) {
        if (!*rel || *rel == '/' || strlen(rel) > 255)
                return false;
        for (const char *c = rel; *c; c++)
                if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
                      strchr("._+-/", *c)))
                        return false;
        return !strstr(rel, "//") && !strstr(rel, "/.") && rel[0] != '.' && rel[strlen(rel) - 1] != '/';
}

/* A built kernel's entry (its manifest's source is "build:..."). */
static bool built(json_t *m) {
        const char *src = json_string_value(json_object_get(m, "source"));
        return src && strncmp(src, "build:", 6) == 0;
}

/* What the entry keeps of a kernel dir: a build's vmlinux and config; a
 * pull's files but vmlinux (unpacked again on a hit). */
static bool kept(json_t *m, const char *rel) {
        return built(m) ? strcmp(rel, "vmlinux") == 0 || strcmp(rel, "config") == 0 : strcmp(rel, "vmlinux") != 0;
}

/* The names a pull or a build leaves. */
static bool pull_file(const char *rel) {
        size_t n = strlen(rel);
        if (strcmp(rel, "vmlinux") == 0)
                return true;
        if (strcmp(rel, "vmlinuz") == 0 || strcmp(rel, "config") == 0 || strcmp(rel, "modules.ext4") == 0 ||
            strcmp(rel, "modules.order") == 0)
                return true;
        return strncmp(rel, "modules/", 8) == 0 && !strchr(rel + 8, '/') && n > 11 && strcmp(rel + n - 3, ".ko") == 0;
}

/* What a hit needs: the boot and module files, and a module order that
 * names only modules the entry has. */
static bool entry_complete(json_t *m) {
        json_t *files = json_object_get(m, "files"), *v;
        size_t i;
        if (built(m))
                return json_object_get(files, "vmlinux") && json_object_get(files, "config") &&
                       json_array_size(json_object_get(m, "modules_order")) == 0;
        if (!json_object_get(files, "vmlinuz") || !json_object_get(files, "modules.ext4") ||
            !json_object_get(files, "modules.order"))
                return false;
        json_array_foreach(json_object_get(m, "modules_order"), i, v) {
                const char *name = json_string_value(v);
                _cleanup_free_ char *rel = name ? xasprintf("modules/%s", name) : NULL;
                if (!rel || !rel_ok(rel) || !pull_file(rel) || !json_object_get(files, rel))
                        return false;
        }
        return true;
}

/* The cache dir: ours and private, made when missing. */
static bool cache_usable(const struct artifacts *a) {
        _cleanup_free_ char *why = NULL;
        int r = mkdir_p(a->kernel_cache_dir, 0700);
        if (r < 0)
                log_debug("kernel cache: cannot create %s: %s", a->kernel_cache_dir, strerror(-r));
        if (ensure_private_dir(a->kernel_cache_dir, geteuid(), true, &why) == 0)
                return true;
        log_warn("kernel cache: not used: %s", why ? why : a->kernel_cache_dir);
        return false;
}

static int link_or_copy(const char *from, const char *to, mode_t mode) {
        return link(from, to) == 0 ? 0 : copy_file_sparse(from, to, mode);
}

/* from/rel to to/rel, the parent made first. */
static int put_file(const char *from_dir, const char *to_dir, const char *rel) {
        _cleanup_free_ char *from = path_join(from_dir, rel), *to = path_join(to_dir, rel);
        char *slash = strrchr(to, '/');
        struct stat st;
        if (lstat(from, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        *slash = '\0';
        int r = mkdir_p(to, 0755);
        *slash = '/';
        return r < 0 ? r : link_or_copy(from, to, st.st_mode & 0644);
}

static json_t *entry_manifest(const char *dir) {
        _cleanup_free_ char *p = path_join(dir, "manifest.json"), *text = NULL;
        size_t len;
        if (read_file_nofollow(p, 1u << 20, &text, &len) < 0)
                return NULL;
        json_t *m = json_loadb(text, len, 0, NULL);
        if (m && json_is_object(m) && json_is_object(json_object_get(m, "files")) &&
            json_is_string(json_object_get(m, "kernel_version")) && json_is_string(json_object_get(m, "modules_release")) &&
            json_is_boolean(json_object_get(m, "pvh")) && json_is_array(json_object_get(m, "modules_order")))
                return m;
        json_decref(m);
        return NULL;
}

int kernel_cache_get(struct artifacts *a, const char *name, const char *key, const char *staging, json_t **ret) {
        _cleanup_free_ char *dir = entry_dir(a, name, key);
        if (!cache_usable(a))
                return 0;
        json_t *m = entry_manifest(dir);
        const char *rel;
        json_t *v;
        int r = m ? 0 : -ENOENT;
        if (r < 0 && access(dir, F_OK) == 0)
                r = -EBADMSG;
        if (r == 0 && !entry_complete(m))
                r = -EBADMSG;
        json_object_foreach(r == 0 ? json_object_get(m, "files") : NULL, rel, v) {
                char hex[65];
                _cleanup_free_ char *got = path_join(staging, rel);
                if (!kept(m, rel))
                        continue;
                if (!rel_ok(rel) || !pull_file(rel) || !json_is_string(v))
                        r = -EBADMSG;
                else if ((r = put_file(dir, staging, rel)) == 0 && (r = sha256_file_hex(got, hex)) == 0 &&
                         strcmp(hex, json_string_value(v)) != 0)
                        r = -EBADMSG;
                if (r < 0)
                        break;
        }
        if (r == 0) {
                *ret = m;
                return 1;
        }
        json_decref(m);
        if (r != -ENOENT) {
                log_warn("kernel cache: %s does not match its manifest (%s): removed, pulling again", dir, strerror(-r));
                rm_rf(dir);
        }
        return 0;
}

/* Other entries of this name (an older package) go. */
static void drop_others(struct artifacts *a, const char *name, const char *keep) {
        _cleanup_(closedirp) DIR *d = opendir(a->kernel_cache_dir);
        _cleanup_free_ char *prefix = xasprintf("%s-", name);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || strcmp(de->d_name, keep) == 0 ||
                    strstr(de->d_name, ".tmp-") || strlen(de->d_name) != strlen(keep))
                        continue;
                _cleanup_free_ char *p = path_join(a->kernel_cache_dir, de->d_name);
                rm_rf(p);
        }
}

void kernel_cache_put(struct artifacts *a, const char *name, const char *key, const char *kdir) {
        _cleanup_free_ char *dir = entry_dir(a, name, key), *tmp = xasprintf("%s.tmp-%d", dir, (int) getpid());
        _cleanup_free_ char *from = path_join(kdir, "manifest.json"), *to = path_join(tmp, "manifest.json");
        _cleanup_json_ json_t *m = entry_manifest(kdir);
        const char *rel;
        json_t *v;
        if (!cache_usable(a))
                return;
        int r = m && entry_complete(m) ? 0 : -EBADMSG;
        if (r == 0 && mkdir(tmp, 0700) < 0 && errno == EEXIST) /* a dead daemon's of our pid */
                rm_rf(tmp);
        if (r == 0 && access(tmp, F_OK) < 0 && mkdir(tmp, 0700) < 0)
                r = -errno;
        if (r == 0)
                r = copy_file_sparse(from, to, 0644);
        json_object_foreach(r == 0 ? json_object_get(m, "files") : NULL, rel, v) {
                if (!kept(m, rel))
                        continue;
                if (!rel_ok(rel) || !pull_file(rel))
                        r = -EBADMSG;
                else
                        r = put_file(kdir, tmp, rel);
                if (r < 0)
                        break;
        }
        if (r == 0) {
                rm_rf(dir); /* the same key again (a --force pull): the new one */
                if (rename(tmp, dir) < 0)
                        r = -errno;
        }
        if (r < 0) {
                log_warn("kernel cache: cannot keep the pull of %s in %s: %s", name, dir, strerror(-r));
                rm_rf(tmp);
                return;
        }
        _cleanup_free_ char *base = xasprintf("%s-%s", name, key);
        drop_others(a, name, base);
}
