/* SPDX-License-Identifier: MIT */
/* vm create|list|ps|show|start|stop|restart|kill|delete|set|logs|health|ports|prune|ssh, ssh-config */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "portspec.h"
#include "clock.h"
#include "fsutil.h"
#include "gitrepo.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "rpc_methods.h"
#include "strbuf.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s && *s ? s : "-";
}

static int64_t num(json_t *o, const char *k) {
        return (int64_t) json_integer_value(json_object_get(o, k));
}

/* "8G", "512M", "1.5G" */
static const char *short_size(uint64_t b, char *buf, size_t n) {
        if (b >= (1ULL << 30) && b % (1ULL << 30) == 0)
                snprintf(buf, n, "%lluG", (unsigned long long) (b >> 30));
        else if (b >= (1ULL << 30))
                snprintf(buf, n, "%.1fG", (double) b / (1ULL << 30));
        else
                snprintf(buf, n, "%lluM", (unsigned long long) (b >> 20));
        return buf;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
        (void) sig;
        interrupted = 1;
}

static void sleep_ms(int ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* --vcpu/--memory/--disk-size/--system-overlay-size/--nat/--no-nat/--isolate/--no-isolate into params. */
int cli_spec_params(struct cli_args *a, json_t *params) {
        const char *v;
        int64_t n;
        uint64_t bytes;
        if ((v = cli_flag(a, "vcpu"))) {
                if (parse_int64(v, &n) < 0)
                        return cli_usage_error(a->cmd, "--vcpu: '%s' is not a number", v);
                json_object_set_new(params, "vcpu", json_integer(n));
        }
        if ((v = cli_flag(a, "memory"))) {
                if (parse_int64(v, &n) == 0 && n <= 0)
                        json_object_set_new(params, "memory_mib", json_integer(n)); /* the daemon says why */
                else if (parse_size(v, &bytes) < 0)
                        return cli_usage_error(a->cmd, "--memory: '%s' is not a size (e.g. 2048, 2G, 512MiB)", v);
                else
                        json_object_set_new(params, "memory_mib", json_integer((json_int_t) (bytes >> 20)));
        }
        const char *sizes[][2] = { { "disk-size", "disk_size_bytes" },
                                   { "system-overlay-size", "system_overlay_size_bytes" } };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                if (!(v = cli_flag(a, sizes[i][0])))
                        continue;
                if (parse_size(v, &bytes) < 0 || bytes == 0)
                        return cli_usage_error(a->cmd, "--%s: '%s' is not a size (e.g. 8G, 512MiB)", sizes[i][0], v);
                json_object_set_new(params, sizes[i][1], json_integer((json_int_t) bytes));
        }
        if (cli_has(a, "nat") && cli_has(a, "no-nat"))
                return cli_usage_error(a->cmd, "--nat and --no-nat exclude each other");
        if (cli_has(a, "nat"))
                json_object_set_new(params, "nat", json_true());
        if (cli_has(a, "no-nat"))
                json_object_set_new(params, "nat", json_false());
        if (cli_has(a, "isolate") && cli_has(a, "no-isolate"))
                return cli_usage_error(a->cmd, "--isolate and --no-isolate exclude each other");
        if (cli_has(a, "isolate") || cli_has(a, "no-isolate"))
                json_object_set_new(params, "isolate", json_boolean(cli_has(a, "isolate")));
        if (cli_has(a, "cold"))
                json_object_set_new(params, "cold", json_true());
        if ((v = cli_flag(a, "net"))) {
                if (strcmp(v, "bridge") != 0 && strcmp(v, "user") != 0)
                        return cli_usage_error(a->cmd, "--net: '%s' is not a network mode (bridge or user)", v);
                json_object_set_new(params, "net", json_string(v));
        }
        if ((v = cli_flag(a, "vmm"))) {
                if (strcmp(v, "qemu") != 0 && strcmp(v, "firecracker") != 0)
                        return cli_usage_error(a->cmd, "--vmm: '%s' is not a VMM (qemu or firecracker)", v);
                json_object_set_new(params, "vmm", json_string(v));
        }
        const char **pub;
        size_t np = cli_flag_all(a, "publish", &pub);
        json_t *arr = np ? json_array() : NULL;
        for (size_t i = 0; i < np; i++) {
                struct port_spec s;
                const char *why;
                if (port_spec_parse(pub[i], &s, &why) < 0) {
                        int r = cli_usage_error(a->cmd, "--publish '%s': %s (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])",
                                                pub[i], why);
                        json_decref(arr);
                        free(pub);
                        return r;
                }
                json_array_append_new(arr, json_string(pub[i]));
        }
        free(pub);
        if (arr)
                json_object_set_new(params, "publish", arr);
        return 0;
}

/* ---- create ------------------------------------------------------------- */

/* Finished stages as lines with their times (on out); the running one live
 * on a TTY. --quiet: neither. */
