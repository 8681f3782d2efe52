/* SPDX-License-Identifier: MIT */
#include "release.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "clock.h"
#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"

#define MANIFEST_MAX_RELEASES 1000
#define SUMS_MAX_LINES 64
#define SUMS_MAX_NAME 255

const char *const release_members[RELEASE_N_MEMBERS] = {
        "banger-init", "banger-agent", "bangerd-root", "bangerd", "banger",
};

bool release_member_is_lib(int index) {
        return index == 0 || index == 1;
}

int release_member_index(const char *name) {
        for (int k = 0; k < RELEASE_N_MEMBERS; k++)
                if (name && strcmp(name, release_members[k]) == 0)
                        return k;
        return -EINVAL;
}

char *release_tarball_name(const char *version) {
        return xasprintf("banger-%s-linux-amd64.tar.gz", version);
}

/* ---- versions ------------------------------------------------------------- */

/* A number of 1-9 digits without a leading zero; advances *p. */
static bool number(const char **p) {
        const char *s = *p;
        size_t n = strspn(s, "0123456789");
        if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
                return false;
        *p = s + n;
        return true;
}

bool release_version_valid(const char *v) {
        if (!v || strlen(v) > RELEASE_VERSION_MAX)
                return false;
        const char *p = v;
        if (!number(&p) || *p++ != '.' || !number(&p) || *p++ != '.' || !number(&p))
                return false;
        if (*p == '\0')
                return true;
        if (*p++ != '-')
                return false;
        /* dot-separated identifiers, none empty */
        for (;;) {
                size_t n = strspn(p, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-");
                if (n == 0 || (n > 1 && p[0] == '0' && strspn(p, "0123456789") >= n))
                        return false; /* empty, or a number with a leading zero */
                p += n;
                if (*p == '\0')
                        return true;
                if (*p++ != '.')
                        return false;
        }
}

static int cmp_num(const char **a, const char **b) {
        char *ea, *eb;
        unsigned long x = strtoul(*a, &ea, 10), y = strtoul(*b, &eb, 10);
        *a = ea;
        *b = eb;
        return x < y ? -1 : x > y;
}

static bool all_digits(const char *s, size_t n) {
        for (size_t k = 0; k < n; k++)
                if (!isdigit((unsigned char) s[k]))
                        return false;
        return true;
}

/* SemVer 11.4: identifier by identifier; numeric ones numerically and
 * below alphanumeric ones; a shorter list that is a prefix comes first. */
static int cmp_prerelease(const char *a, const char *b) {
        for (;;) {
                size_t na = strcspn(a, "."), nb = strcspn(b, ".");
                bool da = all_digits(a, na), db = all_digits(b, nb);
                int c;
                if (da && db)
                        c = na != nb ? (na < nb ? -1 : 1) : strncmp(a, b, na); /* no leading zeros */
                else if (da != db)
                        c = da ? -1 : 1;
                else {
                        c = strncmp(a, b, na < nb ? na : nb);
                        if (c == 0 && na != nb)
                                c = na < nb ? -1 : 1;
                }
                if (c != 0)
                        return c < 0 ? -1 : 1;
                a += na;
                b += nb;
                if (!*a || !*b)
                        return !*a && !*b ? 0 : (!*a ? -1 : 1);
                a++;
                b++;
        }
}

int release_version_compare(const char *a, const char *b) {
        for (int k = 0; k < 3; k++) {
                int c = cmp_num(&a, &b);
                if (c != 0)
                        return c;
                if (k < 2) {
                        a++;
                        b++;
                }
        }
        /* a release comes after its prereleases */
        if (*a != '-' || *b != '-')
                return *a == *b ? 0 : (*a == '-' ? -1 : 1);
        return cmp_prerelease(a + 1, b + 1);
}

/* ---- manifest ------------------------------------------------------------- */

_printf_(2, 3) static int fail(char **ret_err, const char *fmt, ...) {
        va_list ap;
        struct strbuf sb = STRBUF_INIT;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        *ret_err = strbuf_detach(&sb, NULL);
        return -EINVAL;
}

struct manifest_top {
        int64_t format;
        char *latest_stable;
        json_t *releases;
};

static const struct json_field top_fields[] = {
        { "format", JSON_FIELD_INT, offsetof(struct manifest_top, format), true, JSON_NO_PRESENT, 0, 0 },
        { "latest_stable", JSON_FIELD_STRING, offsetof(struct manifest_top, latest_stable), true, JSON_NO_PRESENT, 0, 0 },
        { "releases", JSON_FIELD_JSON, offsetof(struct manifest_top, releases), true, JSON_NO_PRESENT, 0, 0 },
};

struct manifest_release {
        char *version;
        char *released_at;
};

static const struct json_field release_fields[] = {
        { "version", JSON_FIELD_STRING, offsetof(struct manifest_release, version), true, JSON_NO_PRESENT, 0, 0 },
        { "released_at", JSON_FIELD_STRING, offsetof(struct manifest_release, released_at), false, JSON_NO_PRESENT,
          0, 0 },
};

static int parse_release(json_t *o, size_t idx, struct release_manifest *m, char **ret_err) {
        struct manifest_release r = { 0 };
        _cleanup_free_ char *why = NULL;
        int ret = 0;
        if (!json_is_object(o))
                ret = fail(ret_err, "releases[%zu] is not an object", idx);
        else if (json_decode_fields(o, release_fields, ELEMENTSOF(release_fields), &r, &why) < 0)
                ret = fail(ret_err, "releases[%zu]: %s", idx, why);
        else if (!release_version_valid(r.version))
                ret = fail(ret_err, "releases[%zu]: '%s' is not a version (MAJOR.MINOR.PATCH[-PRE])", idx, r.version);
        else if (r.released_at && rfc3339_parse_ms(r.released_at) <= 0)
                ret = fail(ret_err, "releases[%zu]: released_at '%s' is not YYYY-MM-DDTHH:MM:SSZ", idx, r.released_at);
        else if (release_manifest_has(m, r.version))
                ret = fail(ret_err, "releases[%zu]: version %s is listed twice", idx, r.version);
        if (ret == 0) {
                m->versions[m->n_versions++] = TAKE_PTR(r.version);
                m->versions[m->n_versions] = NULL;
        }
        json_fields_free(release_fields, ELEMENTSOF(release_fields), &r);
        return ret;
}

static int parse_top(json_t *j, struct release_manifest *m, char **ret_err) {
        struct manifest_top top = { 0 };
        _cleanup_free_ char *why = NULL;
        int r = 0;
        if (!json_is_object(j))
                r = fail(ret_err, "not a JSON object");
        else if (json_decode_fields(j, top_fields, ELEMENTSOF(top_fields), &top, &why) < 0)
                r = fail(ret_err, "%s", why);
        else if (top.format != RELEASE_MANIFEST_FORMAT)
                r = fail(ret_err, "format %lld is not one this banger reads (%d)", (long long) top.format,
                         RELEASE_MANIFEST_FORMAT);
        else if (!json_is_array(top.releases) || json_array_size(top.releases) == 0 ||
                 json_array_size(top.releases) > MANIFEST_MAX_RELEASES)
                r = fail(ret_err, "releases must be an array of 1 to %d releases", MANIFEST_MAX_RELEASES);
        for (size_t k = 0; r == 0 && k < json_array_size(top.releases); k++) {
                if (!m->versions)
                        m->versions = xcalloc(json_array_size(top.releases) + 1, sizeof(char *));
                r = parse_release(json_array_get(top.releases, k), k, m, ret_err);
        }
        if (r == 0 && !release_version_valid(top.latest_stable))
                r = fail(ret_err, "latest_stable '%s' is not a version", top.latest_stable);
        else if (r == 0 && !release_manifest_has(m, top.latest_stable))
                r = fail(ret_err, "latest_stable %s is not among the releases", top.latest_stable);
        if (r == 0) {
                m->format = top.format;
                m->latest_stable = TAKE_PTR(top.latest_stable);
        }
        json_fields_free(top_fields, ELEMENTSOF(top_fields), &top);
        return r;
}

int release_manifest_parse(const char *text, size_t len, struct release_manifest *ret, char **ret_err) {
        struct release_manifest m = { 0 };
        json_error_t je;
        _cleanup_free_ char *why = NULL;
        if (len > RELEASE_MANIFEST_MAX)
                return fail(ret_err, "manifest.json is larger than %u bytes", RELEASE_MANIFEST_MAX);
        /* duplicate keys would let two readers see two manifests */
        _cleanup_json_ json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
                return fail(ret_err, "manifest.json: line %d: %s", je.line, je.text);
        int r = parse_top(j, &m, &why);
        if (r < 0) {
                release_manifest_done(&m);
                return fail(ret_err, "manifest.json: %s", why);
        }
        *ret = m;
        return 0;
}

void release_manifest_done(struct release_manifest *m) {
        free(m->latest_stable);
        strv_free(m->versions);
        *m = (struct release_manifest) { 0 };
}

bool release_manifest_has(const struct release_manifest *m, const char *version) {
        for (size_t k = 0; version && k < m->n_versions; k++)
                if (strcmp(m->versions[k], version) == 0)
                        return true;
        return false;
}

/* ---- SHA256SUMS ----------------------------------------------------------- */

static bool plain_name(const char *s, size_t n) {
        if (n == 0 || n > SUMS_MAX_NAME || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        for (size_t k = 0; k < n; k++)
                if ((unsigned char) s[k] < 0x20 || s[k] == 0x7f || s[k] == '/' || s[k] == '\\')
                        return false;
        return true;
}

static int parse_sum_line(const char *line, size_t n, unsigned lineno, struct release_sums *s, char **ret_err) {
        if (n > 0 && line[0] == '\\')
                return fail(ret_err, "SHA256SUMS:%u: escaped names are not allowed", lineno);
        size_t hex = 0; /* bounded by the line: text need not end in a NUL */
        while (hex < n && hex <= 64 && ((line[hex] >= '0' && line[hex] <= '9') || (line[hex] >= 'a' && line[hex] <= 'f')))
                hex++;
        if (n < 67 || hex != 64)
                return fail(ret_err, "SHA256SUMS:%u: not '<64 lowercase hex digits>  <name>'", lineno);
        if (line[64] != ' ' || (line[65] != ' ' && line[65] != '*'))
                return fail(ret_err, "SHA256SUMS:%u: the digest must be followed by two spaces (or ' *')", lineno);
        const char *name = line + 66;
        size_t nlen = n - 66;
        if (!plain_name(name, nlen))
                return fail(ret_err, "SHA256SUMS:%u: '%.*s' is not a plain file name", lineno, (int) (nlen > 64 ? 64 : nlen),
                            name);
        for (size_t k = 0; k < s->n; k++)
                if (strlen(s->items[k].name) == nlen && memcmp(s->items[k].name, name, nlen) == 0)
                        return fail(ret_err, "SHA256SUMS:%u: '%s' is listed twice", lineno, s->items[k].name);
        if (s->n >= SUMS_MAX_LINES)
                return fail(ret_err, "SHA256SUMS: more than %d files", SUMS_MAX_LINES);
        s->items = xrealloc(s->items, (s->n + 1) * sizeof(*s->items));
        struct release_sum *it = &s->items[s->n++];
        it->name = xstrndup(name, nlen);
        memcpy(it->hex, line, 64);
        it->hex[64] = '\0';
        return 0;
}

int release_sums_parse(const char *text, size_t len, struct release_sums *ret, char **ret_err) {
        struct release_sums s = { 0 };
        unsigned lineno = 0;
        int r = 0;
        if (len > RELEASE_SUMS_MAX)
                return fail(ret_err, "SHA256SUMS is larger than %u bytes", RELEASE_SUMS_MAX);
        if (memchr(text, '\0', len))
                return fail(ret_err, "SHA256SUMS contains a NUL byte");
        for (size_t off = 0; r == 0 && off < len;) {
                const char *nl = memchr(text + off, '\n', len - off);
                size_t n = nl ? (size_t) (nl - (text + off)) : len - off;
                lineno++;
                r = parse_sum_line(text + off, n, lineno, &s, ret_err);
                off += n + (nl ? 1 : 0);
        }
        if (r == 0 && s.n == 0)
                r = fail(ret_err, "SHA256SUMS lists no files");
        if (r < 0) {
                release_sums_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}

void release_sums_done(struct release_sums *s) {
        for (size_t k = 0; k < s->n; k++)
                free(s->items[k].name);
        free(s->items);
        *s = (struct release_sums) { 0 };
}

const char *release_sums_find(const struct release_sums *s, const char *name) {
        for (size_t k = 0; k < s->n; k++)
                if (strcmp(s->items[k].name, name) == 0)
                        return s->items[k].hex;
        return NULL;
}

/* ---- signature ------------------------------------------------------------ */

static int load_p256(const char *pem, size_t pem_len, EVP_PKEY **ret, char **ret_err) {
        BIO *bio = BIO_new_mem_buf(pem, (int) pem_len);
        EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        char group[64] = "";
        size_t glen = 0;
        BIO_free(bio);
        if (!k)
                return fail(ret_err, "the release public key is not a PEM public key");
        if (!EVP_PKEY_is_a(k, "EC") || EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
                EVP_PKEY_free(k);
                return fail(ret_err, "the release public key is not an EC P-256 key");
        }
        *ret = k;
        return 0;
}

int release_verify(const char *pubkey_pem, size_t pem_len, const void *data, size_t len, const char *sig_b64,
                   size_t sig_len, char **ret_err) {
        _cleanup_free_ unsigned char *sig = NULL;
        size_t n = 0;
        EVP_PKEY *key = NULL;
        if (pem_len > RELEASE_PUBKEY_MAX || pem_len > 0x7fffffff)
                return fail(ret_err, "the release public key is too large");
        if (sig_len > RELEASE_SIG_MAX || base64_decode(sig_b64, sig_len, &sig, &n) < 0 || n < 8 || n > 72)
                return fail(ret_err, "SHA256SUMS.sig is not the base64 of an ECDSA P-256 signature");
        int r = load_p256(pubkey_pem, pem_len, &key, ret_err);
        if (r < 0)
                return r;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
                 EVP_DigestVerify(md, sig, n, data, len) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(key);
        if (!ok) {
                *ret_err = xstrdup("the signature over SHA256SUMS does not verify");
                return -EBADMSG;
        }
        return 0;
}
