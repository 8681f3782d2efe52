/* SPDX-License-Identifier: MIT */
#include "imagebuild.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "debian.h"
#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "priv/priv.h"
#include "sha256.h"
#include "strbuf.h"

/* Guest files every banger image gets. */
static const char sshd_dropin[] =
        "# banger: key-only root login; per-VM host keys come from banger\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n";

static const char agent_unit[] =
        "[Unit]\n"
        "Description=banger guest agent\n"
        "After=local-fs.target\n"
        "\n"
        "[Service]\n"
        "ExecStart=/usr/local/bin/banger-agent\n"
        "Restart=always\n"
        "RestartSec=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n";

/* Room for the files, their inodes and ext4's own metadata, rounded to 64 MiB. */
static uint64_t ext4_size_for(uint64_t bytes, uint64_t floor) {
        uint64_t s = bytes + bytes / 3 + (96ULL << 20);
        s = (s + (64ULL << 20) - 1) & ~((64ULL << 20) - 1);
        return s < floor ? floor : s;
}

static int write_at(const char *root, const char *rel, const char *data, unsigned mode, struct art_error *err) {
        _cleanup_free_ char *p = path_join(root, rel);
        _cleanup_free_ char *dir = xstrdup(p);
        *strrchr(dir, '/') = '\0';
        int r = mkdir_p(dir, 0755);
        if (r == 0)
                r = write_file_atomic(p, data, strlen(data), mode);
        return r < 0 ? art_fail(err, ART_ERR_FAILED, r, "writing %s: %s", p, strerror(-r)) : 0;
}

static int copy_bin(const char *from, const char *to, struct art_error *err) {
        int r = copy_file_sparse(from, to, 0755);
        return r < 0 ? art_fail(err, ART_ERR_FAILED, r, "installing %s: %s", from, strerror(-r)) : 0;
}

/* Our guest files on top of the debootstrapped tree. */
static int customize(struct artifacts *a, const char *root, const char *init_mode, struct art_error *err) {
        static const char *const host_keys[] = { "ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key" };
        int r;

        /* Host keys made at package install would be shared by every VM. */
        for (size_t i = 0; i < ELEMENTSOF(host_keys); i++) {
                _cleanup_free_ char *k = xasprintf("%s/etc/ssh/%s", root, host_keys[i]);
                _cleanup_free_ char *kp = xasprintf("%s.pub", k);
                unlink(k);
                unlink(kp);
        }
        if ((r = write_at(root, "etc/ssh/sshd_config.d/99-banger.conf", sshd_dropin, 0644, err)) < 0 ||
            (r = write_at(root, "etc/hostname", "banger\n", 0644, err)) < 0 ||
            (r = write_at(root, "etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0644, err)) < 0 ||
            (r = write_at(root, "etc/fstab", "# root and /root are mounted by banger-init\n", 0644, err)) < 0)
                return r;
        if (!a->agent_bin)
                return art_fail(err, ART_ERR_FAILED, -ENOENT, "banger-agent not found (set $BANGER_AGENT or install it)");
        _cleanup_free_ char *bin_dir = path_join(root, "usr/local/bin");
        mkdir_p(bin_dir, 0755);
        _cleanup_free_ char *agent = path_join(root, "usr/local/bin/banger-agent");
        if ((r = copy_bin(a->agent_bin, agent, err)) < 0)
                return r;
        if (strcmp(init_mode, "systemd") == 0) {
                if ((r = write_at(root, "etc/systemd/system/banger-agent.service", agent_unit, 0644, err)) < 0)
                        return r;
                _cleanup_free_ char *wants = path_join(root, "etc/systemd/system/multi-user.target.wants");
                mkdir_p(wants, 0755);
                _cleanup_free_ char *link = path_join(wants, "banger-agent.service");
                unlink(link);
                if (symlink("/etc/systemd/system/banger-agent.service", link) < 0)
                        return art_fail(err, ART_ERR_FAILED, -errno, "enabling banger-agent.service: %s", strerror(errno));
                /* systemd makes a machine-id on first boot when the file is empty */
                write_at(root, "etc/machine-id", "", 0444, err);
        }
        return 0;
}

static char *cache_key(struct artifacts *a, json_t *recipe, const char *release_sha) {
        _cleanup_free_ char *canon = json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS);
        char agent_sha[65] = "none", key[65];
        if (a->agent_bin)
                sha256_file_hex(a->agent_bin, agent_sha);
        _cleanup_free_ char *material = xasprintf("banger-image-build-v1\n%s\n%s\n%s\n%s\n", canon, agent_sha,
                                                  a->config->debian_mirror, release_sha);
        sha256_buf_hex(material, strlen(material), key);
        return xstrdup(key);
}

/* Hard link when on the same filesystem, else copy. */
static int link_or_copy(const char *from, const char *to) {
        if (link(from, to) == 0)
                return 0;
        return copy_file_sparse(from, to, 0644);
}

static const char *const cache_files[] = { "rootfs.ext4", "work-seed.ext4", "manifest.json" };

static bool cache_get(const char *cdir, const char *dest) {
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *p = path_join(cdir, cache_files[i]);
                if (access(p, R_OK) < 0)
                        return false;
        }
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *f = path_join(cdir, cache_files[i]), *t = path_join(dest, cache_files[i]);
                if (link_or_copy(f, t) < 0)
                        return false;
        }
        return true;
}

