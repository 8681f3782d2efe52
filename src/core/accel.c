/* SPDX-License-Identifier: MIT */
#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "proc_spawn.h"
#include "procscan.h"
#include "sha256.h"
#include "strbuf.h"

unsigned host_tsc_khz(void) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file("/proc/cpuinfo", 4u << 20, &text, &len) < 0)
                return 0;
        const char *m = strstr(text, "cpu MHz");
        const char *colon = m ? strchr(m, ':') : NULL;
        return colon ? (unsigned) (strtod(colon + 1, NULL) * 1000.0) : 0;
}

/* The guest kernel's hash: the one its manifest.json (next to it) recorded
 * at pull/import, so start-up and doctor do not re-hash 50 MB; the file
 * itself only when there is no manifest. */
static void identity(const char *vmlinux, struct accel_verdict *v) {
        _cleanup_free_ char *dir = xstrdup(vmlinux), *text = NULL;
        _cleanup_json_ json_t *m = NULL;
        struct utsname u;
        size_t len;

        uname(&u);
        snprintf(v->host_kernel, sizeof(v->host_kernel), "%s", u.release);
        char *slash = strrchr(dir, '/');
        if (slash) {
                *slash = '\0';
                _cleanup_free_ char *mp = path_join(dir, "manifest.json");
                if (read_file(mp, 4u << 20, &text, &len) == 0 && (m = json_loadb(text, len, 0, NULL))) {
                        const char *h = json_string_value(json_object_get(json_object_get(m, "files"), slash + 1));
                        if (h && strlen(h) == 64) {
                                snprintf(v->guest_sha, sizeof(v->guest_sha), "%s", h);
                                return;
                        }
                }
        }
        if (sha256_file_hex(vmlinux, v->guest_sha) < 0)
                v->guest_sha[0] = '\0';
}

bool accel_cached(const char *cache_dir, const char *vmlinux, struct accel_verdict *ret) {
        _cleanup_free_ char *p = path_join(cache_dir, "accel-probe.json"), *text = NULL;
        _cleanup_json_ json_t *j = NULL;
        size_t len;

        *ret = (struct accel_verdict) { 0 };
        identity(vmlinux, ret);
        if (read_file(p, 1u << 16, &text, &len) < 0 || !(j = json_loadb(text, len, 0, NULL)))
                return false;
        const char *hk = json_string_value(json_object_get(j, "host_kernel"));
        const char *gs = json_string_value(json_object_get(j, "guest_sha256"));
        if (!hk || !gs || strcmp(hk, ret->host_kernel) != 0 || strcmp(gs, ret->guest_sha) != 0)
                return false;
        ret->probed = true;
        ret->kvm_works = json_is_true(json_object_get(j, "kvm_works"));
        snprintf(ret->detail, sizeof(ret->detail), "%s", strempty(json_string_value(json_object_get(j, "detail"))));
        return true;
}

#define PROBE_MARK "banger.root=banger-kvm-probe"

bool accel_kill_stale_probe(const char *cache_dir) {
        _cleanup_free_ char *pidf = path_join(cache_dir, "accel-probe.pid"), *text = NULL, *cmd = NULL;
        size_t len;
        int64_t pid;
        if (read_file_nofollow(pidf, 32, &text, &len) < 0)
                return false;
        text[strcspn(text, "\n")] = '\0';
        bool killed = false;
        if (parse_int_range(text, 2, INT32_MAX, &pid) == 0 && proc_alive((pid_t) pid)) {
                /* only when it is still a probe (the pid may have been reused) */
                _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int) pid);
                bool probe = read_file(path, 1u << 20, &cmd, &len) == 0 && memmem(cmd, len, PROBE_MARK, strlen(PROBE_MARK));
                killed = probe && kill((pid_t) pid, SIGKILL) == 0;
        }
        (void) unlink(pidf);
        return killed;
}

int accel_probe(const char *cache_dir, const char *qemu_bin, const char *vmlinux, const char *initramfs,
                unsigned tsc_khz, int timeout_ms, bool (*cancel)(void *), void *ud, struct accel_verdict *ret) {
        _cleanup_free_ char *append = xasprintf("console=ttyS0 tsc_early_khz=%u cryptomgr.notests quiet "
                                                "banger.mode=fast " PROBE_MARK, tsc_khz);
        _cleanup_free_ char *log = xasprintf("%s/accel-probe.log", cache_dir);
        _cleanup_free_ char *pidf = path_join(cache_dir, "accel-probe.pid"), *pidtext = NULL;
        _cleanup_close_ int logfd = -1;
        char *argv[] = { (char *) qemu_bin, (char *) "-M", (char *) "microvm", (char *) "-accel", (char *) "kvm",
                         (char *) "-m", (char *) "256", (char *) "-smp", (char *) "1", (char *) "-nodefaults",
                         (char *) "-no-user-config", (char *) "-nographic", (char *) "-no-reboot", (char *) "-kernel",
                         (char *) vmlinux, (char *) "-initrd", (char *) initramfs, (char *) "-append", append,
                         (char *) "-serial", (char *) "stdio", NULL };
        struct timespec t0, t1;
        pid_t pid;
        int r;

        *ret = (struct accel_verdict) { 0 };
        identity(vmlinux, ret);
        if (mkdir_p(cache_dir, 0700) < 0)
                return -errno;
        logfd = open(log, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (logfd < 0)
                return -errno;
        struct spawn_fd_map map[] = { { 1, logfd }, { 2, logfd } };
        /* the probe dies with the daemon, whatever kills it */
        struct spawn_opts o = { .fds = map, .n_fds = 2, .new_pgroup = true, .die_with_parent = true };
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = spawn_start(argv, &o, &pid);
        if (r < 0)
                return r;
        pidtext = xasprintf("%d\n", (int) pid);
        if (write_file_atomic(pidf, pidtext, strlen(pidtext), 0600) < 0) {
                /* not fatal: it dies with us anyway */
        }
        _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
        bool seen = false, exited = false;
        for (int waited = 0; waited < timeout_ms && !seen && !exited; waited += 100) {
                struct pollfd p = { .fd = pidfd, .events = POLLIN };
                if (poll(&p, 1, 100) > 0)
                        exited = true;
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (read_file(log, 1u << 20, &text, &len) == 0 && strstr(text, "banger-init: stage=start"))
                        seen = true;
                if (cancel && cancel(ud))
                        break;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        kill(-pid, SIGKILL);
        spawn_wait(pid);
        (void) unlink(pidf);
        double secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (cancel && cancel(ud) && !seen)
                return -ECANCELED;
        ret->probed = true;
        ret->kvm_works = seen;
        if (seen)
                snprintf(ret->detail, sizeof(ret->detail), "a guest booted to banger-init under KVM in %.2f s", secs);
        else
                snprintf(ret->detail, sizeof(ret->detail), "a guest under KVM %s (boot probe; see %s)",
                         exited ? "exited before reaching userspace" : "did not reach userspace within the timeout",
                         log);
        _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:b, s:s, s:I}", "host_kernel", ret->host_kernel,
                                             "guest_sha256", ret->guest_sha, "kvm_works", ret->kvm_works, "detail",
                                             ret->detail, "probed_at", (json_int_t) time(NULL));
        _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));
        _cleanup_free_ char *p = path_join(cache_dir, "accel-probe.json");
        return write_file_atomic(p, text, strlen(text), 0600);
}
