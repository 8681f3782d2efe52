/* SPDX-License-Identifier: MIT */
/* The signed entry point of a Debian mirror: InRelease checked with gpgv. */
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
