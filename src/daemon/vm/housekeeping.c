/* SPDX-License-Identifier: MIT */
/*
 * The VM service's background work, on one housekeeping thread: stats of
 * every running VM every stats_poll_interval (served from a cache by
 * vm.stats), the stale sweep (auto_stop_stale_after), and TAP pool refills
 * when a start takes a pooled TAP. Each VM is visited under its own lock,
 * like any lifecycle operation.
 */
#include "clock.h"
#include "vms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vm/agent_client.h"
#include "vms_internal.h"

void vms_tap_pool_state(struct vms *v, size_t *ret_target, size_t *ret_idle) {
        *ret_target = v->pool.target;
        *ret_idle = tap_pool_idle(&v->pool);
}

/* Wakes the housekeeping thread (TAP pool refill). */
void vms_hk_kick(struct vms *v) {
        pthread_mutex_lock(&v->hk_mu);
        v->hk_kicked = true;
        pthread_cond_broadcast(&v->hk_cond);
        pthread_mutex_unlock(&v->hk_mu);
}

/* ---- stats and the stale sweep ----------------------------------------------- */

struct vm_stats {
        char id[17];
        json_t *last;                        /* the JSON vm stats serves */
        uint64_t guest_total, guest_idle;    /* previous agent sample (jiffies) */
        uint64_t host_cpu_ticks;             /* previous VMM utime+stime */
        int64_t at_ms;                       /* when that sample was taken */
        struct vm_stats *next;
};

static uint64_t allocated(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? (uint64_t) st.st_blocks * 512 : 0;
}

/* utime+stime (clock ticks) and VmRSS (KiB) of pid. */
static void proc_usage(pid_t pid, uint64_t *ret_ticks, uint64_t *ret_rss_kib) {
        _cleanup_free_ char *p = xasprintf("/proc/%d/stat", (int) pid), *q = xasprintf("/proc/%d/status", (int) pid);
        _cleanup_free_ char *text = NULL, *status = NULL;
        size_t len;
        *ret_ticks = *ret_rss_kib = 0;
        if (read_file(p, 1 << 16, &text, &len) == 0) {
                const char *rp = strrchr(text, ')'); /* after "(comm)": state is field 3, utime 14, stime 15 */
                unsigned long long ut = 0, st = 0;
                if (rp && sscanf(rp + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) == 2)
                        *ret_ticks = ut + st;
        }
        if (read_file(q, 1 << 16, &status, &len) == 0) {
                const char *r = strstr(status, "VmRSS:");
                unsigned long long kib = 0;
                if (r && sscanf(r, "VmRSS: %llu", &kib) == 1)
                        *ret_rss_kib = kib;
        }
}

/* One sample of a running VM, with rates against the previous one. Called
 * with the VM's lock held. */
static json_t *collect_stats_locked(struct vms *v, const struct vm_row *r, pid_t pid) {
        struct vm_paths p;
        vm_paths_init(v, r, &p);
        int64_t now = v->deps.mono_ms();
        long hz = sysconf(_SC_CLK_TCK);
        uint64_t ticks, rss;
        proc_usage(pid, &ticks, &rss);
        _cleanup_json_ json_t *g = NULL;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        struct agent_wait w = { .abort_fd = -1 };
        int ar = v->deps.agent_call(v->deps.agent_ud, p.agent, "stats", 3000, &w, &g, &err);

        pthread_mutex_lock(&v->stats_mu);
        struct vm_stats *s;
        for (s = v->stats; s; s = s->next)
                if (strcmp(s->id, r->id) == 0)
                        break;
        if (!s) {
                s = xcalloc(1, sizeof(*s));
                snprintf(s->id, sizeof(s->id), "%s", r->id);
                s->next = v->stats;
                v->stats = s;
        }
        _cleanup_free_ char *at = now_rfc3339();
        json_t *host = json_pack("{s:i, s:I, s:I}", "pid", (int) pid, "rss_kib", (json_int_t) rss, "cpu_time_ms",
                                 (json_int_t) (hz > 0 ? ticks * 1000 / (uint64_t) hz : 0));
        if (s->at_ms && now > s->at_ms && ticks >= s->host_cpu_ticks && hz > 0)
                json_object_set_new(host, "cpu_percent",
                                    json_real(100.0 * (double) (ticks - s->host_cpu_ticks) * 1000.0 / (double) hz /
                                              (double) (now - s->at_ms)));
        json_t *guest = json_object();
        if (ar == 0) {
                json_t *cpu = json_object_get(g, "cpu"), *mem = json_object_get(g, "memory");
                uint64_t total = (uint64_t) json_integer_value(json_object_get(cpu, "total"));
                uint64_t idle = (uint64_t) json_integer_value(json_object_get(cpu, "idle"));
                json_object_set(guest, "memory", mem);
                json_object_set_new(guest, "ncpu", json_integer(json_integer_value(json_object_get(cpu, "ncpu"))));
                if (s->guest_total && total > s->guest_total && idle >= s->guest_idle)
                        json_object_set_new(guest, "cpu_percent",
                                            json_real(100.0 * (1.0 - (double) (idle - s->guest_idle) /
                                                                         (double) (total - s->guest_total))));
                s->guest_total = total;
                s->guest_idle = idle;
        } else
                json_object_set_new(guest, "error", json_string(op_error_message(&err)));
        s->host_cpu_ticks = ticks;
        s->at_ms = now;
        json_decref(s->last);
        s->last = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:I, s:I}}", "id", r->id, "name", r->name, "collected_at",
                            at, "guest", guest, "host", host, "disk", "overlay_bytes", (json_int_t) allocated(p.overlay),
                            "work_bytes", (json_int_t) allocated(p.work), "repo_bytes",
                            (json_int_t) (vm_has_repo_disk(&p) ? allocated(p.repo) : 0));
        json_t *copy = json_deep_copy(s->last);
        pthread_mutex_unlock(&v->stats_mu);
        vm_paths_done(&p);
        return copy;
}

