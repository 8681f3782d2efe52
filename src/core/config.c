/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "jsonx.h"
#include "ipnet.h"
#include "macro.h"
#include "parse.h"
#include "strbuf.h"
#include "toml.h"

enum kind {
        KIND_STRING,
        KIND_INT,
        KIND_SIZE,     /* bytes; string with unit or integer MiB */
        KIND_MIB,      /* MiB; string with unit or integer MiB */
        KIND_DURATION, /* ms; string "10s" or integer seconds */
};

typedef int (*validate_fn)(const struct config *c, const void *value, char **why);

struct key_spec {
        const char *table; /* NULL: top level */
        const char *name;
        enum kind kind;
        size_t offset;
        validate_fn validate;
        const char *default_str; /* parsed like a file value when not NULL */
        const char *help;        /* banger-config(5); says where a NULL default comes from */
};

static int v_one_of(const char *s, char **why, const char *const *allowed) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;

        for (const char *const *a = allowed; *a; a++) {
                if (strcmp(s, *a) == 0)
                        return 0;
                strbuf_addf(&sb, "%s%s", sb.len ? ", " : "", *a);
        }
        *why = xasprintf("must be one of %s", sb.buf);
        return -EINVAL;
}

static int v_log_level(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_one_of(*(char *const *) v, why, (const char *const[]) { "error", "warn", "info", "debug", NULL });
}

static int v_vmm(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_one_of(*(char *const *) v, why, (const char *const[]) { "auto", "qemu", "firecracker", NULL });
}

static int v_agent_transport(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_one_of(*(char *const *) v, why, (const char *const[]) { "auto", "virtio-serial", "vsock", NULL });
}

static int v_accel(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_one_of(*(char *const *) v, why, (const char *const[]) { "auto", "kvm", "tcg", NULL });
}

static int v_nonempty(const struct config *c, const void *v, char **why) {
        (void) c;
        if (!**(char *const *) v) {
                *why = xstrdup("must not be empty");
                return -EINVAL;
        }
        return 0;
}

static int v_abs_path(const struct config *c, const void *v, char **why) {
        (void) c;
        if ((*(char *const *) v)[0] != '/') {
                *why = xstrdup("must be an absolute path (or start with ~/)");
                return -EINVAL;
        }
        return 0;
}

static int v_dns_label(const struct config *c, const void *v, char **why) {
        (void) c;
        if (!string_is_dns_label(*(char *const *) v)) {
                *why = xstrdup("must be a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')");
                return -EINVAL;
        }
        return 0;
}

static int v_url(const struct config *c, const void *v, char **why) {
        const char *s = *(char *const *) v;
        (void) c;
        if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
                *why = xstrdup("must be an http:// or https:// URL");
                return -EINVAL;
        }
        if (strpbrk(s, " \t\r\n\"'\\")) {
                *why = xstrdup("must not contain spaces, quotes or backslashes");
                return -EINVAL;
        }
        return 0;
}

/* "" (updates not configured), or where the releases are published */
static int v_update_url(const struct config *c, const void *v, char **why) {
        const char *s = *(char *const *) v;
        if (!*s)
                return 0;
        int r = v_url(c, v, why);
        if (r == 0 && (strchr(s, '?') || strchr(s, '#'))) {
                *why = xstrdup("must be a plain http:// or https:// URL (no query or fragment)");
                r = -EINVAL;
        }
        return r;
}

static int v_onoff(const struct config *c, const void *v, char **why) {
        const char *s = *(const char *const *) v;
        (void) c;
        if (strcmp(s, "on") != 0 && strcmp(s, "off") != 0) {
                *why = xstrdup("must be \"on\" or \"off\"");
                return -EINVAL;
        }
        return 0;
}

/* "host[:port], ..." (registries banger may reach over plain http). */
static int v_registries(const struct config *c, const void *v, char **why) {
        const char *s = *(const char *const *) v;
        (void) c;
        if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[], ") != strlen(s)) {
                *why = xstrdup("must be a comma-separated list of host[:port]");
                return -EINVAL;
        }
        return 0;
}

static int v_bridge_name(const struct config *c, const void *v, char **why) {
        const char *s = *(char *const *) v;
        (void) c;
        if (strcmp(s, "br-fc") != 0 && strncmp(s, "br-fc-", 6) != 0) {
                *why = xstrdup("must be br-fc or start with br-fc-");
                return -EINVAL;
        }
        if (strlen(s) > 15 || strlen(s) == 6 || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(s)) {
                *why = xstrdup("must be at most 15 characters of a-z, 0-9 and '-' (and not end in '-')");
                return -EINVAL;
        }
        return 0;
}

