/* SPDX-License-Identifier: MIT */
/*
 * Kernel import: a kernel the user built or got elsewhere (`kernel import
 * --from DIR`, `image register --kernel F --modules DIR`) into the kernel
 * store: its files and module tree copied into a staging dir, the modules
 * banger-init loads selected, the modules disk made from the whole tree, a
 * vmlinux unpacked where the bzImage allows, then committed like a pull
 * (kernels.c owns the store and the shared steps).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "bzimage.h"
#include "clock.h"
#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "modinfo.h"
#include "modulesdisk.h"
#include "store/store_artifacts.h"

/* dir's directories and regular files into dst (symlinks and anything else
 * stay out: the tree goes into every guest of the kernel). */
static int copy_tree(const char *dir, const char *dst, int depth) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int r = depth > 16 ? -ELOOP : mkdir_p(dst, 0755) < 0 ? -errno : 0;

        if (!d)
                return -errno;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = path_join(dir, de->d_name), *to = path_join(dst, de->d_name);
                struct stat st;
                if (lstat(p, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        r = copy_tree(p, to, depth + 1);
                else if (S_ISREG(st.st_mode))
                        r = copy_file_sparse(p, to, 0644);
        }
        closedir(d);
        return r;
}

/* An imported modules/ dir (lib/modules/<release> of the kernel's build)
 * becomes the modules disk, named by the release its modules were built for. */
static int import_modules_disk(const char *moddir, const char *all, const char *staging, struct op_error *err) {
        _cleanup_free_ char *root = path_join(staging, "modroot"), *disk = path_join(staging, MODULES_DISK_FILE);
        _cleanup_free_ char *release = NULL, *first = NULL;
        DIR *d = opendir(all);
        struct dirent *de;
        while (d && !first && (de = readdir(d)))
                if (fnmatch("*.ko", de->d_name, 0) == 0)
                        first = path_join(all, de->d_name);
        if (d)
                closedir(d);
        if (!first) /* no modules: everything is built in */
                return 0;
        int r = modinfo_release(first, &release, err);
        if (r < 0)
                return r;
        if (!modules_release_valid(release))
                return op_fail(err, -EBADMSG, "%s names no usable kernel release ('%s')", first, release);
        _cleanup_free_ char *tree = xasprintf("%s/lib/modules/%s", root, release);
        r = copy_tree(moddir, tree, 0);
        if (r < 0)
                r = op_fail(err, r, "copying the module tree: %s", strerror(-r));
        else
                r = modules_disk_build(root, release, disk, err);
        rm_rf(root);
        return r;
}

/* What an import records: where it came from, its distribution and
 * architecture (NULL: "" and x86_64). */
struct import_meta {
        const char *source, *distro, *arch;
};

static int do_import(struct artifacts *a, const char *name, const struct import_meta *im, const char *moddir,
                     const char *const files[][2], size_t n_files, struct op_error *err) {
        _cleanup_free_ char *staging = staging_dir(a->layout->kernels_dir, name);
        _cleanup_free_ char *all = path_join(staging, "all-modules"), *mods = path_join(staging, "modules");
        _cleanup_free_ char *order = path_join(staging, "modules.order"), *xp = path_join(staging, "vmlinux");
        _cleanup_free_ char *now = now_rfc3339(), *final_dir = kernel_dir(a, name);
        const char *distro = im->distro ? im->distro : "", *arch = im->arch ? im->arch : "x86_64";
        _cleanup_json_ json_t *mod_order = NULL;
        struct stat st;
        bool pvh = false;
        int rc = 0;

        if (mkdir_p(staging, 0755) < 0)
                rc = op_fail(err, -errno, "cannot create %s: %s", staging, strerror(errno));
        for (size_t i = 0; i < n_files && rc == 0; i++) {
                if (access(files[i][0], F_OK) < 0)
                        continue;
                _cleanup_free_ char *to = path_join(staging, files[i][1]);
                int r = copy_file_sparse(files[i][0], to, 0644);
                if (r < 0)
                        rc = op_fail(err, r, "copying %s: %s", files[i][0], strerror(-r));
        }
        if (rc == 0 && stat(moddir, &st) == 0 && S_ISDIR(st.st_mode)) {
                int r = mkdir_p(all, 0755) < 0 ? -errno : kernel_collect_ko(moddir, all, false);
                if (r < 0)
                        rc = op_fail(err, r, "copying modules: %s", strerror(-r));
        }
        if (rc == 0)
                rc = import_modules_disk(moddir, all, staging, err);
        if (rc == 0) {
                _cleanup_json_ json_t *cat = kernel_catalog();
                json_t *wanted = json_object_get(json_array_get(json_object_get(cat, "kernels"), 0), "modules");
                rc = kernel_select_modules(all, mods, order, wanted, false, &mod_order, err);
        }
        rm_rf(all);
        if (rc == 0 && access(xp, F_OK) < 0)
                rc = kernel_unpack_vmlinux(staging, &pvh, err);
        else if (rc == 0) {
                _cleanup_free_ char *elf = NULL;
                size_t len;
                if (read_file(xp, 512u << 20, &elf, &len) == 0)
                        pvh = elf_has_pvh_note((unsigned char *) elf, len);
        }
        if (rc == 0) {
                json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:b}", "name", name, "distro", distro, "arch",
                                      arch, "kernel_version", "", "source", im->source, "imported_at", now,
                                      "modules_order", mod_order ? mod_order : json_array(), "pvh", pvh);
                rc = kernel_write_manifest(staging, m, err);
                json_decref(m);
        }
        if (rc == 0) {
                struct kernel_row row = { (char *) name, (char *) distro, (char *) arch, (char *) "", final_dir,
                                          (char *) im->source, now };
                rc = kernel_commit(a, name, staging, &row, err);
        }
        if (rc < 0)
                rm_rf(staging);
        return rc;
}