static void show_stages(struct cli_ctx *ctx, FILE *out, json_t *stages, bool all_done, size_t *printed) {
        if (ctx->progress.mode == CLI_PROGRESS_OFF)
                return;
        for (; *printed < json_array_size(stages); (*printed)++) {
                json_t *s = json_array_get(stages, *printed);
                if (!json_is_true(json_object_get(s, "done")) && !all_done)
                        break;
                cli_progress_end(ctx, false); /* the live line gives way to the finished one */
                fprintf(out, "  %-16s %6.2fs  %s\n", str(s, "name"), (double) num(s, "elapsed_ms") / 1000.0,
                        json_object_get(s, "detail") ? str(s, "detail") : "");
        }
        fflush(out);
        json_t *cur = json_array_get(stages, *printed);
        if (cur && !all_done)
                cli_progress_live(ctx, str(cur, "name"), json_object_get(cur, "detail") ? str(cur, "detail") : "",
                                  num(cur, "elapsed_ms"));
}

/* Sleeps ms, redrawing the live line meanwhile. */
static void sleep_ticking(struct cli_ctx *ctx, int ms) {
        for (int left = ms; left > 0; left -= CLI_PROGRESS_TICK_MS) {
                sleep_ms(left < CLI_PROGRESS_TICK_MS ? left : CLI_PROGRESS_TICK_MS);
                cli_progress_tick(ctx);
        }
}

int cli_vm_create(struct cli_ctx *ctx, json_t *params, bool quiet, json_t **ret_vm) {
        _cleanup_json_ json_t *begin = NULL;
        char sz[32];
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_CREATE_BEGIN, params, &begin);
        if (r)
                return r;
        FILE *out = ctx->json || quiet ? stderr : stdout;
        bool silent = ctx->progress.mode == CLI_PROGRESS_OFF; /* --quiet: the result line on stdout only */
        if (!silent) {
                fprintf(out, "spec: %lld vcpu \xc2\xb7 %lld MiB \xc2\xb7 %s disk\n", (long long) num(begin, "vcpu"),
                        (long long) num(begin, "memory_mib"),
                        short_size((uint64_t) num(begin, "disk_size_bytes"), sz, sizeof(sz)));
                fprintf(out, "creating vm %s (%s) from image %s\n", str(begin, "name"), str(begin, "id"),
                        str(begin, "image"));
                fflush(out);
        }

        struct sigaction sa = { .sa_handler = on_sigint }, old_int, old_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        interrupted = 0;
        bool cancel_sent = false;
        size_t printed = 0;
        int rc = -EIO;
        _cleanup_json_ json_t *q = json_pack("{s:s}", "op_id", str(begin, "op_id"));
        for (;;) {
                _cleanup_json_ json_t *st = NULL;
                if (interrupted && !cancel_sent) {
                        _cleanup_json_ json_t *cr = NULL;
                        cli_progress_clear(ctx);
                        fprintf(stderr, "cancelling: undoing what was done so far...\n");
                        cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_CREATE_CANCEL, q, &cr);
                        cancel_sent = true;
                }
                if ((rc = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_CREATE_STATUS, q, &st)) < 0)
                        break;
                bool done = json_is_true(json_object_get(st, "done"));
                show_stages(ctx, out, json_object_get(st, "stages"), done, &printed);
                if (!done) {
                        sleep_ticking(ctx, 150);
                        continue;
                }
                const char *state = str(st, "state");
                if (strcmp(state, "done") == 0) {
                        json_t *vm = json_object_get(st, "vm");
                        _cleanup_free_ char *at = cli_vm_address(vm);
                        if (!silent || out == stdout)
                                fprintf(out, "vm %s is %s at %s (%.1fs); connect with: banger vm ssh %s\n",
                                        str(vm, "name"), str(vm, "state"), at,
                                        (double) num(st, "elapsed_ms") / 1000.0, str(vm, "name"));
                        if (ret_vm)
                                *ret_vm = json_incref(vm);
                        rc = 0;
                } else if (strcmp(state, "cancelled") == 0) {
                        cli_error(ctx, NULL, "vm create cancelled; nothing was left behind");
                        rc = 130;
                } else
                        rc = cli_error(ctx, NULL, "%s", str(st, "error"));
                break;
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return rc;
}

int cmd_vm_create(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *params = json_object(), *vm = NULL;
        const char *v;
        if ((v = cli_flag(a, "name")))
                json_object_set_new(params, "name", json_string(v));
        if ((v = cli_flag(a, "image")))
                json_object_set_new(params, "image", json_string(v));
        if (cli_has(a, "no-start"))
                json_object_set_new(params, "no_start", json_true());
        if ((v = cli_flag(a, "from-snapshot")))
                json_object_set_new(params, "from_snapshot", json_string(v));
        int r = cli_spec_params(a, params);
        if (r)
                return r;
        r = cli_vm_create(ctx, params, false, &vm);
        if (r == 0 && ctx->json)
                cli_print_json(vm);
        return r;
}

/* ---- list / show ----------------------------------------------------------- */