static int v_ipv4(const struct config *c, const void *v, char **why) {
        struct in_addr a;
        (void) c;
        if (inet_pton(AF_INET, *(char *const *) v, &a) != 1) {
                *why = xstrdup("must be an IPv4 address");
                return -EINVAL;
        }
        return 0;
}

/* "off", or IPv4:port */
static int v_listen(const struct config *c, const void *v, char **why) {
        const char *s = *(char *const *) v;
        uint32_t ip;
        uint16_t port;
        (void) c;
        if (strcmp(s, "off") == 0 || ipv4_port_parse(s, &ip, &port) == 0)
                return 0;
        *why = xstrdup("must be IPv4:port (e.g. 127.0.0.1:42069) or \"off\"");
        return -EINVAL;
}

static int v_range(int64_t x, int64_t lo, int64_t hi, char **why) {
        if (x < lo || x > hi) {
                *why = xasprintf("must be between %lld and %lld", (long long) lo, (long long) hi);
                return -EINVAL;
        }
        return 0;
}

static int v_cidr(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_range(*(const int64_t *) v, 8, 30, why);
}

static int v_tap_pool(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_range(*(const int64_t *) v, 0, 64, why);
}

static int v_vcpu(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_range(*(const int64_t *) v, 1, CONFIG_VCPU_MAX, why);
}

static int v_memory(const struct config *c, const void *v, char **why) {
        (void) c;
        return v_range(*(const int64_t *) v, CONFIG_MEMORY_MIB_MIN, CONFIG_MEMORY_MIB_MAX, why);
}

static int v_disk(const struct config *c, const void *v, char **why) {
        uint64_t b = *(const uint64_t *) v;
        (void) c;
        if (b < CONFIG_DISK_SIZE_MIN || b > CONFIG_DISK_SIZE_MAX) {
                *why = xstrdup("must be between 64 MiB and 128 GiB");
                return -EINVAL;
        }
        return 0;
}

static int v_poll(const struct config *c, const void *v, char **why) {
        (void) c;
        if (*(const uint64_t *) v < 1000) {
                *why = xstrdup("must be at least 1s");
                return -EINVAL;
        }
        return 0;
}