/* A distribution name as recorded ("debian", "ubuntu-24.04"): 1-32 of
 * [a-z0-9._-], starting with a letter or digit. */
static bool distro_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 32 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* The architectures banger knows by name (Debian's spelling is an alias). */
static const char *arch_canonical(const char *s) {
        static const char *const names[][2] = { { "x86_64", "x86_64" }, { "amd64", "x86_64" },
                                                 { "aarch64", "aarch64" }, { "arm64", "aarch64" } };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(s, names[i][0]) == 0)
                        return names[i][1];
        return NULL;
}

/* Checks --distro and --arch; *ret_arch: the canonical name (NULL when arch is). */
static int import_check_meta(const char *distro, const char *arch, const char **ret_arch, struct op_error *err) {
        if (distro && !distro_valid(distro))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL,
                                  "--distro '%s' is not a distribution name (1-32 of a-z 0-9 . _ -)", distro);
        if (arch && !arch_canonical(arch))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--arch '%s' is not one of x86_64, aarch64 (or amd64, arm64)",
                                  arch);
        *ret_arch = arch ? arch_canonical(arch) : NULL;
        return 0;
}

/* Claims `name`, refuses an existing kernel unless force, imports. */
static int import_claimed(struct artifacts *a, const char *name, const struct import_meta *im, const char *moddir,
                          const char *const files[][2], size_t n_files, bool force, struct op_error *err) {
        _cleanup_free_ char *key = xasprintf("kernel:%s", name);
        struct kernel_row row;
        int rc = 0;
        if (!inflight_begin(a, key, NULL, &rc, err))
                return rc < 0 ? rc : op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST, "kernel '%s' was just created", name);
        if (store_kernel_get(a->store, name, &row) == 0) {
                kernel_row_done(&row);
                if (!force)
                        rc = op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST, "kernel '%s' exists (use --force to replace it)", name);
        }
        if (rc == 0)
                rc = do_import(a, name, im, moddir, files, n_files, err);
        inflight_end(a, key, rc, err);
        return rc;
}

int kernel_import(struct artifacts *a, const char *name, const struct kernel_import_opts *o, json_t **ret,
                  struct op_error *err) {
        _cleanup_free_ char *vmlinux = NULL, *vmlinuz = NULL, *initrd = NULL, *moddir = NULL, *source = NULL;
        const char *from = o->from, *arch = NULL;
        struct stat st;
        int rc;

        if (!kernel_name_valid(name))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "invalid kernel name '%s' (use A-Z a-z 0-9 . _ -)",
                                name);
        if ((rc = import_check_meta(o->distro, o->arch, &arch, err)) < 0)
                return rc;
        if (!from || from[0] != '/' || stat(from, &st) < 0 || !S_ISDIR(st.st_mode))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--from must be an existing directory (absolute path)");
        vmlinux = path_join(from, "vmlinux");
        vmlinuz = path_join(from, "vmlinuz");
        initrd = path_join(from, "initrd.img");
        moddir = path_join(from, "modules");
        source = xasprintf("import:%s", from);
        if (access(vmlinux, R_OK) < 0 && access(vmlinuz, R_OK) < 0)
                return op_fail_as(err, RPC_BAD_REQUEST, -ENOENT, "%s has neither vmlinux nor vmlinuz", from);
        const char *const files[][2] = { { vmlinux, "vmlinux" }, { vmlinuz, "vmlinuz" }, { initrd, "initrd.img" } };
        struct import_meta im = { source, o->distro, arch };
        rc = import_claimed(a, name, &im, moddir, files, ELEMENTSOF(files), o->force, err);
        return rc < 0 ? rc : kernel_with_initramfs(a, name, ret, err);
}

/* An ELF vmlinux or (anything else) a bzImage: the name the kernel dir gives it. */
static const char *kernel_file_kind(const char *path) {
        unsigned char magic[4] = { 0 };
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t k = fd >= 0 ? read(fd, magic, sizeof(magic)) : -1;
        if (fd >= 0)
                close(fd);
        return k == 4 && memcmp(magic, "\x7f" "ELF", 4) == 0 ? "vmlinux" : "vmlinuz";
}

int kernel_import_file(struct artifacts *a, const char *name, const char *kernel, const char *moddir,
                       struct op_error *err) {
        struct stat st;
        if (!kernel_name_valid(name))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "invalid kernel name '%s'", name);
        if (!moddir || moddir[0] != '/' || stat(moddir, &st) < 0 || !S_ISDIR(st.st_mode))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--modules must be an existing directory (absolute path)");
        struct kernel_row row;
        if (store_kernel_get(a->store, name, &row) == 0) {
                kernel_row_done(&row);
                return op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST,
                                  "a kernel named '%s' exists, and --modules makes one named like the image (pick "
                                  "another image name, or --kernel-ref %s)", name, name);
        }
        _cleanup_free_ char *source = xasprintf("register:%s", kernel);
        const char *const files[][2] = { { kernel, kernel_file_kind(kernel) } };
        struct import_meta im = { source, NULL, NULL };
        return import_claimed(a, name, &im, moddir, files, ELEMENTSOF(files), false, err);
}
