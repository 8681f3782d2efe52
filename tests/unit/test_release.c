/* SPDX-License-Identifier: MIT */
/* What `banger update` reads from a release server: the manifest, SHA256SUMS
 * and the signature over it, and the names a tarball may hold. Good input
 * parses; anything else is refused with a message naming what is wrong. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "macro.h"
#include "release.h"
#include "strbuf.h"

/* ---- versions ------------------------------------------------------------- */

static void test_versions(void **state) {
        (void) state;
        const char *good[] = { "0.1.0", "0.1.10", "10.20.30", "1.0.0-rc.1", "1.0.0-alpha-1.x", "1.0.0-0a" };
        const char *bad[] = { "", "v0.1.1", "0.1", "0.1.1.1", "01.1.1", "0.01.1", "0.1.1-", "0.1.1-a..b",
                              "0.1.1-01", "0.1.1+build", "0.1.1 ", "0.1.1-a_b", "1234567890.0.0", NULL };
        for (size_t k = 0; k < ELEMENTSOF(good); k++)
                if (!release_version_valid(good[k]))
                        fail_msg("'%s' should be a version", good[k]);
        for (size_t k = 0; bad[k]; k++)
                if (release_version_valid(bad[k]))
                        fail_msg("'%s' should not be a version", bad[k]);
        assert_false(release_version_valid(NULL));
        /* SemVer 11's own example, in order */
        const char *order[] = { "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                                "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0" };
        for (size_t k = 0; k + 1 < ELEMENTSOF(order); k++) {
                if (release_version_compare(order[k], order[k + 1]) >= 0 ||
                    release_version_compare(order[k + 1], order[k]) <= 0)
                        fail_msg("%s should come before %s", order[k], order[k + 1]);
                assert_int_equal(release_version_compare(order[k], order[k]), 0);
        }
        assert_true(release_version_compare("0.1.10", "0.1.9") > 0);
}

/* ---- manifest ------------------------------------------------------------- */

static const char manifest_good[] =
        "{\"format\": 1, \"latest_stable\": \"0.1.1\", \"releases\": ["
        "{\"version\": \"0.1.0\", \"released_at\": \"2026-04-29T10:00:00Z\"},"
        "{\"version\": \"0.1.1\"}, {\"version\": \"0.2.0-rc.1\"}]}";

static void test_manifest_good(void **state) {
        (void) state;
        struct release_manifest m = { 0 };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(release_manifest_parse(manifest_good, strlen(manifest_good), &m, &err), 0);
        assert_int_equal(m.format, 1);
        assert_string_equal(m.latest_stable, "0.1.1");
        assert_int_equal(m.n_versions, 3);
        assert_string_equal(m.versions[0], "0.1.0");
        assert_string_equal(m.versions[2], "0.2.0-rc.1");
        assert_null(m.versions[3]);
        assert_true(release_manifest_has(&m, "0.2.0-rc.1"));
        assert_false(release_manifest_has(&m, "0.1.2"));
        release_manifest_done(&m);
}

static void manifest_refused(const char *text, const char *needle) {
        struct release_manifest m = { 0 };
        _cleanup_free_ char *err = NULL;
        int r = release_manifest_parse(text, strlen(text), &m, &err);
        if (r != -EINVAL || !err || !strstr(err, needle))
                fail_msg("%s: expected an error with '%s', got %d '%s'", text, needle, r, err ? err : "none");
        assert_null(m.latest_stable);
        assert_null(m.versions);
}

static void test_manifest_refused(void **state) {
        (void) state;
        manifest_refused("", "manifest.json: line");
        manifest_refused("[]", "not a JSON object");
        manifest_refused("{\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"}]}", "'format'");
        manifest_refused("{\"format\":2,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"}]}",
                         "format 2 is not one this banger reads");
        manifest_refused("{\"format\":\"1\",\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"}]}",
                         "'format' must be an integer");
        manifest_refused("{\"format\":1,\"releases\":[{\"version\":\"0.1.1\"}]}", "'latest_stable'");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\"}", "'releases'");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[]}", "1 to 1000 releases");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":{}}", "1 to 1000 releases");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[\"0.1.1\"]}",
                         "releases[0] is not an object");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{}]}", "releases[0]: missing");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"v0.1.1\"}]}",
                         "'v0.1.1' is not a version");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"},"
                         "{\"version\":\"0.1\"}]}",
                         "releases[1]: '0.1' is not a version");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"},"
                         "{\"version\":\"0.1.1\"}]}",
                         "version 0.1.1 is listed twice");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.2\",\"releases\":[{\"version\":\"0.1.1\"}]}",
                         "latest_stable 0.1.2 is not among the releases");
        manifest_refused("{\"format\":1,\"latest_stable\":\"latest\",\"releases\":[{\"version\":\"0.1.1\"}]}",
                         "latest_stable 'latest' is not a version");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"}],\"x\":1}",
                         "unknown parameter 'x'");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\",\"url\":\"x\"}]}",
                         "releases[0]: unknown parameter 'url'");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\","
                         "\"released_at\":\"yesterday\"}]}",
                         "released_at 'yesterday'");
        /* two readers must not see two manifests */
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"latest_stable\":\"0.1.0\",\"releases\":"
                         "[{\"version\":\"0.1.1\"},{\"version\":\"0.1.0\"}]}",
                         "duplicate");
        manifest_refused("{\"format\":1,\"latest_stable\":\"0.1.1\",\"releases\":[{\"version\":\"0.1.1\"}]} {}",
                         "manifest.json: line");
}

