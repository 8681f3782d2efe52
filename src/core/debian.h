/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Debian archive indexes (pure, fuzzed): the verified Release text and
 * Packages stanzas. Signature checking is not here: the caller hands us
 * the text gpgv printed after verifying InRelease.
 */

#include <stddef.h>
#include <stdint.h>

struct release_file {
        char *path; /* "main/binary-amd64/Packages.xz" */
        char sha256[65];
        uint64_t size;
};

struct release {
        char *suite;
        char *codename;
        char *date;
        struct release_file *files; /* from the SHA256 section */
        size_t n_files;
};

/* 0 or -EINVAL (no SHA256 section, malformed lines) with *ret_err. */
int debian_release_parse(const char *text, size_t len, struct release *ret, char **ret_err);
void debian_release_done(struct release *r);
const struct release_file *debian_release_find(const struct release *r, const char *path);

struct deb_package {
        char *package;
        char *version;
        char *depends;  /* raw field */
        char *filename; /* pool path */
        char sha256[65];
        uint64_t size;
};

/* Finds the stanza for `name` (exact Package: match) in a Packages file.
 * 0, -ENOENT when absent, -EINVAL when the stanza lacks Filename/SHA256/Size. */
int debian_packages_find(const char *text, size_t len, const char *name, struct deb_package *ret, char **ret_err);
void deb_package_done(struct deb_package *p);

/* The first package named in a Depends field that starts with `prefix`
 * ("linux-image-"), without version constraint. malloc'd or NULL. */
char *debian_depends_first_with_prefix(const char *depends, const char *prefix);

/* True for a 64-char lowercase hex string. */
int is_sha256_hex(const char *s);

/* The date of a debian/changelog's first (newest) entry, its trailer line
 * " -- Name <mail>  Thu, 02 Jul 2026 13:50:00 +0200", in seconds since the
 * epoch: what dpkg-buildpackage makes SOURCE_DATE_EPOCH of. 0, -ENOENT (no
 * trailer) or -EINVAL. */
int debian_changelog_date(const char *text, size_t len, int64_t *ret_epoch);