static int list(struct cli_ctx *ctx, struct cli_args *a, bool running_only) {
        _cleanup_json_ json_t *res = NULL;
        size_t i;
        json_t *vm;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_LIST, NULL, &res);
        if (r)
                return r;
        json_t *vms = json_object_get(res, "vms"), *shown = json_array();
        json_array_foreach(vms, i, vm)
                if (!running_only || strcmp(str(vm, "state"), "running") == 0)
                        json_array_append(shown, vm);
        if (ctx->json) {
                cli_print_json(shown);
        } else if (cli_has(a, "quiet")) {
                json_array_foreach(shown, i, vm)
                        printf("%s\n", str(vm, "id"));
        } else {
                printf("%-8s  %-20s  %-8s  %-22s  %-6s  %-15s  %-23s  %4s  %9s  %5s  %-20s  %s\n", "ID", "NAME", "STATE",
                       "IMAGE", "NET", "IP", "DNS", "VCPU", "MEM", "DISK", "CREATED", "WORKSPACE");
                json_array_foreach(shown, i, vm) {
                        char sz[32], mem[32];
                        snprintf(mem, sizeof(mem), "%lld MiB", (long long) num(vm, "memory_mib"));
                        printf("%-8.8s  %-20s  %-8s  %-22s  %-6s  %-15s  %-23s  %4lld  %9s  %5s  %-20s  %s\n", str(vm, "id"),
                               str(vm, "name"), str(vm, "state"), str(vm, "image"), str(vm, "net"), str(vm, "ip"),
                               str(vm, "dns_name"),
                               (long long) num(vm, "vcpu"), mem,
                               short_size((uint64_t) num(vm, "disk_size_bytes"), sz, sizeof(sz)), str(vm, "created_at"),
                               str(vm, "workspace_path"));
                }
        }
        json_decref(shown);
        return 0;
}

int cmd_vm_list(struct cli_ctx *ctx, struct cli_args *a) {
        return list(ctx, a, false);
}

int cmd_vm_ps(struct cli_ctx *ctx, struct cli_args *a) {
        return list(ctx, a, !cli_has(a, "all"));
}

/* A forward's host side: "127.0.0.1:8080", "[::1]:8080". */
static char *forward_host(json_t *f) {
        const char *ip = str(f, "host_ip");
        return xasprintf(strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip, (long long) num(f, "host_port"));
}

int cmd_vm_show(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        char sz[32], sz2[32];
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(res);
                return 0;
        }
        printf("name:         %s\nid:           %s\nstate:        %s\n", str(res, "name"), str(res, "id"),
               str(res, "state"));
        if (json_is_string(json_object_get(res, "last_error")))
                printf("last error:   %s\n", str(res, "last_error"));
        printf("image:        %s\nip:           %s\ndns name:     %s\nmac:          %s\nworkspace:    %s\n",
               str(res, "image"), str(res, "ip"), str(res, "dns_name"), str(res, "mac"), str(res, "workspace_path"));
        printf("spec:         %lld vcpu, %lld MiB, %s work disk, %s system overlay, nat %s, isolate %s\n",
               (long long) num(res, "vcpu"), (long long) num(res, "memory_mib"),
               short_size((uint64_t) num(res, "disk_size_bytes"), sz, sizeof(sz)),
               short_size((uint64_t) num(res, "system_overlay_size_bytes"), sz2, sizeof(sz2)),
               json_is_true(json_object_get(res, "nat")) ? "on" : "off",
               json_is_true(json_object_get(res, "isolate")) ? "on" : "off");
        bool user = strcmp(str(res, "net"), "user") == 0;
        if (user)
                printf("network:      user-mode (no bridge; the guest is %s, the host %s in it)\n", "10.0.2.15",
                       "host.banger.internal");
        else
                printf("network:      bridge\n");
        if (json_object_get(res, "pid") && user)
                printf("vmm pid:      %lld (ssh on 127.0.0.1:%lld)\n", (long long) num(res, "pid"),
                       (long long) num(json_object_get(res, "ssh"), "port"));
        else if (json_object_get(res, "pid"))
                printf("vmm pid:      %lld (tap %s)\n", (long long) num(res, "pid"), str(res, "tap"));
        printf("created at:   %s\nlast touched: %s\nvm dir:       %s\nconsole log:  %s\n", str(res, "created_at"),
               str(res, "last_touched_at"), str(res, "vm_dir"), str(res, "console_log"));
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(res, "forwards"), i, f) {
                _cleanup_free_ char *host = forward_host(f);
                printf("%s %s %s -> guest port %lld (%s)\n", i == 0 ? "forwards:    " : "             ", str(f, "proto"),
                       host, (long long) num(f, "guest_port"), json_is_true(json_object_get(f, "open")) ? "open" : "closed");
        }
        return 0;
}

/* ---- fan-out lifecycle ------------------------------------------------------ */

struct fan {
        struct cli_ctx ctx; /* capture: its failure is kept, reported in order */
        const char *ref;
        const char *method;
        json_t *extra;
        json_t *result; /* owned */
        int rc;
        int dup_of; /* index of the same ref given earlier, or -1 */
};