static void stats_drop(struct vms *v, const char *id) {
        pthread_mutex_lock(&v->stats_mu);
        for (struct vm_stats **p = &v->stats; *p; p = &(*p)->next)
                if (strcmp((*p)->id, id) == 0) {
                        struct vm_stats *s = *p;
                        *p = s->next;
                        json_decref(s->last);
                        free(s);
                        break;
                }
        pthread_mutex_unlock(&v->stats_mu);
}

int vm_stats(struct vms *v, const char *ref, json_t **ret, struct op_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        pthread_mutex_lock(&v->stats_mu);
        for (struct vm_stats *s = v->stats; s; s = s->next)
                if (strcmp(s->id, r.id) == 0 && s->last)
                        *ret = json_deep_copy(s->last);
        pthread_mutex_unlock(&v->stats_mu);
        if (!*ret) {
                struct vm_lock *l = vms_lock(v, r.id);
                struct vm_paths p;
                vm_paths_init(v, &r, &p);
                pid_t pid = vms_live_pid(v, &r, &p, NULL);
                vm_paths_done(&p);
                if (pid > 0)
                        *ret = collect_stats_locked(v, &r, pid);
                else
                        rc = op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", r.name, r.state);
                vms_unlock(v, l);
        }
        vm_row_done(&r);
        return rc;
}

static void poll_stats(struct vms *v) {
        struct vm_row *rows;
        size_t n;
        if (store_vm_list(v->deps.store, &rows, &n) < 0)
                return;
        for (size_t i = 0; i < n && !v->stopping; i++) {
                if (strcmp(rows[i].state, "running") != 0) {
                        stats_drop(v, rows[i].id);
                        continue;
                }
                struct vm_lock *l = vms_lock(v, rows[i].id);
                struct vm_row cur;
                if (store_vm_get(v->deps.store, rows[i].id, &cur) == 0) {
                        struct vm_paths p;
                        vm_paths_init(v, &cur, &p);
                        pid_t pid = strcmp(cur.state, "running") == 0 ? vms_live_pid(v, &cur, &p, NULL) : 0;
                        vm_paths_done(&p);
                        if (pid > 0)
                                json_decref(collect_stats_locked(v, &cur, pid));
                        vm_row_done(&cur);
                }
                vms_unlock(v, l);
        }
        vm_rows_free(rows, n);
}

/* Stops running VMs idle (no SSH/exec/RPC activity, no start) for longer
 * than auto_stop_stale_after. */
static void sweep_stale(struct vms *v) {
        uint64_t limit = config_live_get(v->deps.config)->auto_stop_stale_after_ms;
        struct vm_row *rows;
        size_t n;
        if (!limit || store_vm_list(v->deps.store, &rows, &n) < 0)
                return;
        for (size_t i = 0; i < n && !v->stopping; i++) {
                if (strcmp(rows[i].state, "running") != 0)
                        continue;
                struct vm_lock *l = vms_lock(v, rows[i].id);
                struct vm_row cur;
                if (store_vm_get(v->deps.store, rows[i].id, &cur) == 0) {
                        int64_t touched = rfc3339_parse_ms(cur.last_touched_at), updated = rfc3339_parse_ms(cur.updated_at);
                        int64_t last = touched > updated ? touched : updated, idle = v->deps.wall_ms() - last;
                        if (strcmp(cur.state, "running") == 0 && last > 0 && idle > (int64_t) limit) {
                                _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
                                log_info("vm %s: idle for %lld s (auto_stop_stale_after is %llu s): stopping it", cur.name,
                                         (long long) (idle / 1000), (unsigned long long) (limit / 1000));
                                if (vms_stop_locked(v, &cur, true, &e) < 0)
                                        log_warn("vm %s: auto-stop failed: %s", cur.name, op_error_message(&e));
                                else
                                        stats_drop(v, cur.id);
                        }
                        vm_row_done(&cur);
                }
                vms_unlock(v, l);
        }
        vm_rows_free(rows, n);
}

