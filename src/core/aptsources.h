/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Reading the host's Debian mirror out of apt's sources: deb822 `.sources`
 * files and one-line `sources.list` files. The parsers are pure; only
 * aptsources_read_host() touches the filesystem.
 */

#include <stdbool.h>
#include <stddef.h>

struct apt_source {
        bool deb;     /* Types includes "deb" (binary packages) */
        bool enabled; /* deb822 "Enabled: no" clears it */
        char **uris;  /* NULL-terminated, owned */
        char **suites;
        char **components;
};

struct apt_sources {
        struct apt_source *items;
        size_t n;
};

/* Append what `text` declares. Malformed stanzas/lines are skipped (apt
 * itself would refuse them; we only need the good entries). */
void aptsources_parse_deb822(const char *text, struct apt_sources *out);
void aptsources_parse_oneline(const char *text, struct apt_sources *out);
void aptsources_free(struct apt_sources *s);

/* The main Debian mirror: the URI of the first enabled binary entry for a
 * plain suite (not -security/-updates/-backports) with component main.
 * Returns a malloc'd URI without trailing '/', or NULL. */
char *aptsources_pick_mirror(const struct apt_sources *s);

/* Reads <apt_dir>/sources.list.d/ *.sources and *.list (sorted) and
 * <apt_dir>/sources.list; returns the mirror or NULL. *ret_origin names the
 * file it came from (malloc'd) when non-NULL. */
char *aptsources_read_host(const char *apt_dir, char **ret_origin);