static void *fan_main(void *arg) {
        struct fan *f = arg;
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", f->ref);
        if (f->extra)
                json_object_update(params, f->extra);
        f->rc = cli_call(&f->ctx, CLI_NO_AUTOSTART, f->method, params, &f->result);
        cli_disconnect(&f->ctx);
        return NULL;
}

/* {"ref", "ok": true, ...result} or {"ref", "ok": false, "error": {code, message[, op_id]}} */
static json_t *fan_entry(const struct fan *f) {
        json_t *e = json_pack("{s:s, s:b}", "ref", f->ref, "ok", f->rc == 0);
        if (f->rc == 0) {
                json_t *v;
                const char *k;
                json_object_foreach(f->result, k, v)
                        if (strcmp(k, "ref") != 0 && strcmp(k, "ok") != 0)
                                json_object_set(e, k, v);
                return e;
        }
        json_t *err = json_pack("{s:s, s:s}", "code", f->ctx.err_code ? f->ctx.err_code : "unavailable", "message",
                                f->ctx.err_message ? f->ctx.err_message : "failed");
        if (f->ctx.err_op_id)
                json_object_set_new(err, "op_id", json_string(f->ctx.err_op_id));
        json_object_set_new(e, "error", err);
        return e;
}

/* One ref's outcome, on stdout (success) or stderr (failure), flushed so
 * the two streams keep the order the refs were given. */
static void fan_report(struct cli_ctx *ctx, struct fan *f, const char *verb) {
        if (f->rc == 0) {
                if (!ctx->json)
                        printf("%s %s\n", verb, str(f->result, "name"));
                fflush(stdout);
                return;
        }
        fflush(stdout);
        cli_error(ctx, f->ctx.err_op_id, "%s", f->ctx.err_line ? f->ctx.err_line : "failed");
        fflush(stderr);
}

static void fan_start(struct fan *f, pthread_t *th, bool *started) {
        *started = pthread_create(th, NULL, fan_main, f) == 0;
        if (!*started)
                f->rc = cli_error(&f->ctx, NULL, "cannot start a thread for %s", f->ref);
}

/* Runs `method` for every distinct ref concurrently; reports each in the
 * order given (a repeated ref once, where it first appears), with --json
 * one array entry per distinct ref. Returns 0 when every one succeeded. */
static int fan_out(struct cli_ctx *ctx, struct cli_args *a, const char *method, json_t *extra, const char *verb) {
        _cleanup_json_ json_t *ping = NULL;
        int n = a->npos, rc = 0;

        /* one auto-start (and version check) before the fan-out */
        if ((rc = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_PING, NULL, &ping)) < 0)
                return rc;
        struct fan *fans = xcalloc((size_t) n, sizeof(*fans));
        pthread_t *th = xcalloc((size_t) n, sizeof(*th));
        bool *started = xcalloc((size_t) n, sizeof(bool));
        for (int i = 0; i < n; i++) {
                fans[i] = (struct fan) { .ref = a->pos[i], .method = method, .extra = extra, .dup_of = -1 };
                for (int j = 0; j < i && fans[i].dup_of < 0; j++)
                        if (strcmp(a->pos[i], a->pos[j]) == 0)
                                fans[i].dup_of = j;
                if (fans[i].dup_of >= 0)
                        continue;
                fans[i].ctx = (struct cli_ctx) { .json = ctx->json, .color_err = ctx->color_err, .fd = -1, .next_id = 1,
                                                 .socket_override = ctx->socket_override, .layout = ctx->layout,
                                                 .version_checked = true, .no_progress = n > 1, .capture = true,
                                                 .progress = { .mode = ctx->progress.mode } };
                fan_start(&fans[i], &th[i], &started[i]);
        }
        json_t *all = json_array();
        for (int i = 0; i < n; i++) {
                struct fan *f = &fans[i];
                if (f->dup_of >= 0)
                        continue;
                if (started[i])
                        pthread_join(th[i], NULL);
                if (f->rc)
                        rc = rc ? rc : f->rc;
                fan_report(ctx, f, verb);
                if (ctx->json)
                        json_array_append_new(all, fan_entry(f));
        }
        if (ctx->json)
                cli_print_json(all);
        json_decref(all);
        for (int i = 0; i < n; i++) {
                json_decref(fans[i].result);
                cli_error_clear(&fans[i].ctx);
        }
        free(fans);
        free(th);
        free(started);
        return rc;
}

int cmd_vm_start(struct cli_ctx *ctx, struct cli_args *a) {
        return fan_out(ctx, a, RPC_METHOD_VM_START, NULL, "started");
}
int cmd_vm_stop(struct cli_ctx *ctx, struct cli_args *a) {
        return fan_out(ctx, a, RPC_METHOD_VM_STOP, NULL, "stopped");
}
int cmd_vm_restart(struct cli_ctx *ctx, struct cli_args *a) {
        return fan_out(ctx, a, RPC_METHOD_VM_RESTART, NULL, "restarted");
}
int cmd_vm_delete(struct cli_ctx *ctx, struct cli_args *a) {
        return fan_out(ctx, a, RPC_METHOD_VM_DELETE, NULL, "deleted");
}