#define O(f) offsetof(struct config, f)
static const struct key_spec specs[_CONFIG_KEY_MAX] = {
        [CONFIG_LOG_LEVEL] = { NULL, "log_level", KIND_STRING, O(log_level), v_log_level, "info",
                "the daemon's log level: error, warn, info or debug" },
        [CONFIG_VMM] = { NULL, "vmm", KIND_STRING, O(vmm), v_vmm, "auto",
                "the virtual machine monitor: auto (firecracker if installed and KVM proven, else qemu), "
                "qemu or firecracker" },
        [CONFIG_QEMU_BIN] = { NULL, "qemu_bin", KIND_STRING, O(qemu_bin), v_nonempty, "qemu-system-x86_64",
                "the QEMU binary (a name looked up in PATH, or a path)" },
        [CONFIG_FIRECRACKER_BIN] = { NULL, "firecracker_bin", KIND_STRING, O(firecracker_bin), v_nonempty,
                                     "firecracker",
                "the Firecracker binary" },
        [CONFIG_JAILER_BIN] = { NULL, "jailer_bin", KIND_STRING, O(jailer_bin), v_nonempty, "/usr/bin/jailer",
                "Firecracker's jailer: used when installed and bangerd runs as root (a chroot per VM); \"none\": never" },
        [CONFIG_ACCEL] = { NULL, "accel", KIND_STRING, O(accel), v_accel, "auto",
                "the accelerator: auto (KVM when usable, else TCG), kvm or tcg" },
        [CONFIG_SSH_KEY_PATH] = { NULL, "ssh_key_path", KIND_STRING, O(ssh_key_path), v_abs_path, NULL,
                "the private key banger uses to ssh into guests "
                "(default: <state>/ssh/id_ed25519, made when missing)" },
        [CONFIG_DEFAULT_IMAGE_NAME] = { NULL, "default_image_name", KIND_STRING, O(default_image_name),
                                        v_dns_label, "debian-bookworm",
                "the image a VM boots when no --image is given (pulled when missing)" },
        [CONFIG_DEBIAN_MIRROR] = { NULL, "debian_mirror", KIND_STRING, O(debian_mirror), v_url, NULL,
                "the Debian mirror for kernels and image builds (default: read from /etc/apt sources, "
                "else http://deb.debian.org/debian)" },
        [CONFIG_AUTO_STOP_STALE_AFTER] = { NULL, "auto_stop_stale_after", KIND_DURATION,
                                           O(auto_stop_stale_after_ms), NULL, "0",
                "stop VMs idle (no ssh, exec or RPC) this long, e.g. 30m or 2h; 0 turns it off" },
        [CONFIG_STATS_POLL_INTERVAL] = { NULL, "stats_poll_interval", KIND_DURATION, O(stats_poll_interval_ms),
                                         v_poll, "10s",
                "how often the daemon samples VM statistics" },
        [CONFIG_BRIDGE_NAME] = { NULL, "bridge_name", KIND_STRING, O(bridge_name), v_bridge_name, "br-fc",
                "the host bridge the guests' TAP devices join (br-fc or br-fc-*)" },
        [CONFIG_BRIDGE_IP] = { NULL, "bridge_ip", KIND_STRING, O(bridge_ip), v_ipv4, "172.16.0.1",
                "the bridge's address: the guests' gateway" },
        [CONFIG_CIDR] = { NULL, "cidr", KIND_INT, O(cidr), v_cidr, "24",
                "the prefix length of the guest network (8 to 30)" },
        [CONFIG_TAP_POOL_SIZE] = { NULL, "tap_pool_size", KIND_INT, O(tap_pool_size), v_tap_pool, "0",
                "idle TAP devices kept on the bridge for faster starts" },
        [CONFIG_DEFAULT_DNS] = { NULL, "default_dns", KIND_STRING, O(default_dns), v_ipv4, "1.1.1.1",
                "the name server in the guests' resolv.conf" },
        [CONFIG_DNS_LISTEN] = { NULL, "dns_listen", KIND_STRING, O(dns_listen), v_listen, "127.0.0.1:42069",
                "where bangerd answers DNS for <name>.vm (address:port), or off" },
        [CONFIG_UPDATE_URL] = { NULL, "update_url", KIND_STRING, O(update_url), v_update_url, "",
                "where banger update finds releases; empty: not configured" },
        [CONFIG_INSECURE_REGISTRIES] = { NULL, "insecure_registries", KIND_STRING, O(insecure_registries),
                                         v_registries, "",
                "OCI registries pulled over plain http, as \"host[:port], ...\" (loopback always is)" },
        [CONFIG_WARM_START] = { NULL, "warm_start", KIND_STRING, O(warm_start), v_onoff, "on",
                "on: new VMs resume from a warm-start template when one fits; off: always boot cold" },
        [CONFIG_QEMU_AGENT_TRANSPORT] = { NULL, "qemu_agent_transport", KIND_STRING, O(qemu_agent_transport),
                                          v_agent_transport, "auto",
                "how a QEMU VM booted cold reaches its guest agent: auto (vsock where /dev/vhost-vsock opens, "
                "else virtio-serial), virtio-serial, or vsock (a start fails without the device); warm starts "
                "and their templates always use virtio-serial, restored states the transport they were saved with" },
        [CONFIG_VCPU] = { "vm_defaults", "vcpu", KIND_INT, O(vcpu), v_vcpu, NULL,
                "virtual CPUs of a new VM (default: host CPUs/4 capped at 4, at least 2)" },
        [CONFIG_MEMORY_MIB] = { "vm_defaults", "memory_mib", KIND_MIB, O(memory_mib), v_memory, NULL,
                "memory of a new VM, in MiB or with a unit such as 4G (default: host RAM/8 capped at 8 GiB, "
                "at least 2048 MiB)" },
        [CONFIG_DISK_SIZE] = { "vm_defaults", "disk_size", KIND_SIZE, O(disk_size_bytes), v_disk, NULL,
                "size of a new VM's work disk, /root (default: 8G)" },
        [CONFIG_SYSTEM_OVERLAY_SIZE] = { "vm_defaults", "system_overlay_size", KIND_SIZE,
                                         O(system_overlay_size_bytes), v_disk, NULL,
                "virtual size of a new VM's copy-on-write root overlay (default: 8G)" },
        [CONFIG_FILE_SYNC] = { NULL, "file_sync", KIND_STRING, 0, NULL, NULL,
                "host files or directories copied onto a new VM's /root work disk: each [[file_sync]] "
                "table has host (a path, ~/ allowed), guest (under /root/ or ~/, no ..) and mode "
                "(octal, as a string, e.g. \"0600\")" }, /* handled apart */
};
#undef O

