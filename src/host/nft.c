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

static json_t *rule_of(const char *family, const char *chain, const char *comment, json_t *expr) {
        return json_pack("{s:{s:s, s:s, s:s, s:s, s:o}}", "rule", "family", family, "table", TABLE, "chain", chain,
                         "comment", comment, "expr", expr);
}

static json_t *rule(const char *chain, const char *comment, json_t *expr) {
        return rule_of("inet", chain, comment, expr);
}

static json_t *payload(const char *protocol, const char *field) {
        return json_pack("{s:{s:s, s:s}}", "payload", "protocol", protocol, "field", field);
}

/* {"add": {"chain": ...}}: a base filter chain, policy accept (idempotent). */
static json_t *add_chain(const char *family, const char *name, const char *hook, int prio) {
        return json_pack("{s:{s:{s:s, s:s, s:s, s:s, s:s, s:i, s:s}}}", "add", "chain", "family", family, "table", TABLE,
                         "name", name, "type", "filter", "hook", hook, "prio", prio, "policy", "accept");
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

static bool in_list(const char *s, const char *const *list) {
        for (; s && *list; list++)
                if (strcmp(s, *list) == 0)
                        return true;
        return false;
}

/* Deletes the rules of `family` banger commented `comment` in `chains`
 * (NULL-terminated): NAT and the guard share the comment in `inet banger`,
 * each removes only what is in its own chains. */
static int delete_commented(const char *family, const char *const *chains, const char *comment, struct op_error *e) {
        _cleanup_json_ json_t *rules = list_rules_of(family), *cmds = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(rules, i, it) {
                const char *c = json_string_value(json_object_get(it, "comment"));
                if (!c || strcmp(c, comment) != 0 || !in_list(json_string_value(json_object_get(it, "chain")), chains))
                        continue;
                json_array_append_new(cmds, json_pack("{s:{s:{s:s, s:s, s:O, s:O}}}", "delete", "rule", "family",
                                                      family, "table", TABLE, "chain", json_object_get(it, "chain"),
                                                      "handle", json_object_get(it, "handle")));
        }
        if (json_array_size(cmds) == 0)
                return 0;
        return run(cmds, false, NULL, e);
}

static const char *const nat_chains[] = { "postrouting", "forward", NULL };

int nft_nat_disable(const char *vm_id, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        return delete_commented("inet", nat_chains, comment, e);
}

/* ---- the guard ---------------------------------------------------------------------------- */

static const char *const guard_bridge_chains[] = { "prerouting", "forward", "postrouting", NULL };
static const char *const guard_inet_chains[] = { "input", "isolate", NULL };

/* iifname/oifname == name (a TAP in the bridge family, the bridge in inet) */
static json_t *if_named(const char *dir, const char *name) {
        return match("==", meta(dir), json_string(name));
}

static json_t *ether_type(const char *op, json_t *right) {
        return match(op, payload("ether", "type"), right);
}

static void add_rule(json_t *cmds, const char *family, const char *chain, const char *comment, json_t *expr) {
        json_array_append_new(cmds, json_pack("{s:o}", "add", rule_of(family, chain, comment, expr)));
}

/* bridge banger: what the VM's port lets in (prerouting), what it lets out
 * (postrouting) and, isolated, nothing bridged to or from other ports. */
static void guard_bridge_rules(json_t *cmds, const struct nft_guard *g, const char *comment) {
        const char *tap = g->tap;
        /* the bridge learns source MACs from these frames: only the VM's own */
        add_rule(cmds, "bridge", "prerouting", comment,
                 json_pack("[o, o, {s:n}]", if_named("iifname", tap),
                           match("!=", payload("ether", "saddr"), json_string(g->mac)), "drop"));
        /* IPv4 and ARP only: no IPv6 (guests get none), no VLAN tags, nothing else */
        add_rule(cmds, "bridge", "prerouting", comment,
                 json_pack("[o, o, {s:n}]", if_named("iifname", tap),
                           ether_type("!=", json_pack("{s:[s, s]}", "set", "ip", "arp")), "drop"));
        add_rule(cmds, "bridge", "prerouting", comment,
                 json_pack("[o, o, o, {s:n}]", if_named("iifname", tap), ether_type("==", json_string("ip")),
                           match("!=", payload("ip", "saddr"), json_string(g->ip)), "drop"));
        add_rule(cmds, "bridge", "prerouting", comment,
                 json_pack("[o, o, o, {s:n}]", if_named("iifname", tap), ether_type("==", json_string("arp")),
                           match("!=", payload("arp", "saddr ip"), json_string(g->ip)), "drop"));
        add_rule(cmds, "bridge", "prerouting", comment,
                 json_pack("[o, o, o, {s:n}]", if_named("iifname", tap), ether_type("==", json_string("arp")),
                           match("!=", payload("arp", "saddr ether"), json_string(g->mac)), "drop"));
        /* unicast to another MAC (flooded while the bridge does not know
         * where that MAC is) never reaches the VM */
        add_rule(cmds, "bridge", "postrouting", comment,
                 json_pack("[o, o, o, {s:n}]", if_named("oifname", tap),
                           match("!=", payload("ether", "daddr"), json_string(g->mac)),
                           match("==", json_pack("{s:[o, s]}", "&", payload("ether", "daddr"), "01:00:00:00:00:00"),
                                 json_string("00:00:00:00:00:00")),
                           "drop"));
        if (!g->isolate)
                return;
        add_rule(cmds, "bridge", "forward", comment, json_pack("[o, {s:n}]", if_named("iifname", tap), "drop"));
        add_rule(cmds, "bridge", "forward", comment, json_pack("[o, {s:n}]", if_named("oifname", tap), "drop"));
}

/* inet banger: packets from the VM to the host itself (any of its
 * addresses) are dropped unless they answer a connection the host opened;
 * isolated, nothing routed between it and the other guests either (the
 * host would otherwise forward bridge to bridge). The guard above makes
 * the guest's IPv4 source address stand for its port here. */
static void guard_inet_rules(json_t *cmds, const struct nft_guard *g, const char *comment) {
        const char *br = g->bridge;
        add_rule(cmds, "inet", "input", comment,
                 json_pack("[o, o, o, {s:n}]", if_named("iifname", br),
                           match("==", payload("ip", "saddr"), json_string(g->ip)),
                           match("in", json_pack("{s:{s:s}}", "ct", "key", "state"),
                                 json_pack("[s, s, s]", "new", "invalid", "untracked")),
                           "drop"));
        if (!g->isolate)
                return;
        const char *dir[] = { "saddr", "daddr" };
        for (size_t i = 0; i < ELEMENTSOF(dir); i++)
                add_rule(cmds, "inet", "isolate", comment,
                         json_pack("[o, o, o, {s:n}]", if_named("iifname", br), if_named("oifname", br),
                                   match("==", payload("ip", dir[i]), json_string(g->ip)), "drop"));
}

int nft_guard_enable(const struct nft_guard *g, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", g->vm_id);
        (void) nft_guard_disable(g->vm_id, NULL); /* no duplicates after a crash */
        _cleanup_json_ json_t *cmds = json_pack(
                "[{s:{s:{s:s, s:s}}}, o, o, o, {s:{s:{s:s, s:s}}}, o, o]", "add", "table", "family", "bridge", "name",
                TABLE, add_chain("bridge", "prerouting", "prerouting", -200),
                add_chain("bridge", "forward", "forward", -200), add_chain("bridge", "postrouting", "postrouting", -200),
                "add", "table", "family", "inet", "name", TABLE, add_chain("inet", "input", "input", 0),
                add_chain("inet", "isolate", "forward", 0));
        guard_bridge_rules(cmds, g, comment);
        guard_inet_rules(cmds, g, comment);
        return run(cmds, false, NULL, e); /* one transaction: all of it or nothing */
}

int nft_guard_disable(const char *vm_id, struct op_error *e) {
        _cleanup_free_ char *comment = xasprintf("banger-vm:%s", vm_id);
        int r = delete_commented("bridge", guard_bridge_chains, comment, e);
        int r2 = delete_commented("inet", guard_inet_chains, comment, r < 0 ? NULL : e);
        return r < 0 ? r : r2;
}