const struct cli_signal cli_signals[] = {
        { "KILL", SIGKILL }, { "TERM", SIGTERM }, { "INT", SIGINT },   { "HUP", SIGHUP },
        { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { NULL, 0 },
};

static int parse_signal(const char *s) {
        int64_t n;
        if (parse_int_range(s, 1, 64, &n) == 0)
                return (int) n;
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (const struct cli_signal *g = cli_signals; g->name; g++)
                if (strcasecmp(s, g->name) == 0)
                        return g->sig;
        return -1;
}

int cmd_vm_kill(struct cli_ctx *ctx, struct cli_args *a) {
        const char *s = cli_flag(a, "signal");
        int sig = s ? parse_signal(s) : SIGKILL;
        if (sig < 0)
                return cli_usage_error(a->cmd, "--signal: unknown signal '%s' (e.g. KILL, TERM, 9)", s);
        _cleanup_json_ json_t *extra = json_pack("{s:i}", "signal", sig);
        return fan_out(ctx, a, RPC_METHOD_VM_KILL, extra, "killed");
}

int cmd_vm_set(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *extra = json_object();
        int r = cli_spec_params(a, extra);
        if (r)
                return r;
        if (json_object_get(extra, "system_overlay_size_bytes"))
                return cli_usage_error(a->cmd, "the system overlay size cannot be changed after create");
        if (json_object_size(extra) == 0)
                return cli_usage_error(a->cmd,
                                       "nothing to set (--vcpu, --memory, --disk-size, --nat/--no-nat, --isolate/--no-isolate)");
        return fan_out(ctx, a, RPC_METHOD_VM_SET, extra, "updated");
}

/* ---- prune ------------------------------------------------------------------ */

int cmd_vm_prune(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        size_t i;
        json_t *vm;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_LIST, NULL, &res);
        if (r)
                return r;
        _cleanup_strv_free_ char **refs = NULL;
        size_t n = 0, total = json_array_size(json_object_get(res, "vms"));
        json_array_foreach(json_object_get(res, "vms"), i, vm) {
                const char *st = str(vm, "state");
                if (strcmp(st, "running") == 0 || strcmp(st, "starting") == 0 || strcmp(st, "stopping") == 0)
                        continue;
                refs = xrealloc(refs, (n + 2) * sizeof(char *));
                refs[n++] = xstrdup(str(vm, "id"));
                refs[n] = NULL;
                if (!ctx->json)
                        printf("  %-8.8s  %-20s  %s\n", str(vm, "id"), str(vm, "name"), st);
        }
        if (n == 0) {
                if (ctx->json)
                        cli_print_json(json_array());
                else if (total == 0)
                        printf("no VMs\n");
                else
                        printf("nothing to prune: every VM is running\n");
                return 0;
        }
        if (!cli_has(a, "force")) {
                char line[16] = "";
                if (!isatty(STDIN_FILENO))
                        return cli_error(ctx, NULL, "vm prune needs confirmation: run it on a terminal or pass -f");
                printf("delete these %zu VM(s)? [y/N] ", n);
                fflush(stdout);
                if (!fgets(line, sizeof(line), stdin) || (line[0] != 'y' && line[0] != 'Y')) {
                        printf("nothing deleted\n");
                        return CLI_EXIT_FAILURE;
                }
        }
        struct cli_args da = { .cmd = a->cmd, .pos = refs, .npos = (int) n, .dashdash = -1 };
        return fan_out(ctx, &da, RPC_METHOD_VM_DELETE, NULL, "deleted");
}

/* ---- logs, health, ports -------------------------------------------------- */

/* Prints path (and, following, what is appended to it until Ctrl-C). */
static int print_log(const char *path, bool follow) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        char buf[65536];
        ssize_t k;
        struct sigaction sa = { .sa_handler = on_sigint };
        sigemptyset(&sa.sa_mask);
        if (follow) {
                interrupted = 0;
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
        }
        for (;;) {
                while ((k = read(fd, buf, sizeof(buf))) > 0)
                        if (fwrite(buf, 1, (size_t) k, stdout) != (size_t) k)
                                return -EPIPE; /* stdout went away */
                fflush(stdout);
                if (!follow || interrupted)
                        break;
                sleep_ms(200);
        }
        return 0;
}