static int64_t sweep_period(int64_t limit) {
        return limit ? (limit / 3 < 1000 ? 1000 : limit / 3 > 60000 ? 60000 : limit / 3) : 0;
}

static void *hk_main(void *arg) {
        struct vms *v = arg;
        const struct config *c = config_live_get(v->deps.config);
        int64_t stats_every = (int64_t) c->stats_poll_interval_ms;
        int64_t limit = (int64_t) c->auto_stop_stale_after_ms;
        int64_t sweep_every = sweep_period(limit);
        int64_t next_stats = v->deps.mono_ms() + stats_every, next_sweep = v->deps.mono_ms() + sweep_every;
        int64_t next_refill_retry = 0;
        log_set_op_id("housekeeping");
        pthread_mutex_lock(&v->hk_mu);
        v->hk_kicked = v->pool.target > 0;
        while (!v->stopping) {
                /* a reload may have changed the intervals (vms_config_changed wakes us) */
                c = config_live_get(v->deps.config);
                if ((int64_t) c->stats_poll_interval_ms != stats_every ||
                    (int64_t) c->auto_stop_stale_after_ms != limit) {
                        stats_every = (int64_t) c->stats_poll_interval_ms;
                        limit = (int64_t) c->auto_stop_stale_after_ms;
                        sweep_every = sweep_period(limit);
                        next_stats = v->deps.mono_ms() + stats_every;
                        next_sweep = v->deps.mono_ms() + sweep_every;
                        log_info("housekeeping: stats every %lld ms, idle stop %s", (long long) stats_every,
                                 limit ? "on" : "off");
                }
                if (v->hk_kicked) {
                        v->hk_kicked = false;
                        pthread_mutex_unlock(&v->hk_mu);
                        if (!tap_pool_refill(&v->pool, vms_tap_in_use, v))
                                next_refill_retry = v->deps.mono_ms() + 5000;
                        pthread_mutex_lock(&v->hk_mu);
                        continue;
                }
                int64_t now = v->deps.mono_ms();
                if (next_refill_retry && now >= next_refill_retry) {
                        next_refill_retry = 0;
                        v->hk_kicked = true;
                        continue;
                }
                int64_t wake = next_stats;
                if (next_refill_retry && next_refill_retry < wake)
                        wake = next_refill_retry;
                if (sweep_every && next_sweep < wake)
                        wake = next_sweep;
                if (wake > now) {
                        struct timespec ts = mono_deadline(wake - now);
                        pthread_cond_timedwait(&v->hk_cond, &v->hk_mu, &ts);
                        continue;
                }
                pthread_mutex_unlock(&v->hk_mu);
                if (now >= next_stats) {
                        poll_stats(v);
                        vms_tpl_sweep(v, false); /* templates whose image or kernel changed */
                        next_stats = v->deps.mono_ms() + stats_every;
                }
                if (sweep_every && now >= next_sweep) {
                        sweep_stale(v);
                        next_sweep = v->deps.mono_ms() + sweep_every;
                }
                pthread_mutex_lock(&v->hk_mu);
        }
        pthread_mutex_unlock(&v->hk_mu);
        return NULL;
}

void vms_config_changed(struct vms *v) {
        pthread_mutex_lock(&v->hk_mu);
        pthread_cond_broadcast(&v->hk_cond);
        pthread_mutex_unlock(&v->hk_mu);
}

int vms_start_housekeeping(struct vms *v, struct op_error *e) {
        const struct config *c = config_live_get(v->deps.config);
        const struct priv_ops *priv = v->deps.priv;
        tap_pool_seed(&v->pool, vms_tap_in_use, v);
        /* VMs adopted by reconcile resolve through systemd-resolved again */
        if (strcmp(c->dns_listen, "off") != 0 && !v->deps.rootless && priv->link_exists(priv->ud, c->bridge_name)) {
                _cleanup_op_error_ struct op_error de = OP_ERROR_INIT;
                int dr = priv->dns_route(priv->ud, c->dns_listen, &de);
                if (dr < 0)
                        log_warn("routing ~vm to %s on %s with resolvectl: %s", c->dns_listen, c->bridge_name,
                                 op_error_message(&de));
                else
                        v->dns_routed = dr == 0;
        }
        int r = pthread_create(&v->hk_thread, NULL, hk_main, v);
        if (r != 0)
                return op_fail(e, -r, "vm service: cannot start the housekeeping thread");
        v->hk_started = true;
        return 0;
}

void vms_housekeeping_stop(struct vms *v) {
        pthread_mutex_lock(&v->hk_mu);
        v->stopping = true;
        pthread_cond_broadcast(&v->hk_cond);
        pthread_mutex_unlock(&v->hk_mu);
        if (v->hk_started)
                pthread_join(v->hk_thread, NULL);
        v->hk_started = false;
        while (v->stats) {
                struct vm_stats *st = v->stats;
                v->stats = st->next;
                json_decref(st->last);
                free(st);
        }
}
