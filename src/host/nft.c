/* SPDX-License-Identifier: MIT */
#include "nft.h"

#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"

#define TABLE "banger"
#define GUARD "banger-bridge-guard"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nft_ctx *, nft_ctx_free);

/* Runs a {"nftables": [...]} document; with want_output, the JSON answer. */
static int run(json_t *cmds, bool want_output, json_t **ret, char **ret_err) {
        _cleanup_(nft_ctx_freep) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!ctx) {
                *ret_err = xstrdup("nftables: cannot create a context");
                return -ENOMEM;
        }
        nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE);
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
        _cleanup_json_ json_t *doc = json_pack("{s:O}", "nftables", cmds);
        _cleanup_free_ char *text = json_dump_compact(doc);
        if (nft_run_cmd_from_buffer(ctx, text) != 0) {
                const char *e = nft_ctx_get_error_buffer(ctx);
                *ret_err = xasprintf("nftables: %s", e && *e ? e : "command failed");
                size_t l = strlen(*ret_err);
                while (l && (*ret_err)[l - 1] == '\n')
                        (*ret_err)[--l] = '\0';
                return -EIO;
        }
        if (want_output) {
                const char *out = nft_ctx_get_output_buffer(ctx);
                *ret = out && *out ? json_loads(out, 0, NULL) : NULL;
        }
        return 0;
}

static json_t *match(const char *op, json_t *left, json_t *right) {
        return json_pack("{s:{s:s, s:o, s:o}}", "match", "op", op, "left", left, "right", right);
}

static json_t *meta(const char *key) {
        return json_pack("{s:{s:s}}", "meta", "key", key);
}

static json_t *ip_field(const char *field) {
        return json_pack("{s:{s:s, s:s}}", "payload", "protocol", "ip", "field", field);
}

static json_t *rule(const char *chain, const char *comment, json_t *expr) {
        return json_pack("{s:{s:s, s:s, s:s, s:s, s:o}}", "rule", "family", "inet", "table", TABLE, "chain", chain,
                         "comment", comment, "expr", expr);
}

/* Every rule object of the table, or an empty array when there is none. */
static json_t *list_rules_of(const char *family) {
        _cleanup_json_ json_t *cmds = json_pack("[{s:{s:{s:s, s:s}}}]", "list", "table", "family", family, "name", TABLE);
        json_t *out = NULL, *rules = json_array();
        _cleanup_free_ char *err = NULL;
        if (run(cmds, true, &out, &err) < 0 || !out)
                return rules;
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(out, "nftables"), i, it) {
                json_t *r = json_object_get(it, "rule");
                if (r)
                        json_array_append(rules, r);
        }
        json_decref(out);
        return rules;
}

static json_t *list_rules(void) {
        return list_rules_of("inet");
}

static int ip_forward_on(char **ret_err) {
        const char *p = "/proc/sys/net/ipv4/ip_forward";
        _cleanup_free_ char *cur = NULL;
        size_t len;
        if (read_file(p, 16, &cur, &len) == 0 && cur[0] == '1')
                return 0;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "1\n", 2) != 2) {
                *ret_err = xasprintf("cannot enable net.ipv4.ip_forward: %s", strerror(errno));
                return -errno;
        }
        return 0;
}

int nat_enable(const char *vm_id, const char *tap, const char *ip, const char *bridge, char **ret_err) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        int r;

        if ((r = ip_forward_on(ret_err)) < 0)
                return r;
        nat_disable(vm_id, ret_err); /* no duplicates after a crash */
        free(*ret_err);
        *ret_err = NULL;
        _cleanup_json_ json_t *cmds = json_pack(
                "[{s:{s:{s:s, s:s}}}, {s:{s:{s:s, s:s, s:s, s:s, s:s, s:i, s:s}}},"
                " {s:{s:{s:s, s:s, s:s, s:s, s:s, s:i, s:s}}}]",
                "add", "table", "family", "inet", "name", TABLE,
                "add", "chain", "family", "inet", "table", TABLE, "name", "postrouting", "type", "nat", "hook",
                "postrouting", "prio", 100, "policy", "accept",
                "add", "chain", "family", "inet", "table", TABLE, "name", "forward", "type", "filter", "hook", "forward",
                "prio", 0, "policy", "accept");
        /* the guard, once, at the end of forward */
        _cleanup_json_ json_t *rules = list_rules();
        bool guarded = false;
        size_t i;
        json_t *it;
        json_array_foreach(rules, i, it)
                guarded |= json_is_string(json_object_get(it, "comment")) &&
                           strcmp(json_string_value(json_object_get(it, "comment")), GUARD) == 0;
        if (!guarded)
                json_array_append_new(cmds, json_pack("{s:o}", "add",
                                                      rule("forward", GUARD,
                                                           json_pack("[o, o, {s:n}]",
                                                                     match("==", meta("iifname"), json_string(bridge)),
                                                                     match("!=", meta("oifname"), json_string(bridge)),
                                                                     "drop"))));
        /* the VM's rules, inserted ahead of the guard. Routed packets from a
         * guest enter through the bridge (the TAP is a bridge port), so they
         * are told apart by the guest's address, unique on the bridge. */
        json_array_append_new(
                cmds, json_pack("{s:o}", "insert",
                                rule("forward", comment,
                                     json_pack("[o, o, {s:n}]", match("==", meta("iifname"), json_string(bridge)),
                                               match("==", ip_field("saddr"), json_string(ip)), "accept"))));
        json_array_append_new(
                cmds, json_pack("{s:o}", "insert",
                                rule("forward", comment,
                                     json_pack("[o, o, o, {s:n}]", match("==", meta("oifname"), json_string(bridge)),
                                               match("==", ip_field("daddr"), json_string(ip)),
                                               match("in", json_pack("{s:{s:s}}", "ct", "key", "state"),
                                                     json_pack("[s, s]", "established", "related")),
                                               "accept"))));
        json_array_append_new(
                cmds, json_pack("{s:o}", "add",
                                rule("postrouting", comment,
                                     json_pack("[o, o, {s:n}]",
                                               match("==", ip_field("saddr"), json_string(ip)),
                                               match("!=", meta("oifname"), json_string(bridge)), "masquerade"))));
        r = run(cmds, false, NULL, ret_err);
        if (r < 0) {
                _cleanup_free_ char *e2 = NULL;
                nat_disable(vm_id, &e2);
        }
        return r;
}

