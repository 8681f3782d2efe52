/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * banger's published releases, the pure parts (no I/O, no globals): what
 * `banger update` downloads is parsed and checked here, so it can be unit
 * tested and fuzzed; the downloading, staging and swapping are the CLI's
 * (src/cli/cmd_update.c). docs/UPDATE.md describes the layout:
 *
 *   <update_url>/manifest.json                          release_manifest_parse
 *   <update_url>/<ver>/banger-<ver>-linux-amd64.tar.gz   release_tarball_name, release_member_index
 *   <update_url>/<ver>/SHA256SUMS                        release_sums_parse
 *   <update_url>/<ver>/SHA256SUMS.sig                    release_verify
 *
 * Every input is bounded: the callers download at most the _MAX sizes.
 * Functions that fail return -EINVAL (malformed) or -EBADMSG (a signature
 * that does not verify) with a malloc'd message in *ret_err.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELEASE_MANIFEST_MAX (1u << 20)
#define RELEASE_SUMS_MAX (64u << 10)
#define RELEASE_SIG_MAX 1024u
#define RELEASE_PUBKEY_MAX (16u << 10)
#define RELEASE_TARBALL_MAX (256ull << 20)
#define RELEASE_MEMBER_MAX (128ull << 20)
#define RELEASE_VERSION_MAX 64
#define RELEASE_MANIFEST_FORMAT 1
#define RELEASE_N_MEMBERS 5

/* The tarball's members, exactly these at its root, in install order (the
 * guest programs first, the CLI last): index i of the names below. */
extern const char *const release_members[RELEASE_N_MEMBERS];
/* true for the ones that go to <prefix>/lib/banger (else <prefix>/bin). */
bool release_member_is_lib(int index);

/* MAJOR.MINOR.PATCH[-PRERELEASE]: numbers without leading zeros, a
 * prerelease of dot-separated [0-9A-Za-z-] identifiers; no "v", no "+build". */
bool release_version_valid(const char *v);
/* <0, 0, >0 by SemVer precedence; both must be valid. */
int release_version_compare(const char *a, const char *b);

struct release_manifest {
        int64_t format;
        char *latest_stable; /* owned; one of versions */
        char **versions;     /* owned, NULL-terminated, in the manifest's order */
        size_t n_versions;
};

/* {"format":1,"latest_stable":V,"releases":[{"version":V[,"released_at":T]}...]}:
 * no unknown keys, no duplicate keys or versions, latest_stable listed. */
int release_manifest_parse(const char *text, size_t len, struct release_manifest *ret, char **ret_err);
void release_manifest_done(struct release_manifest *m);
bool release_manifest_has(const struct release_manifest *m, const char *version);

struct release_sum {
        char *name; /* owned: a plain file name */
        char hex[65];
};

struct release_sums {
        struct release_sum *items; /* owned */
        size_t n;
};

/* GNU sha256sum output: "<64 lowercase hex><space><space or *><name>\n" per
 * line; names are plain file names (no '/', not "." or "..", no control
 * characters, no backslash escapes) and appear once. */
int release_sums_parse(const char *text, size_t len, struct release_sums *ret, char **ret_err);
void release_sums_done(struct release_sums *s);
/* The hex digest listed for exactly `name`, or NULL. */
const char *release_sums_find(const struct release_sums *s, const char *name);

/* "banger-<ver>-linux-amd64.tar.gz" (malloc'd). */
char *release_tarball_name(const char *version);

/* Verifies sig_b64 (base64, line breaks allowed, of a DER ECDSA signature
 * with SHA-256, as `openssl dgst -sha256 -sign` makes) over data with the
 * EC P-256 public key in PEM. 0 it verifies; -EBADMSG it does not; -EINVAL
 * the key or the signature text is malformed. */
int release_verify(const char *pubkey_pem, size_t pem_len, const void *data, size_t len, const char *sig_b64,
                   size_t sig_len, char **ret_err);

/* The index in release_members of a tarball member named `name` (the
 * exact name: no "./", no directories), or -EINVAL. */
int release_member_index(const char *name);