int cmd_vm_logs(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, &res);
        if (r)
                return r;
        const char *console = str(res, "console_log"), *slash = strrchr(console, '/');
        bool follow = cli_has(a, "follow");
        if (!cli_has(a, "vmm")) {
                r = print_log(console, follow);
                if (r == -EPIPE)
                        return CLI_EXIT_FAILURE;
                return r < 0 ? cli_error(ctx, NULL, "vm %s has no console log yet (%s)", str(res, "name"), console) : 0;
        }
        /* the VMM's output, then (Firecracker) its own log: the last one followed */
        int dir_len = slash ? (int) (slash - console) : 0;
        _cleanup_free_ char *out = xasprintf("%.*s/vmm.log", dir_len, console);
        _cleanup_free_ char *fc = xasprintf("%.*s/firecracker.log", dir_len, console);
        bool has_fc = strcmp(str(res, "vmm"), "firecracker") == 0 && access(fc, F_OK) == 0;
        r = print_log(out, follow && !has_fc);
        if (r == 0 && has_fc)
                r = print_log(fc, follow);
        if (r == -EPIPE)
                return CLI_EXIT_FAILURE;
        return r < 0 ? cli_error(ctx, NULL, "vm %s has no VMM log yet (%s)", str(res, "name"), out) : 0;
}

int cmd_vm_health(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_HEALTH, params, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(res);
                return 0;
        }
        json_t *load = json_object_get(res, "load");
        printf("vm %s: agent v%s (protocol %lld), up %.1fs, load %.2f %.2f %.2f, sshd %s\n", a->pos[0],
               str(res, "version"), (long long) num(res, "protocol"),
               json_number_value(json_object_get(res, "uptime_s")), json_number_value(json_array_get(load, 0)),
               json_number_value(json_array_get(load, 1)), json_number_value(json_array_get(load, 2)),
               json_is_true(json_object_get(res, "sshd_listening")) ? "listening" : "NOT listening");
        return 0;
}

/* Always JSON (like the reference). */
int cmd_vm_stats(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_STATS, params, &res);
        if (r == 0)
                cli_print_json(res);
        return r;
}

static bool http_like(int64_t port) {
        static const int ports[] = { 80, 443, 3000, 4000, 5000, 5173, 8000, 8080, 8081, 8443, 8888, 9000 };
        for (size_t i = 0; i < ELEMENTSOF(ports); i++)
                if (port == ports[i])
                        return true;
        return false;
}

int cmd_vm_ports(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *show = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        size_t i;
        json_t *p;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, &show);
        if (r)
                return r;
        r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_PORTS, params, &res);
        if (r)
                return r;
        const char *dns = str(show, "dns_name");
        /* user-mode networking: no host address reaches the guest; only forwards do (and its sshd's port) */
        bool user = strcmp(str(show, "net"), "user") == 0;
        json_t *ports = json_object_get(res, "ports"), *f;
        json_array_foreach(ports, i, p) {
                _cleanup_free_ char *ep = xasprintf("%s:%lld", dns, (long long) num(p, "port"));
                bool tcp = strcmp(str(p, "proto"), "tcp") == 0 || strcmp(str(p, "proto"), "tcp6") == 0;
                json_object_set_new(p, "endpoint", json_string(ep));
                /* the host ports relayed here (vm forward, --publish) */
                json_t *from = json_array();
                size_t k;
                json_array_foreach(json_object_get(res, "forwards"), k, f)
                        if (num(f, "guest_port") == num(p, "port") &&
                            strncmp(str(f, "proto"), str(p, "proto"), 3) == 0) { /* tcp6 takes IPv4 too */
                                _cleanup_free_ char *h = forward_host(f);
                                json_array_append_new(from, json_string(h));
                        }
                if (user && tcp && num(p, "port") == 22 && num(json_object_get(show, "ssh"), "port") != 22)
                        json_array_append_new(from, json_sprintf("127.0.0.1:%lld", (long long) num(json_object_get(show, "ssh"), "port")));
                const char *at = !user ? ep : json_array_size(from) ? json_string_value(json_array_get(from, 0)) : NULL;
                if (strcmp(str(p, "proto"), "tcp") == 0 && http_like(num(p, "port")) && at) {
                        _cleanup_free_ char *url = xasprintf("%s://%s/", num(p, "port") == 443 || num(p, "port") == 8443
                                                                             ? "https" : "http", at);
                        json_object_set_new(p, "url", json_string(url));
                }
                json_object_set_new(p, "forwarded_from", from);
        }
        if (ctx->json) {
                cli_print_json(ports);
                return 0;
        }
        printf("%-5s  %-28s  %-8s  %-16s  %-24s  %s\n", "PROTO", "ENDPOINT", "PID", "PROCESS", "URL", "HOST");
        json_array_foreach(ports, i, p) {
                _cleanup_strbuf_ struct strbuf from = STRBUF_INIT;
                size_t k;
                json_array_foreach(json_object_get(p, "forwarded_from"), k, f)
                        strbuf_addf(&from, "%s%s", k ? "," : "", json_string_value(f));
                printf("%-5s  %-28s  %-8lld  %-16s  %-24s  %s\n", str(p, "proto"), str(p, "endpoint"),
                       (long long) num(p, "pid"), str(p, "process"), json_object_get(p, "url") ? str(p, "url") : "",
                       from.len ? from.buf : "");
        }
        return 0;
}

/* ---- ssh ---------------------------------------------------------------- */

/* Where a VM is reached: its bridge address, or (user-mode networking) the
 * host port of its sshd. */