static const char *const source_names[_CONFIG_SOURCE_MAX] = {
        [CONFIG_SOURCE_DEFAULT] = "default", [CONFIG_SOURCE_FILE] = "config", [CONFIG_SOURCE_AUTO] = "auto",
        [CONFIG_SOURCE_BUILTIN] = "builtin", [CONFIG_SOURCE_HOST] = "host",
};

const char *config_key_name(enum config_key k) {
        return k < _CONFIG_KEY_MAX ? specs[k].name : "unknown";
}

void config_key_doc(enum config_key k, struct config_key_doc *ret) {
        static const char *const kinds[] = {
                [KIND_STRING] = "string", [KIND_INT] = "integer", [KIND_SIZE] = "size",
                [KIND_MIB] = "size", [KIND_DURATION] = "duration",
        };
        const struct key_spec *s = &specs[k < _CONFIG_KEY_MAX ? k : 0];
        *ret = (struct config_key_doc) {
                .table = s->table, .name = s->name, .default_str = s->default_str, .help = s->help,
                .type = k == CONFIG_FILE_SYNC ? "array of tables" : kinds[s->kind],
        };
}

const char *config_source_to_string(enum config_source s) {
        return s < _CONFIG_SOURCE_MAX ? source_names[s] : "unknown";
}

_printf_(3, 4) static int set_error(struct config_error *err, unsigned line, const char *fmt, ...) {
        va_list ap;
        struct strbuf sb = STRBUF_INIT;

        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        err->line = line;
        err->msg = strbuf_detach(&sb, NULL);
        return -EINVAL;
}

static void add_warning(struct config *c, char *w) {
        size_t n = 0;
        while (c->warnings && c->warnings[n])
                n++;
        c->warnings = xrealloc(c->warnings, (n + 2) * sizeof(char *));
        c->warnings[n] = w;
        c->warnings[n + 1] = NULL;
}

static char *expand_home(const char *s, const char *home) {
        if (strncmp(s, "~/", 2) == 0 && home)
                return path_join(home, s + 2);
        return xstrdup(s);
}

/* Converts a TOML value (or a default string) into the key's C value. */
static int convert(const struct key_spec *k, const struct toml_value *tv, const char *str, const char *home,
                   void *dst, char **why) {
        uint64_t u;
        int64_t i;
        int r;

        switch (k->kind) {
        case KIND_STRING:
                if (tv && tv->type != TOML_STRING)
                        goto type_error;
                *(char **) dst = expand_home(tv ? tv->s : str, home);
                return 0;
        case KIND_INT:
                if (tv && tv->type != TOML_INT)
                        goto type_error;
                if (tv)
                        i = tv->i;
                else if (parse_int64(str, &i) < 0)
                        return -EINVAL;
                *(int64_t *) dst = i;
                return 0;
        case KIND_SIZE:
        case KIND_MIB:
                if (tv && tv->type == TOML_INT) {
                        if (tv->i < 0 || (uint64_t) tv->i > (UINT64_MAX >> 20)) {
                                *why = xstrdup("is out of range");
                                return -EINVAL;
                        }
                        u = (uint64_t) tv->i << 20;
                } else if (tv && tv->type != TOML_STRING)
                        goto type_error;
                else {
                        r = parse_size(tv ? tv->s : str, &u);
                        if (r < 0) {
                                *why = xstrdup("must be a size such as \"8G\", \"512MiB\" or a number of MiB");
                                return r;
                        }
                }
                if (k->kind == KIND_MIB) {
                        if (u % (1u << 20)) {
                                *why = xstrdup("must be a whole number of MiB");
                                return -EINVAL;
                        }
                        if ((u >> 20) > INT64_MAX) {
                                *why = xstrdup("is out of range");
                                return -EINVAL;
                        }
                        *(int64_t *) dst = (int64_t) (u >> 20);
                } else
                        *(uint64_t *) dst = u;
                return 0;
        case KIND_DURATION:
                if (tv && tv->type == TOML_INT) {
                        if (tv->i < 0 || (uint64_t) tv->i > UINT64_MAX / 1000) {
                                *why = xstrdup("is out of range");
                                return -EINVAL;
                        }
                        *(uint64_t *) dst = (uint64_t) tv->i * 1000;
                        return 0;
                }
                if (tv && tv->type != TOML_STRING)
                        goto type_error;
                r = parse_duration_ms(tv ? tv->s : str, &u);
                if (r < 0) {
                        *why = xstrdup("must be a duration such as \"30s\", \"5m\", \"1h\" or a number of seconds");
                        return r;
                }
                *(uint64_t *) dst = u;
                return 0;
        }
type_error:
        *why = xasprintf("must be a %s, not a %s",
                         k->kind == KIND_INT ? "integer" : k->kind == KIND_STRING ? "string" : "string or integer",
                         toml_type_to_string(tv->type));
        return -EINVAL;
}

