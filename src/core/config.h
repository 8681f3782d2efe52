/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * banger's configuration: config.toml parsed (toml.h), validated and
 * resolved against defaults and host facts, with the provenance of every
 * value recorded. Pure: host facts come in through struct config_host.
 */

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_key {
        CONFIG_LOG_LEVEL,
        CONFIG_VMM,
        CONFIG_QEMU_BIN,
        CONFIG_FIRECRACKER_BIN,
        CONFIG_JAILER_BIN,
        CONFIG_ACCEL,
        CONFIG_SSH_KEY_PATH,
        CONFIG_DEFAULT_IMAGE_NAME,
        CONFIG_DEBIAN_MIRROR,
        CONFIG_AUTO_STOP_STALE_AFTER,
        CONFIG_STATS_POLL_INTERVAL,
        CONFIG_BRIDGE_NAME,
        CONFIG_BRIDGE_IP,
        CONFIG_CIDR,
        CONFIG_TAP_POOL_SIZE,
        CONFIG_DEFAULT_DNS,
        CONFIG_DNS_LISTEN,
        CONFIG_UPDATE_URL,
        CONFIG_INSECURE_REGISTRIES,
        CONFIG_WARM_START,
        CONFIG_QEMU_AGENT_TRANSPORT,
        CONFIG_VCPU,
        CONFIG_MEMORY_MIB,
        CONFIG_DISK_SIZE,
        CONFIG_SYSTEM_OVERLAY_SIZE,
        CONFIG_FILE_SYNC,
        _CONFIG_KEY_MAX,
};

enum config_source {
        CONFIG_SOURCE_DEFAULT, /* the documented default */
        CONFIG_SOURCE_FILE,    /* config.toml */
        CONFIG_SOURCE_AUTO,    /* host heuristic (cpus, memory) */
        CONFIG_SOURCE_BUILTIN, /* floor constant */
        CONFIG_SOURCE_HOST,    /* read from the host (apt sources) */
        _CONFIG_SOURCE_MAX,
};

struct config_prov {
        enum config_source source;
        unsigned line; /* when source == FILE */
};

struct file_sync_entry {
        char *host;  /* absolute, "~/" expanded */
        char *guest; /* absolute, under /root/ */
        unsigned mode;
        unsigned line;
};

struct config {
        char *log_level;
        char *vmm;   /* auto | qemu | firecracker */
        char *qemu_bin;
        char *firecracker_bin;
        char *jailer_bin;
        char *accel; /* auto | kvm | tcg */
        char *ssh_key_path;
        char *default_image_name;
        char *debian_mirror;
        uint64_t auto_stop_stale_after_ms; /* 0: off */
        uint64_t stats_poll_interval_ms;
        char *bridge_name;
        char *bridge_ip;
        int64_t cidr;
        int64_t tap_pool_size;
        char *default_dns;
        char *dns_listen; /* "127.0.0.1:42069", or "off" */
        char *update_url; /* where `banger update` finds releases (docs/UPDATE.md); "" = not set */
        char *insecure_registries; /* "host[:port], ...": registries pulled over plain http; "" = none */
        char *warm_start;          /* "on" | "off": new VMs resume from a template (docs/ARCHITECTURE.md, "Warm start") */
        char *qemu_agent_transport; /* "auto" | "virtio-serial" | "vsock": how a QEMU VM's cold boot reaches its agent */
        int64_t vcpu;
        int64_t memory_mib;
        uint64_t disk_size_bytes;
        uint64_t system_overlay_size_bytes;
        struct file_sync_entry *file_sync;
        size_t n_file_sync;

        struct config_prov prov[_CONFIG_KEY_MAX];
        char **warnings; /* NULL-terminated; unknown keys etc. */
};

/* Facts about the host the resolution needs; gathered by the caller. */
struct config_host {
        const char *state_dir;  /* for ssh_key_path's default */
        const char *home;       /* for "~/" in file_sync/ssh_key_path */
        unsigned ncpus;
        uint64_t mem_bytes;
        const char *apt_mirror; /* NULL when apt sources gave nothing */
};

struct config_error {
        unsigned line; /* 0 when not tied to a line */
        char *msg;     /* owned */
};

#define CONFIG_VCPU_FLOOR 2
#define CONFIG_VCPU_MAX 64
#define CONFIG_MEMORY_MIB_MIN 128
#define CONFIG_MEMORY_MIB_MAX (1024 * 1024)
#define CONFIG_DISK_SIZE_MIN (64ULL << 20)
#define CONFIG_MEMORY_MIB_FLOOR 2048
#define CONFIG_DISK_SIZE_DEFAULT (8ULL << 30)
#define CONFIG_DISK_SIZE_MAX (128ULL << 30)
#define CONFIG_FALLBACK_MIRROR "http://deb.debian.org/debian"

/* text may be NULL (no config file). 0, or -EINVAL with *err filled. */
int config_load(const char *text, size_t len, const struct config_host *host, struct config **ret,
                struct config_error *err);
void config_free(struct config *c);
void config_error_done(struct config_error *e);

const char *config_key_name(enum config_key k);

/* What banger-config(5) says about a key (all strings static). */
struct config_key_doc {
        const char *table;       /* NULL: top level */
        const char *name;
        const char *type;        /* "string", "integer", "size", "duration", "array of tables" */
        const char *default_str; /* NULL: computed; help says how */
        const char *help;
};
void config_key_doc(enum config_key k, struct config_key_doc *ret);
const char *config_source_to_string(enum config_source s);

/* {"key": {"value": v, "source": s[, "line": n]}, ..., "warnings": [...]} */
json_t *config_to_json(const struct config *c);

/* ---- reload (SIGHUP, `banger daemon reload`) ---- */

/* Read once at start (VMM, bridge, TAP pool, DNS listener, ssh key): a
 * changed value waits for a restart. */
bool config_key_needs_restart(enum config_key k);
/* "log_level", "vm_defaults.vcpu" (malloc'd). */
char *config_key_path(enum config_key k);
/* {"changed": [{key, running, file}], "needs_restart": [{key, running, file}]}:
 * what differs between the running config and next. With keep_restart_keys,
 * next takes the running value of each key that needs a restart. */
json_t *config_diff(const struct config *cur, struct config *next, bool keep_restart_keys);

/* The daemon's config: one immutable snapshot at a time. Readers take
 * config_live_get() (an acquire load) where they use a value; a reload
 * publishes a whole new snapshot. A replaced snapshot is kept until
 * config_live_done (a reader may still hold it): a few KiB per reload. */
struct config_live {
        _Atomic(struct config *) cur;
        pthread_mutex_t lock; /* serialises reloads (taken by the daemon) */
        struct config **retired;
        size_t n_retired;
};
void config_live_init(struct config_live *l, struct config *c); /* takes c */
const struct config *config_live_get(struct config_live *l);
void config_live_publish(struct config_live *l, struct config *next); /* takes next; under l->lock */
void config_live_done(struct config_live *l);