/* ---- SHA256SUMS ----------------------------------------------------------- */

#define HEX_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void test_sums_good(void **state) {
        (void) state;
        const char text[] = HEX_A "  banger-0.1.1-linux-amd64.tar.gz\n" HEX_B " *install.sh\n";
        struct release_sums s = { 0 };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(release_sums_parse(text, strlen(text), &s, &err), 0);
        assert_int_equal(s.n, 2);
        assert_string_equal(release_sums_find(&s, "banger-0.1.1-linux-amd64.tar.gz"), HEX_A);
        assert_string_equal(release_sums_find(&s, "install.sh"), HEX_B);
        assert_null(release_sums_find(&s, "banger-0.1.1-linux-amd64.tar"));
        assert_null(release_sums_find(&s, "*install.sh"));
        release_sums_done(&s);
        /* the last line may lack its newline */
        const char last[] = HEX_A "  a.tar.gz";
        assert_int_equal(release_sums_parse(last, strlen(last), &s, &err), 0);
        assert_string_equal(release_sums_find(&s, "a.tar.gz"), HEX_A);
        release_sums_done(&s);
}

static void sums_refused(const char *text, size_t len, const char *needle) {
        struct release_sums s = { 0 };
        _cleanup_free_ char *err = NULL;
        int r = release_sums_parse(text, len, &s, &err);
        if (r != -EINVAL || !err || !strstr(err, needle))
                fail_msg("'%s': expected an error with '%s', got %d '%s'", text, needle, r, err ? err : "none");
        assert_null(s.items);
}
#define SUMS_REFUSED(t, n) sums_refused(t, sizeof(t) - 1, n)

static void test_sums_refused(void **state) {
        (void) state;
        SUMS_REFUSED("", "lists no files");
        SUMS_REFUSED(HEX_A "  a.tar.gz\n" HEX_B "  a.tar.gz\n", "SHA256SUMS:2: 'a.tar.gz' is listed twice");
        /* bad hex: uppercase, a non-hex digit, too short, too long */
        SUMS_REFUSED("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef  a\n", "SHA256SUMS:1:");
        SUMS_REFUSED("g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  a\n", "lowercase hex");
        SUMS_REFUSED("0123456789abcdef  a\n", "SHA256SUMS:1:");
        SUMS_REFUSED(HEX_A "0  a\n", "64 lowercase hex");
        SUMS_REFUSED(HEX_A " a.tar.gz\n", "two spaces");
        SUMS_REFUSED(HEX_A "\ta.tar.gz\n", "two spaces");
        /* names that are paths */
        SUMS_REFUSED(HEX_A "  ../banger.tar.gz\n", "'../banger.tar.gz' is not a plain file name");
        SUMS_REFUSED(HEX_A "  0.1.1/banger.tar.gz\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  /etc/passwd\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  ..\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  .\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  a\\b\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  a\rb\n", "not a plain file name");
        SUMS_REFUSED(HEX_A "  \n", "SHA256SUMS:1:");
        SUMS_REFUSED("\\" HEX_A "  a\\nb\n", "escaped names");
        SUMS_REFUSED(HEX_A "  a\n\n", "SHA256SUMS:2:");
        SUMS_REFUSED(HEX_A "  a\0b\n", "NUL");
        _cleanup_free_ char *big = xmalloc(RELEASE_SUMS_MAX + 2);
        memset(big, 'a', RELEASE_SUMS_MAX + 1);
        sums_refused(big, RELEASE_SUMS_MAX + 1, "larger than");
}