static void cache_put(const char *cache_root, const char *cdir, const char *src) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp-%d", cdir, (int) getpid());
        if (mkdir_p(tmp, 0700) < 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *f = path_join(src, cache_files[i]), *t = path_join(tmp, cache_files[i]);
                if (link_or_copy(f, t) < 0) {
                        rm_rf(tmp);
                        return;
                }
        }
        if (rename(tmp, cdir) < 0)
                rm_rf(tmp);
        (void) cache_root;
}

static bool build_cancelled(void *ud) {
        return progress_cancelled(ud);
}

int imagebuild_debian(struct artifacts *a, json_t *recipe, const char *dest_dir, const struct progress *p,
                      json_t **ret_manifest, struct art_error *err) {
        const char *name = json_string_value(json_object_get(recipe, "name"));
        const char *suite = json_string_value(json_object_get(recipe, "suite"));
        const char *init_mode = json_string_value(json_object_get(recipe, "init_mode"));
        const char *mirror = a->config->debian_mirror;
        _cleanup_free_ char *root = path_join(dest_dir, "tree"), *e = NULL, *key = NULL, *cdir = NULL;
        _cleanup_free_ char *rootfs = path_join(dest_dir, "rootfs.ext4"), *seed = path_join(dest_dir, "work-seed.ext4");
        _cleanup_free_ char *seed_dir = path_join(dest_dir, "seed"), *log = path_join(dest_dir, "build.log");
        _cleanup_free_ char *mpath = path_join(dest_dir, "manifest.json");
        struct release rel = { 0 };
        char release_sha[65];
        int r;

        /* The signed Release names the mirror snapshot the build sees. */
        progress_stage(p, "release", "%s/dists/%s/InRelease", mirror, suite);
        r = mirror_verified_release(a, dest_dir, mirror, suite, p, &rel, release_sha, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *release_date = xstrdup(rel.date ? rel.date : "");
        debian_release_done(&rel);

        key = cache_key(a, recipe, release_sha);
        cdir = path_join(a->build_cache_dir, key);
        if (cache_get(cdir, dest_dir)) {
                progress_stage(p, "cache", "reusing the build of %s for this mirror snapshot (%.12s)", name, key);
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (read_file(mpath, 1u << 20, &text, &len) == 0 && (*ret_manifest = json_loadb(text, len, 0, NULL)))
                        return 0;
                return art_fail(err, ART_ERR_FAILED, -EBADMSG, "cached build %s has an unreadable manifest", cdir);
        }

        size_t np = json_array_size(json_object_get(recipe, "packages"));
        _cleanup_free_ const char **pkgs = xcalloc(np + 1, sizeof(char *));
        for (size_t i = 0; i < np; i++)
                pkgs[i] = json_string_value(json_array_get(json_object_get(recipe, "packages"), i));
        progress_stage(p, "debootstrap", "mmdebstrap %s with %zu packages from %s", suite, np, mirror);
        struct priv_cancel pc = { build_cancelled, (void *) p };
        r = priv_mmdebstrap(suite, mirror, pkgs, root, log, &pc, &e);
        if (r < 0)
                return art_fail(err, ART_ERR_FAILED, r, "%s", e);

        progress_stage(p, "customize", "agent, sshd drop-in, %s init", init_mode);
        r = customize(a, root, init_mode, err);
        if (r < 0)
                return r;

        /* /root moves to the work-seed: in a VM the work disk is mounted there. */
        _cleanup_free_ char *root_home = path_join(root, "root");
        r = rename(root_home, seed_dir);
        if (r == 0)
                r = mkdir(root_home, 0700);
        if (r < 0)
                return art_fail(err, ART_ERR_FAILED, -errno, "moving /root to the work seed: %s", strerror(errno));

        uint64_t bytes = dir_size(root, true);
        uint64_t size = ext4_size_for(bytes, 256ULL << 20);
        progress_stage(p, "mkfs", "rootfs.ext4 %llu MiB for %llu MiB of files", (unsigned long long) (size >> 20),
                       (unsigned long long) (bytes >> 20));
        r = priv_mkfs_ext4_from_dir(root, "banger-root", size, rootfs, &e);
        if (r == 0) {
                free(TAKE_PTR(e));
                r = priv_mkfs_ext4_from_dir(seed_dir, "banger-seed", ext4_size_for(dir_size(seed_dir, true), 32ULL << 20),
                                            seed, &e);
        }
        rm_rf(root);
        rm_rf(seed_dir);
        if (r < 0)
                return art_fail(err, ART_ERR_FAILED, r, "%s", e);

        char rsha[65], ssha[65];
        sha256_file_hex(rootfs, rsha);
        sha256_file_hex(seed, ssha);
        _cleanup_free_ char *now = now_rfc3339();
        json_t *m = json_pack("{s:i, s:s, s:s, s:O, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:O}", "format", 1, "name", name,
                              "init_mode", init_mode, "kernel_ref", json_object_get(recipe, "kernel_ref"),
                              "rootfs_sha256", rsha, "rootfs_size_bytes", (json_int_t) size, "work_seed_sha256", ssha,
                              "built_at", now, "mirror", mirror, "release_date", release_date, "release_sha256",
                              release_sha, "recipe", recipe);
        _cleanup_free_ char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        r = write_file_atomic(mpath, text, strlen(text), 0644);
        if (r < 0) {
                json_decref(m);
                return art_fail(err, ART_ERR_FAILED, r, "writing %s", mpath);
        }
        if (mkdir_p(a->build_cache_dir, 0700) == 0)
                cache_put(a->build_cache_dir, cdir, dest_dir);
        *ret_manifest = m;
        return 0;
}