char *cli_vm_address(json_t *vm) {
        json_t *ssh = json_object_get(vm, "ssh");
        if (strcmp(str(vm, "net"), "user") == 0 && json_is_integer(json_object_get(ssh, "port")))
                return xasprintf("127.0.0.1:%lld (ssh; user-mode networking)", (long long) num(ssh, "port"));
        if (strcmp(str(vm, "net"), "user") == 0)
                return xstrdup("user-mode networking (not running)");
        return xstrdup(str(vm, "ip"));
}

/* argv for OpenSSH to a VM as root with banger's key and pinned known_hosts. */
char **cli_ssh_argv(json_t *vm, char *const *extra, int n_extra, bool tty) {
        json_t *ssh = json_object_get(vm, "ssh");
        size_t cap = 32 + (size_t) n_extra, n = 0;
        char **argv = xcalloc(cap, sizeof(char *));
        argv[n++] = xstrdup("ssh");
        argv[n++] = xstrdup("-i");
        argv[n++] = xstrdup(str(ssh, "key"));
        const char *opts[] = { "IdentitiesOnly=yes", "StrictHostKeyChecking=yes", "CheckHostIP=no",
                               "LogLevel=ERROR", "ConnectTimeout=10" };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                argv[n++] = xstrdup("-o");
                argv[n++] = xstrdup(opts[i]);
        }
        argv[n++] = xstrdup("-o");
        argv[n++] = xasprintf("UserKnownHostsFile=%s", str(ssh, "known_hosts"));
        argv[n++] = xstrdup("-o");
        argv[n++] = xasprintf("HostKeyAlias=%s", str(vm, "dns_name"));
        if (tty)
                argv[n++] = xstrdup("-t");
        json_int_t port = json_integer_value(json_object_get(ssh, "port"));
        bool user = strcmp(str(vm, "net"), "user") == 0;
        if (port > 0 && port != 22) { /* user-mode networking: the VMM's port on the host */
                argv[n++] = xstrdup("-p");
                argv[n++] = xasprintf("%lld", (long long) port);
        }
        /* a user-mode VM whose port is unknown is never the host's own sshd */
        argv[n++] = xasprintf("root@%s", user && port <= 0 ? str(vm, "dns_name") : str(ssh, "host"));
        for (int i = 0; i < n_extra; i++)
                argv[n++] = xstrdup(extra[i]);
        argv[n] = NULL;
        return argv;
}

/* Until the VM's sshd listens, at most timeout_ms. agent_optional (vm ssh):
 * ssh needs no agent, so only an agent that answers and says sshd does not
 * listen stops us; one that is gone or busy is not asked twice. */
static int wait_sshd(struct cli_ctx *ctx, const char *vm, int timeout_ms, bool agent_optional) {
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", vm);
        int64_t deadline = mono_ms_now() + timeout_ms;
        for (;;) {
                _cleanup_json_ json_t *h = NULL;
                ctx->silent = agent_optional;
                int r = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_HEALTH, params, &h);
                ctx->silent = false;
                if (r)
                        return agent_optional ? 0 : r;
                if (json_is_true(json_object_get(h, "sshd_listening")))
                        return 0;
                if (mono_ms_now() >= deadline)
                        return cli_error(ctx, NULL,
                                         "sshd is not listening in vm %s (the image may have no sshd; "
                                         "banger vm exec %s -- CMD works without it)", vm, vm);
                poll(NULL, 0, 100);
        }
}

int cli_wait_sshd(struct cli_ctx *ctx, const char *vm, int timeout_ms) {
        return wait_sshd(ctx, vm, timeout_ms, false);
}

int cmd_vm_ssh(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *vm = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]), *t = NULL;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, &vm);
        if (r)
                return r;
        if (strcmp(str(vm, "state"), "running") != 0)
                return cli_error(ctx, NULL, "vm %s is %s (start it with: banger vm start %s)", str(vm, "name"),
                                 str(vm, "state"), str(vm, "name"));
        if (a->dashdash < 0 && a->npos > 1)
                return cli_usage_error(a->cmd, "put ssh arguments after '--'");
        if (strcmp(str(vm, "net"), "user") == 0 && !json_is_integer(json_object_get(json_object_get(vm, "ssh"), "port")))
                return cli_error(ctx, NULL, "vm %s: the host port of its sshd is not known (banger vm restart %s)",
                                 str(vm, "name"), str(vm, "name"));
        if ((r = wait_sshd(ctx, str(vm, "name"), 10000, true)))
                return r;
        cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, params, &t);
        bool interactive = a->npos <= 1;
        _cleanup_strv_free_ char **argv = cli_ssh_argv(vm, a->pos + 1, a->npos - 1, false);
        int code = cli_run_foreground(argv);
        if (code < 0)
                return cli_fail(ctx, code, "cannot run ssh: %s (apt-get install openssh-client)", strerror(-code));
        if (interactive) {
                _cleanup_json_ json_t *now = NULL;
                cli_disconnect(ctx);
                if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_SHOW, params, &now) == 0 &&
                    strcmp(str(now, "state"), "running") == 0)
                        fprintf(stderr, "vm %s is still running (stop with: banger vm stop %s)\n", str(now, "name"),
                                str(now, "name"));
        }
        return code;
}