/* Deletes the rules of `family` banger commented `comment`. */
static int delete_commented(const char *family, const char *comment, char **ret_err) {
        _cleanup_json_ json_t *rules = list_rules_of(family), *cmds = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(rules, i, it) {
                const char *c = json_string_value(json_object_get(it, "comment"));
                if (!c || strcmp(c, comment) != 0)
                        continue;
                json_array_append_new(cmds, json_pack("{s:{s:{s:s, s:s, s:O, s:O}}}", "delete", "rule", "family",
                                                      family, "table", TABLE, "chain", json_object_get(it, "chain"),
                                                      "handle", json_object_get(it, "handle")));
        }
        if (json_array_size(cmds) == 0)
                return 0;
        return run(cmds, false, NULL, ret_err);
}

int nat_disable(const char *vm_id, char **ret_err) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        return delete_commented("inet", comment, ret_err);
}

int antispoof_enable(const char *vm_id, const char *tap, const char *ip, char **ret_err) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        int r = delete_commented("bridge", comment, ret_err);
        free(*ret_err);
        *ret_err = NULL;
        (void) r;
        _cleanup_json_ json_t *cmds = json_pack(
                "[{s:{s:{s:s, s:s}}}, {s:{s:{s:s, s:s, s:s, s:s, s:s, s:i, s:s}}}]", "add", "table", "family", "bridge",
                "name", TABLE, "add", "chain", "family", "bridge", "table", TABLE, "name", "prerouting", "type", "filter",
                "hook", "prerouting", "prio", -200, "policy", "accept");
        /* IPv4 and ARP from the VM's port must carry its own address */
        json_t *v4 = json_pack("[o, o, o, {s:n}]", match("==", meta("iifname"), json_string(tap)),
                               match("==", json_pack("{s:{s:s, s:s}}", "payload", "protocol", "ether", "field", "type"),
                                     json_string("ip")),
                               match("!=", ip_field("saddr"), json_string(ip)), "drop");
        json_t *arp = json_pack("[o, o, o, {s:n}]", match("==", meta("iifname"), json_string(tap)),
                                match("==", json_pack("{s:{s:s, s:s}}", "payload", "protocol", "ether", "field", "type"),
                                      json_string("arp")),
                                match("!=", json_pack("{s:{s:s, s:s}}", "payload", "protocol", "arp", "field", "saddr ip"),
                                      json_string(ip)),
                                "drop");
        json_t *rules[] = { v4, arp };
        for (size_t i = 0; i < 2; i++)
                json_array_append_new(cmds, json_pack("{s:{s:{s:s, s:s, s:s, s:s, s:o}}}", "add", "rule", "family",
                                                      "bridge", "table", TABLE, "chain", "prerouting", "comment", comment,
                                                      "expr", rules[i]));
        return run(cmds, false, NULL, ret_err);
}

int antispoof_disable(const char *vm_id, char **ret_err) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        return delete_commented("bridge", comment, ret_err);
}

json_t *nat_vm_ids(void) {
        _cleanup_json_ json_t *rules = list_rules();
        json_t *ids = json_array();
        size_t i, j;
        json_t *it, *have;
        json_array_foreach(rules, i, it) {
                const char *c = json_string_value(json_object_get(it, "comment"));
                if (!c || strncmp(c, "banger-vm:", 10) != 0)
                        continue;
                bool dup = false;
                json_array_foreach(ids, j, have) dup |= strcmp(json_string_value(have), c + 10) == 0;
                if (!dup)
                        json_array_append_new(ids, json_string(c + 10));
        }
        return ids;
}

char *nat_table_text(void) {
        _cleanup_(nft_ctx_freep) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!ctx)
                return NULL;
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
        if (nft_run_cmd_from_buffer(ctx, "list table inet " TABLE) != 0)
                return NULL;
        return xstrdup(strempty(nft_ctx_get_output_buffer(ctx)));
}