/* ---- tarball members -------------------------------------------------------- */

static void test_members(void **state) {
        (void) state;
        for (int k = 0; k < RELEASE_N_MEMBERS; k++)
                assert_int_equal(release_member_index(release_members[k]), k);
        assert_true(release_member_is_lib(release_member_index("banger-agent")));
        assert_true(release_member_is_lib(release_member_index("banger-init")));
        assert_false(release_member_is_lib(release_member_index("bangerd-root")));
        const char *bad[] = { "./banger", "banger/", "bin/banger", "../banger", "/banger", "banger-agentx", "Banger", "",
                              NULL };
        for (size_t k = 0; bad[k]; k++)
                assert_int_equal(release_member_index(bad[k]), -EINVAL);
        assert_int_equal(release_member_index(NULL), -EINVAL);
        _cleanup_free_ char *t = release_tarball_name("0.1.1");
        assert_string_equal(t, "banger-0.1.1-linux-amd64.tar.gz");
}

/* ---- signatures --------------------------------------------------------------- */

/* Made with `openssl ecparam -name prime256v1 -genkey`, `openssl dgst -sha256
 * -sign k.pem SUMS | base64 -w0`: what scripts/make-release does. */
static const char cli_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwXuimTr3hBnYsTuSX9+UTKye1nyY\n"
                              "3QCL3GxTI8C/l8PDUJ9LM9fSKTxE/K7pQx/YdqgKl49Xwd+ZC6KVdaf+9g==\n"
                              "-----END PUBLIC KEY-----\n";
static const char cli_sums[] = HEX_A "  banger-0.1.1-linux-amd64.tar.gz\n";
static const char cli_sig[] = "MEQCIC8YRPXHQqzMN1dfVBLRfn5BYamH/6KzNldv1AHdDD8DAiBjLe9d+7SS3on3YtpGKaes7ffs72yEcmgfcKRrrUFjIA==";
static const char p384_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                               "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE9QI0sR7+mCCSM14UQUqG8kX4I2T+FzmH\n"
                               "DrgxolS763ErsxuPmFKHd/EOcZi9nKf7cZyCMX10NcDK4KrLv+eMSz0bBDVUmLC8\n"
                               "wAWTEUw3TaIR5zRX5nccugBraRkcdwPg\n"
                               "-----END PUBLIC KEY-----\n";

static int verify(const char *pem, const char *data, size_t len, const char *sig, char **err) {
        free(*err);
        *err = NULL;
        return release_verify(pem, strlen(pem), data, len, sig, strlen(sig), err);
}