static void free_value(const struct key_spec *k, struct config *c) {
        if (k->kind == KIND_STRING && k != &specs[CONFIG_FILE_SYNC]) {
                char **p = (char **) ((char *) c + k->offset);
                free(*p);
                *p = NULL;
        }
}

static int apply_key(struct config *c, enum config_key key, const struct toml_value *tv, const char *home,
                     struct config_error *err) {
        const struct key_spec *k = &specs[key];
        void *dst = (char *) c + k->offset;
        _cleanup_free_ char *why = NULL;
        int r;

        free_value(k, c);
        r = convert(k, tv, NULL, home, dst, &why);
        if (r == 0 && k->validate)
                r = k->validate(c, dst, &why);
        if (r < 0)
                return set_error(err, tv->line, "%s%s%s: %s", k->table ? k->table : "", k->table ? "." : "",
                                 k->name, why ? why : "invalid value");
        c->prov[key] = (struct config_prov) { CONFIG_SOURCE_FILE, tv->line };
        return 0;
}

static int parse_mode(const char *s, unsigned *ret) {
        unsigned v = 0;

        if (!*s || strlen(s) > 5)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '7')
                        return -EINVAL;
                v = v * 8 + (unsigned) (*p - '0');
        }
        if (v > 07777)
                return -EINVAL;
        *ret = v;
        return 0;
}

static bool has_dotdot(const char *p) {
        const char *s = p;
        while ((s = strstr(s, ".."))) {
                bool start = s == p || s[-1] == '/';
                bool end = s[2] == '\0' || s[2] == '/';
                if (start && end)
                        return true;
                s += 2;
        }
        return false;
}

static int load_file_sync_entry(struct config *c, size_t idx, const struct toml_table *t, const char *home,
                                struct config_error *err) {
        struct file_sync_entry e = { .mode = 0600, .line = t->line };
        const struct toml_value *v;

        for (size_t i = 0; i < t->n; i++) {
                const char *key = t->kvs[i].key;
                if (strcmp(key, "host") != 0 && strcmp(key, "guest") != 0 && strcmp(key, "mode") != 0)
                        add_warning(c, xasprintf("file_sync[%zu]: unknown key '%s' (line %u) ignored", idx, key,
                                                 t->kvs[i].value.line));
                else if (t->kvs[i].value.type != TOML_STRING)
                        return set_error(err, t->kvs[i].value.line, "file_sync[%zu].%s: must be a string", idx, key);
        }
        v = toml_table_get(t, "host");
        if (!v || !*v->s)
                return set_error(err, t->line, "file_sync[%zu]: 'host' is required", idx);
        if (v->s[0] != '/' && strncmp(v->s, "~/", 2) != 0)
                return set_error(err, v->line, "file_sync[%zu].host: must be absolute or start with ~/", idx);
        if (has_dotdot(v->s))
                return set_error(err, v->line, "file_sync[%zu].host: must not contain '..'", idx);

        const struct toml_value *g = toml_table_get(t, "guest");
        if (!g || !*g->s)
                return set_error(err, t->line, "file_sync[%zu]: 'guest' is required", idx);
        _cleanup_free_ char *guest = strncmp(g->s, "~/", 2) == 0 ? xasprintf("/root/%s", g->s + 2) : xstrdup(g->s);
        if (strncmp(guest, "/root/", 6) != 0 || !guest[6])
                return set_error(err, g->line, "file_sync[%zu].guest: '%s' must be under /root/ (or ~/)", idx, g->s);
        if (has_dotdot(guest))
                return set_error(err, g->line, "file_sync[%zu].guest: must not contain '..'", idx);

        const struct toml_value *m = toml_table_get(t, "mode");
        if (m && parse_mode(m->s, &e.mode) < 0)
                return set_error(err, m->line, "file_sync[%zu].mode: '%s' is not an octal mode such as \"0600\"", idx,
                                 m->s);

        e.host = expand_home(v->s, home);
        e.guest = TAKE_PTR(guest);
        c->file_sync = xrealloc(c->file_sync, (c->n_file_sync + 1) * sizeof(e));
        c->file_sync[c->n_file_sync++] = e;
        return 0;
}

