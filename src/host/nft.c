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
#include "op_error.h"
#include "strbuf.h"

#define TABLE "banger"
#define GUARD "banger-bridge-guard"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nft_ctx *, nft_ctx_free);

/* Runs a {"nftables": [...]} document; with want_output, the JSON answer. */
static int run(json_t *cmds, bool want_output, json_t **ret, struct op_error *e) {
        _cleanup_(nft_ctx_freep) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!ctx)
                return op_fail(e, -ENOMEM, "nftables: cannot create a context");
        nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE);
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
        _cleanup_json_ json_t *doc = json_pack("{s:O}", "nftables", cmds);
        _cleanup_free_ char *text = json_dump_compact(doc);
        if (nft_run_cmd_from_buffer(ctx, text) != 0) {
                const char *msg = nft_ctx_get_error_buffer(ctx);
                size_t l = msg ? strlen(msg) : 0;
                while (l && msg[l - 1] == '\n')
                        l--;
                return op_fail(e, -EIO, "nftables: %.*s", (int) l, l ? msg : "command failed");
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
        if (run(cmds, true, &out, NULL) < 0 || !out)
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

int nft_nat_enable(const char *vm_id, const char *ip, const char *bridge, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        int r;

        (void) nft_nat_disable(vm_id, NULL); /* no duplicates after a crash; the add reports */
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
        r = run(cmds, false, NULL, e);
        if (r < 0)
                (void) nft_nat_disable(vm_id, NULL); /* undo; the add's error is the one to report */
        return r;
}

/* Deletes the rules of `family` banger commented `comment`. */
static int delete_commented(const char *family, const char *comment, struct op_error *e) {
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
        return run(cmds, false, NULL, e);
}

int nft_nat_disable(const char *vm_id, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        return delete_commented("inet", comment, e);
}

int nft_guard_enable(const char *vm_id, const char *tap, const char *ip, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        (void) delete_commented("bridge", comment, NULL); /* no duplicates after a crash */
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
        return run(cmds, false, NULL, e);
}

int nft_guard_disable(const char *vm_id, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        return delete_commented("bridge", comment, e);
}