/* A fresh P-256 key: its public PEM and a signature over data, as base64. */
static void sign_fresh(const char *data, size_t len, char **ret_pem, char **ret_sig) {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char der[128];
        size_t n = sizeof(der);
        assert_non_null(k);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(EVP_DigestSign(md, der, &n, (const unsigned char *) data, len), 1);
        char *b64 = xcalloc(1, 4 * ((n + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *) b64, der, (int) n);
        BIO *bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
        char *p;
        long plen = BIO_get_mem_data(bio, &p);
        *ret_pem = xstrndup(p, (size_t) plen);
        *ret_sig = b64;
        BIO_free(bio);
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(k);
}

static void test_verify(void **state) {
        (void) state;
        _cleanup_free_ char *err = NULL, *pem = NULL, *sig = NULL, *pem2 = NULL, *sig2 = NULL;
        size_t len = strlen(cli_sums);
        assert_int_equal(verify(cli_pub, cli_sums, len, cli_sig, &err), 0);
        /* base64 wrapped as `base64` without -w0 does, and with a final newline */
        _cleanup_free_ char *wrapped = xasprintf("%.76s\n%s\n", cli_sig, cli_sig + 76);
        assert_int_equal(verify(cli_pub, cli_sums, len, wrapped, &err), 0);

        /* one flipped byte in what was signed */
        _cleanup_free_ char *data = xstrdup(cli_sums);
        data[3] ^= 1;
        assert_int_equal(verify(cli_pub, data, len, cli_sig, &err), -EBADMSG);
        assert_non_null(strstr(err, "does not verify"));
        /* one flipped byte in the signature (inside r) */
        _cleanup_free_ char *bad = xstrdup(cli_sig);
        bad[20] = bad[20] == 'A' ? 'B' : 'A';
        assert_int_equal(verify(cli_pub, cli_sums, len, bad, &err), -EBADMSG);

        /* another key: its own signature verifies, ours does not */
        sign_fresh(cli_sums, len, &pem, &sig);
        assert_int_equal(verify(pem, cli_sums, len, sig, &err), 0);
        assert_int_equal(verify(pem, cli_sums, len, cli_sig, &err), -EBADMSG);
        assert_int_equal(verify(cli_pub, cli_sums, len, sig, &err), -EBADMSG);
        sign_fresh("something else", 14, &pem2, &sig2);
        assert_int_equal(verify(pem2, cli_sums, len, sig2, &err), -EBADMSG);
}

/* DER signatures are 70-72 bytes: their base64 ends in "==", "=" or nothing. */
static void test_verify_paddings(void **state) {
        (void) state;
        bool seen[3] = { false };
        for (int tries = 0; tries < 300 && !(seen[0] && seen[1] && seen[2]); tries++) {
                _cleanup_free_ char *err = NULL, *pem = NULL, *sig = NULL;
                sign_fresh(cli_sums, strlen(cli_sums), &pem, &sig);
                size_t n = strlen(sig), pad = sig[n - 1] == '=' ? (sig[n - 2] == '=' ? 2 : 1) : 0;
                seen[pad] = true;
                if (verify(pem, cli_sums, strlen(cli_sums), sig, &err) != 0)
                        fail_msg("a signature with %zu padding characters: %s", pad, err);
        }
        assert_true(seen[0] && seen[1] && seen[2]);
}

static void test_verify_malformed(void **state) {
        (void) state;
        _cleanup_free_ char *err = NULL;
        size_t len = strlen(cli_sums);
        assert_int_equal(verify(cli_pub, cli_sums, len, "", &err), -EINVAL);
        assert_int_equal(verify(cli_pub, cli_sums, len, "not base64!", &err), -EINVAL);
        assert_non_null(strstr(err, "not the base64 of an ECDSA P-256 signature"));
        assert_int_equal(verify(cli_pub, cli_sums, len, "MEQC=IC8", &err), -EINVAL);
        assert_int_equal(verify(cli_pub, cli_sums, len, "QUJD", &err), -EINVAL); /* 3 bytes: not a signature */
        assert_int_equal(verify("not a key", cli_sums, len, cli_sig, &err), -EINVAL);
        assert_non_null(strstr(err, "not a PEM public key"));
        assert_int_equal(verify(p384_pub, cli_sums, len, cli_sig, &err), -EINVAL);
        assert_non_null(strstr(err, "not an EC P-256 key"));
}

/* ---- the update_url config key ---------------------------------------------------- */

static const struct config_host host = { .state_dir = "/var/lib/banger", .home = "/root", .ncpus = 2,
                                         .mem_bytes = 4ULL << 30 };

static int load_url(const char *url, char **ret_url, struct config_error *e) {
        _cleanup_free_ char *text = xasprintf("update_url = \"%s\"\n", url);
        struct config *c = NULL;
        int r = config_load(text, strlen(text), &host, &c, e);
        if (r == 0)
                *ret_url = xstrdup(c->update_url);
        config_free(c);
        return r;
}

static void test_update_url(void **state) {
        (void) state;
        struct config *c = NULL;
        struct config_error e = { 0 };
        assert_int_equal(config_load(NULL, 0, &host, &c, &e), 0);
        assert_string_equal(c->update_url, ""); /* not configured */
        config_free(c);
        const char *good[] = { "", "https://releases.example.org/banger", "http://127.0.0.1:8080/r/" };
        for (size_t k = 0; k < ELEMENTSOF(good); k++) {
                _cleanup_free_ char *got = NULL;
                assert_int_equal(load_url(good[k], &got, &e), 0);
                assert_string_equal(got, good[k]);
        }
        const char *bad[] = { "ftp://example.org/banger", "releases.example.org", "https://x/a b",
                              "https://x/?v=1", "https://x/#top" };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                _cleanup_free_ char *got = NULL;
                if (load_url(bad[k], &got, &e) != -EINVAL || !e.msg || !strstr(e.msg, "update_url"))
                        fail_msg("update_url '%s' should be refused, got '%s'", bad[k], e.msg ? e.msg : "none");
                config_error_done(&e);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_versions),       cmocka_unit_test(test_manifest_good),
                cmocka_unit_test(test_manifest_refused), cmocka_unit_test(test_sums_good),
                cmocka_unit_test(test_sums_refused),   cmocka_unit_test(test_members),
                cmocka_unit_test(test_verify),         cmocka_unit_test(test_verify_paddings),
                cmocka_unit_test(test_verify_malformed), cmocka_unit_test(test_update_url),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
