/* SPDX-License-Identifier: MIT */
/* The signed entry point of a Debian mirror: InRelease checked with gpgv,
 * and the Packages index it vouches for. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "artifacts.h"
#include "debian.h"
#include "fetch.h"
#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"
#include "sha256.h"
#include "strbuf.h"

static bool cancel_cb(void *ud) {
        return progress_cancelled(ud);
}

static void index_bytes(void *ud, uint64_t done, uint64_t total) {
        progress_bytes(ud, "index", done, total);
}

int mirror_verified_release(struct artifacts *a, const char *staging, const char *mirror, const char *suite,
                            const struct progress *p, struct release *ret, char ret_sha256[65],
                            struct op_error *err) {
        _cleanup_free_ char *url = xasprintf("%s/dists/%s/InRelease", mirror, suite);
        _cleanup_free_ char *inrel = path_join(staging, "InRelease"), *rel = path_join(staging, "Release");
        _cleanup_free_ char *text = NULL, *e = NULL;
        struct spawn_result res = { 0 };
        size_t len;
        int r;

        struct fetch_opts o = { .url = url, .max_bytes = 16u << 20, .cancel = cancel_cb, .ud = (void *) p };
        r = fetch_to_file(&o, inrel, NULL, err);
        if (r < 0)
                return r;
        /* gpgv writes the signed text only when the signature is good. */
        char *argv[] = { (char *) "gpgv", (char *) "--keyring", a->keyring, (char *) "--output", rel, inrel, NULL };
        struct spawn_opts so = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 60000 };
        r = spawn_run(argv, &so, &res);
        if (r < 0) {
                unlink(inrel);
                return op_fail(err, r, "cannot run gpgv: %s (apt-get install gpgv)", strerror(-r));
        }
        if (res.exit_code != 0) {
                op_fail(err, -EBADMSG, "refusing %s: signature check with %s failed: %s", url,
                         a->keyring, res.err_len ? res.err : "gpgv failed");
                spawn_result_done(&res);
                unlink(rel);
                unlink(inrel);
                return -EBADMSG;
        }
        spawn_result_done(&res);
        r = read_file(rel, 16u << 20, &text, &len);
        unlink(rel);
        unlink(inrel);
        if (r < 0)
                return op_fail(err, r, "reading verified Release: %s", strerror(-r));
        if (ret_sha256)
                sha256_buf_hex(text, len, ret_sha256);
        r = debian_release_parse(text, len, ret, &e);
        if (r < 0)
                return op_fail(err, r, "%s: %s", url, e);
        return 0;
}

int decompress_buffer(const char *data, size_t len, size_t max, char **ret, size_t *ret_len, struct op_error *err) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        struct strbuf out = STRBUF_INIT;
        char buf[65536];
        int r = 0;

        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK || archive_read_next_header(a, &e) != ARCHIVE_OK) {
                op_fail(err, -EBADMSG, "cannot decompress: %s", archive_error_string(a));
                archive_read_free(a);
                return -EBADMSG;
        }
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                if (n < 0) {
                        r = op_fail(err, -EBADMSG, "cannot decompress: %s", archive_error_string(a));
                        break;
                }
                if (n == 0)
                        break;
                if (out.len + (size_t) n > max) {
                        r = op_fail(err, -EFBIG, "implausibly large once decompressed");
                        break;
                }
                strbuf_add(&out, buf, (size_t) n);
        }
        archive_read_free(a);
        if (r < 0) {
                strbuf_release(&out);
                return r;
        }
        *ret = strbuf_detach(&out, ret_len);
        return 0;
}

int mirror_fetch_packages(const struct release *rel, const char *mirror, const char *suite, const char *component,
                          const struct progress *p, char **ret, size_t *ret_len, struct op_error *err) {
        static const char *const names[] = { "Packages.xz", "Packages.gz" };
        _cleanup_free_ char *data = NULL;
        size_t len;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *path = xasprintf("%s/binary-amd64/%s", component, names[i]);
                const struct release_file *f = debian_release_find(rel, path);
                if (!f)
                        continue;
                _cleanup_free_ char *url = xasprintf("%s/dists/%s/%s", mirror, suite, path);
                struct fetch_opts o = { .url = url, .max_bytes = 256u << 20, .expect_sha256 = f->sha256,
                                        .expect_size = f->size, .progress = index_bytes, .cancel = cancel_cb, .ud = (void *) p };
                int r = fetch_to_memory(&o, &data, &len, err);
                if (r < 0)
                        return r;
                r = decompress_buffer(data, len, 1024u << 20, ret, ret_len, err);
                if (r < 0)
                        return op_prefix(err, "%s", url);
                return 0;
        }
        return op_fail(err, -ENOENT, "the signed Release for %s lists no %s/binary-amd64/Packages", suite,
                        component);
}
