/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Registry authentication, the pure parts (fuzzed): the WWW-Authenticate
 * challenge of a 401 and the credentials of ~/.docker/config.json.
 */

#include <stddef.h>

struct www_auth {
        char *scheme;  /* "bearer" or "basic", lower case */
        char *realm;   /* bearer: the token endpoint (http or https URL) */
        char *service; /* may be NULL */
        char *scope;   /* may be NULL */
};

/* `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"`
 * or `Basic realm="..."`. 0, or -EINVAL for anything else (other schemes,
 * a bearer challenge without a realm, bad quoting, control characters). */
int www_auth_parse(const char *header, struct www_auth *ret);
void www_auth_done(struct www_auth *a);

/* The "user:password" config.json's "auths" holds for registry ("docker.io"
 * is also found under "https://index.docker.io/v1/" and "index.docker.io";
 * any registry also under "https://<registry>" and "http://<registry>"),
 * from "auth" (base64) or "username" + "password". 1 found, 0 none,
 * -EINVAL a malformed file or entry. */
int docker_config_auth(const char *json, size_t len, const char *registry, char **ret_userpwd);