static int find_key(const char *table, const char *name) {
        for (int k = 0; k < _CONFIG_KEY_MAX; k++) {
                if (k == CONFIG_FILE_SYNC)
                        continue;
                bool same_table = (!table && !specs[k].table) ||
                                  (table && specs[k].table && strcmp(table, specs[k].table) == 0);
                if (same_table && strcmp(specs[k].name, name) == 0)
                        return k;
        }
        return -1;
}

static int load_table(struct config *c, const struct toml_table *t, const char *table_name, const char *home,
                      struct config_error *err) {
        int r;

        for (size_t i = 0; i < t->n; i++) {
                const struct toml_kv *kv = &t->kvs[i];

                if (!table_name && strcmp(kv->key, "file_sync") == 0) {
                        if (kv->value.type != TOML_ARRAY_OF_TABLES)
                                return set_error(err, kv->value.line, "file_sync: must be an array of tables ([[file_sync]])");
                        for (size_t j = 0; j < kv->value.array.n; j++) {
                                r = load_file_sync_entry(c, j, kv->value.array.items[j], home, err);
                                if (r < 0)
                                        return r;
                        }
                        c->prov[CONFIG_FILE_SYNC] = (struct config_prov) { CONFIG_SOURCE_FILE, kv->value.line };
                        continue;
                }
                if (!table_name && strcmp(kv->key, "vm_defaults") == 0) {
                        if (kv->value.type != TOML_TABLE)
                                return set_error(err, kv->value.line, "vm_defaults: must be a table");
                        r = load_table(c, kv->value.table, "vm_defaults", home, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                int k = find_key(table_name, kv->key);
                if (k < 0) {
                        add_warning(c, xasprintf("unknown key '%s%s%s' (line %u) ignored", table_name ? table_name : "",
                                                 table_name ? "." : "", kv->key, kv->value.line));
                        continue;
                }
                r = apply_key(c, (enum config_key) k, &kv->value, home, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void apply_defaults(struct config *c, const struct config_host *h) {
        for (int k = 0; k < _CONFIG_KEY_MAX; k++) {
                const struct key_spec *s = &specs[k];
                _cleanup_free_ char *why = NULL;
                if (!s->default_str)
                        continue;
                (void) convert(s, NULL, s->default_str, h->home, (char *) c + s->offset, &why);
                c->prov[k] = (struct config_prov) { CONFIG_SOURCE_DEFAULT, 0 };
        }
        c->ssh_key_path = xasprintf("%s/ssh/id_ed25519", h->state_dir ? h->state_dir : ".");
        c->prov[CONFIG_SSH_KEY_PATH].source = CONFIG_SOURCE_DEFAULT;
        if (h->apt_mirror) {
                c->debian_mirror = xstrdup(h->apt_mirror);
                c->prov[CONFIG_DEBIAN_MIRROR].source = CONFIG_SOURCE_HOST;
        } else {
                c->debian_mirror = xstrdup(CONFIG_FALLBACK_MIRROR);
                c->prov[CONFIG_DEBIAN_MIRROR].source = CONFIG_SOURCE_BUILTIN;
        }
        c->prov[CONFIG_FILE_SYNC].source = CONFIG_SOURCE_DEFAULT;
}

/* vm_defaults not set in the file: host heuristic when it beats the floor. */
static void resolve_vm_defaults(struct config *c, const struct config_host *h) {
        if (c->prov[CONFIG_VCPU].source != CONFIG_SOURCE_FILE) {
                int64_t auto_v = h->ncpus / 4 > 4 ? 4 : (int64_t) (h->ncpus / 4);
                bool use_auto = auto_v > CONFIG_VCPU_FLOOR;
                c->vcpu = use_auto ? auto_v : CONFIG_VCPU_FLOOR;
                c->prov[CONFIG_VCPU].source = use_auto ? CONFIG_SOURCE_AUTO : CONFIG_SOURCE_BUILTIN;
        }
        if (c->prov[CONFIG_MEMORY_MIB].source != CONFIG_SOURCE_FILE) {
                int64_t auto_m = (int64_t) (h->mem_bytes / 8 >> 20);
                if (auto_m > 8192)
                        auto_m = 8192;
                bool use_auto = auto_m > CONFIG_MEMORY_MIB_FLOOR;
                c->memory_mib = use_auto ? auto_m : CONFIG_MEMORY_MIB_FLOOR;
                c->prov[CONFIG_MEMORY_MIB].source = use_auto ? CONFIG_SOURCE_AUTO : CONFIG_SOURCE_BUILTIN;
        }
        if (c->prov[CONFIG_DISK_SIZE].source != CONFIG_SOURCE_FILE) {
                c->disk_size_bytes = CONFIG_DISK_SIZE_DEFAULT;
                c->prov[CONFIG_DISK_SIZE].source = CONFIG_SOURCE_BUILTIN;
        }
        if (c->prov[CONFIG_SYSTEM_OVERLAY_SIZE].source != CONFIG_SOURCE_FILE) {
                c->system_overlay_size_bytes = CONFIG_DISK_SIZE_DEFAULT;
                c->prov[CONFIG_SYSTEM_OVERLAY_SIZE].source = CONFIG_SOURCE_BUILTIN;
        }
}

/* A bridge address must leave room for guests in its subnet. */
static int check_network(const struct config *c, struct config_error *err) {
        struct in_addr a;
        uint32_t ip, mask, host;

        if (inet_pton(AF_INET, c->bridge_ip, &a) != 1)
                return 0;
        ip = ntohl(a.s_addr);
        mask = c->cidr ? 0xFFFFFFFFu << (32 - c->cidr) : 0;
        host = ip & ~mask;
        if (host == 0 || host == ~mask)
                return set_error(err, c->prov[CONFIG_BRIDGE_IP].line,
                                 "bridge_ip: %s is the network or broadcast address of its /%lld", c->bridge_ip,
                                 (long long) c->cidr);
        return 0;
}

int config_load(const char *text, size_t len, const struct config_host *host, struct config **ret,
                struct config_error *err) {
        struct config *c = xcalloc(1, sizeof(*c));
        struct toml_table *root = NULL;
        struct toml_error terr;
        int r;

        *err = (struct config_error) { 0 };
        apply_defaults(c, host);
        if (text) {
                r = toml_parse(text, len, &root, &terr);
                if (r < 0) {
                        set_error(err, terr.line, "%s", terr.msg);
                        config_free(c);
                        return r;
                }
                r = load_table(c, root, NULL, host->home, err);
                toml_table_free(root);
                if (r < 0) {
                        config_free(c);
                        return r;
                }
        }
        resolve_vm_defaults(c, host);
        r = check_network(c, err);
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void config_free(struct config *c) {
        if (!c)
                return;
        for (int k = 0; k < _CONFIG_KEY_MAX; k++)
                free_value(&specs[k], c);
        for (size_t i = 0; i < c->n_file_sync; i++) {
                free(c->file_sync[i].host);
                free(c->file_sync[i].guest);
        }
        free(c->file_sync);
        strv_free(c->warnings);
        free(c);
}

void config_error_done(struct config_error *e) {
        free(e->msg);
        e->msg = NULL;
}

static json_t *value_json(const struct config *c, enum config_key k) {
        const struct key_spec *s = &specs[k];
        const void *p = (const char *) c + s->offset;

        if (k == CONFIG_FILE_SYNC) {
                json_t *a = json_array();
                for (size_t i = 0; i < c->n_file_sync; i++) {
                        char mode[8];
                        snprintf(mode, sizeof(mode), "%04o", c->file_sync[i].mode);
                        json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "host", c->file_sync[i].host, "guest",
                                                           c->file_sync[i].guest, "mode", mode));
                }
                return a;
        }
        switch (s->kind) {
        case KIND_STRING:
                return json_string(*(char *const *) p);
        case KIND_INT:
        case KIND_MIB:
                return json_integer(*(const int64_t *) p);
        case KIND_SIZE: {
                char buf[32];
                return json_string(format_size(*(const uint64_t *) p, buf, sizeof(buf)));
        }
        case KIND_DURATION: {
                char buf[32];
                return json_string(format_duration_ms(*(const uint64_t *) p, buf, sizeof(buf)));
        }
        }
        return json_null();
}

json_t *config_to_json(const struct config *c) {
        json_t *o = json_object(), *w = json_array();

        for (int k = 0; k < _CONFIG_KEY_MAX; k++) {
                const struct key_spec *s = &specs[k];
                json_t *e = json_pack("{s:o, s:s}", "value", value_json(c, (enum config_key) k), "source",
                                      config_source_to_string(c->prov[k].source));
                if (c->prov[k].source == CONFIG_SOURCE_FILE)
                        json_object_set_new(e, "line", json_integer(c->prov[k].line));
                if (s->table) {
                        json_t *t = json_object_get(o, s->table);
                        if (!t) {
                                t = json_object();
                                json_object_set_new(o, s->table, t);
                        }
                        json_object_set_new(t, s->name, e);
                } else
                        json_object_set_new(o, s->name, e);
        }
        for (char **x = c->warnings; x && *x; x++)
                json_array_append_new(w, json_string(*x));
        json_object_set_new(o, "warnings", w);
        return o;
}

/* ---- reload ---------------------------------------------------------------- */

/* What the daemon reads once at start (the VMM, the bridge and its
 * addresses, the TAP pool, the DNS listener, the guests' ssh key): a new
 * value waits for a restart. Everything else is read where it is used. */
bool config_key_needs_restart(enum config_key k) {
        switch (k) {
        case CONFIG_VMM:
        case CONFIG_QEMU_BIN:
        case CONFIG_FIRECRACKER_BIN:
        case CONFIG_JAILER_BIN:
        case CONFIG_ACCEL:
        case CONFIG_SSH_KEY_PATH:
        case CONFIG_BRIDGE_NAME:
        case CONFIG_BRIDGE_IP:
        case CONFIG_CIDR:
        case CONFIG_TAP_POOL_SIZE:
        case CONFIG_DNS_LISTEN:
                return true;
        default:
                return false;
        }
}

char *config_key_path(enum config_key k) {
        const struct key_spec *s = &specs[k < _CONFIG_KEY_MAX ? k : 0];
        return s->table ? xasprintf("%s.%s", s->table, s->name) : xstrdup(s->name);
}

/* next's value of k becomes cur's (a key that needs a restart keeps its
 * running value until then). */
static void carry(struct config *next, const struct config *cur, enum config_key k) {
        const struct key_spec *s = &specs[k];
        void *dst = (char *) next + s->offset;
        const void *src = (const char *) cur + s->offset;
        switch (s->kind) {
        case KIND_STRING:
                free(*(char **) dst);
                *(char **) dst = xstrdup(*(char *const *) src);
                break;
        case KIND_INT:
        case KIND_MIB:
                *(int64_t *) dst = *(const int64_t *) src;
                break;
        case KIND_SIZE:
        case KIND_DURATION:
                *(uint64_t *) dst = *(const uint64_t *) src;
                break;
        }
        next->prov[k] = cur->prov[k];
}

json_t *config_diff(const struct config *cur, struct config *next, bool keep_restart_keys) {
        json_t *changed = json_array(), *restart = json_array();
        for (int k = 0; k < _CONFIG_KEY_MAX; k++) {
                _cleanup_json_ json_t *a = value_json(cur, (enum config_key) k);
                _cleanup_json_ json_t *b = value_json(next, (enum config_key) k);
                if (json_equal(a, b))
                        continue;
                _cleanup_free_ char *key = config_key_path((enum config_key) k);
                bool wait = config_key_needs_restart((enum config_key) k);
                json_array_append_new(wait ? restart : changed,
                                      json_pack("{s:s, s:O, s:O}", "key", key, "running", a, "file", b));
                if (wait && keep_restart_keys)
                        carry(next, cur, (enum config_key) k);
        }
        return json_pack("{s:o, s:o}", "changed", changed, "needs_restart", restart);
}

/* ---- the live snapshot ------------------------------------------------------- */

void config_live_init(struct config_live *l, struct config *c) {
        atomic_store_explicit(&l->cur, c, memory_order_release);
        pthread_mutex_init(&l->lock, NULL);
        l->retired = NULL;
        l->n_retired = 0;
}

const struct config *config_live_get(struct config_live *l) {
        return atomic_load_explicit(&l->cur, memory_order_acquire);
}

void config_live_publish(struct config_live *l, struct config *next) {
        struct config *old = atomic_exchange_explicit(&l->cur, next, memory_order_acq_rel);
        /* readers may still hold old: it lives until config_live_done */
        l->retired = xrealloc(l->retired, (l->n_retired + 1) * sizeof(*l->retired));
        l->retired[l->n_retired++] = old;
}

void config_live_done(struct config_live *l) {
        config_free(atomic_exchange_explicit(&l->cur, NULL, memory_order_acq_rel));
        for (size_t k = 0; k < l->n_retired; k++)
                config_free(l->retired[k]);
        free(l->retired);
        l->retired = NULL;
        l->n_retired = 0;
        pthread_mutex_destroy(&l->lock);
}