/* ---- ssh-config ------------------------------------------------------------ */

#define SSH_MARK_BEGIN "# >>> banger ssh-config (managed by banger; remove with: banger ssh-config --uninstall) >>>"
#define SSH_MARK_END "# <<< banger ssh-config <<<"

static char *strip_block(const char *text) {
        struct strbuf sb = STRBUF_INIT;
        const char *p = text;
        bool in = false;
        while (*p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                if (!in && len == strlen(SSH_MARK_BEGIN) && strncmp(p, SSH_MARK_BEGIN, len) == 0)
                        in = true;
                else if (in && len == strlen(SSH_MARK_END) && strncmp(p, SSH_MARK_END, len) == 0)
                        in = false;
                else if (!in) {
                        strbuf_add(&sb, p, len);
                        if (nl)
                                strbuf_addch(&sb, '\n');
                }
                p += len + (nl ? 1 : 0);
        }
        return strbuf_detach(&sb, NULL);
}

int cmd_ssh_config(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *cfg = NULL;
        const char *home = getenv("HOME");
        if (cli_has(a, "install") && cli_has(a, "uninstall"))
                return cli_usage_error(a->cmd, "--install and --uninstall exclude each other");
        if (!home || home[0] != '/')
                return cli_error(ctx, NULL, "HOME is not set to an absolute path");
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_CONFIG_SHOW, NULL, &cfg);
        if (r)
                return r;
        const char *key = json_string_value(
                json_object_get(json_object_get(json_object_get(cfg, "config"), "ssh_key_path"), "value"));
        if (!key)
                return cli_error(ctx, NULL, "the daemon did not report ssh_key_path");
        _cleanup_free_ char *kh = path_join(ctx->layout.ssh_dir, "known_hosts");
        _cleanup_free_ char *file = path_join(ctx->layout.config_dir, "ssh_config");
        _cleanup_free_ char *self = realpath("/proc/self/exe", NULL), *qself = NULL;
        if (!self)
                return cli_error(ctx, NULL, "cannot find this banger binary: %s", strerror(errno));
        if (strpbrk(self, "%\n"))
                return cli_error(ctx, NULL, "the path of this banger binary (%s) cannot go into an ssh config", self);
        qself = shell_quote(self);
        /* The proxy reaches the VM without host DNS for the vm zone; the host
         * key is still checked against the pin, under the name <name>.vm. */
        _cleanup_free_ char *body = xasprintf("# written by banger: ssh to <name>.vm as root with banger's key\n"
                                              "Host *.vm\n"
                                              "    User root\n"
                                              "    IdentityFile %s\n"
                                              "    IdentitiesOnly yes\n"
                                              "    UserKnownHostsFile %s\n"
                                              "    StrictHostKeyChecking yes\n"
                                              "    CheckHostIP no\n"
                                              "    ProxyCommand %s vm proxy %%h %%p\n",
                                              key, kh, qself);
        if (mkdir_p(ctx->layout.config_dir, 0700) < 0 || write_file_atomic(file, body, strlen(body), 0644) < 0)
                return cli_error(ctx, NULL, "cannot write %s: %s", file, strerror(errno));
        _cleanup_free_ char *sshdir = path_join(home, ".ssh"), *user_cfg = path_join(sshdir, "config");
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int rr = read_file(user_cfg, 1u << 22, &text, &len);
        if (rr < 0 && rr != -ENOENT)
                return cli_error(ctx, NULL, "cannot read %s: %s", user_cfg, strerror(-rr));
        _cleanup_free_ char *rest = strip_block(text ? text : "");
        bool installed = text && strstr(text, SSH_MARK_BEGIN);
        if (cli_has(a, "install") || cli_has(a, "uninstall")) {
                struct strbuf sb = STRBUF_INIT;
                /* Include must come before any Host block to apply everywhere: first */
                if (cli_has(a, "install"))
                        strbuf_addf(&sb, "%s\nInclude %s\n%s\n", SSH_MARK_BEGIN, file, SSH_MARK_END);
                strbuf_addstr(&sb, rest);
                struct stat st;
                mode_t mode = stat(user_cfg, &st) == 0 ? (st.st_mode & 07777) : 0600;
                if (mkdir_p(sshdir, 0700) < 0 || write_file_atomic(user_cfg, sb.buf, sb.len, mode) < 0) {
                        strbuf_release(&sb);
                        return cli_error(ctx, NULL, "cannot write %s: %s", user_cfg, strerror(errno));
                }
                strbuf_release(&sb);
                printf("%s %s\n", cli_has(a, "install") ? "included banger's ssh config in" : "removed banger's ssh config from",
                       user_cfg);
                return 0;
        }
        printf("wrote %s\n%s\n", file, installed ? "it is included from ~/.ssh/config"
                                                 : "to use it with plain ssh (ssh <name>.vm), run: banger ssh-config --install");
        return 0;
}
