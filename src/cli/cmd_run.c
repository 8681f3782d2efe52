/* SPDX-License-Identifier: MIT */
/* vm run, vm exec, vm workspace prepare|export */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "gitrepo.h"
#include "ids.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"
#include "strbuf.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s && *s ? s : "-";
}

/* The guest side of a command: `bash -lc` in cwd, never exec'd away (so a
 * command killed by signal N gives 128+N, not a dead shell). */
static char *guest_script(const char *cwd, char *const *cmd, int n) {
        _cleanup_free_ char *joined = shell_join(cmd, n), *qcwd = shell_quote(cwd);
        return xasprintf("cd %s && { %s\n}; exit $?", qcwd, joined);
}

static char *remote_command(const char *cwd, char *const *cmd, int n) {
        _cleanup_free_ char *script = guest_script(cwd, cmd, n), *qscript = shell_quote(script);
        return xasprintf("bash -lc %s", qscript);
}

/* The same `bash -lc` through the agent: no SSH handshake, no cipher. 1
 * when the agent is too old (the caller goes on with ssh). */
static int agent_command(struct cli_ctx *ctx, const char *vm, const char *cwd, char *const *cmd, int n, int *ret_code) {
        _cleanup_free_ char *script = guest_script(cwd, cmd, n);
        char *argv[] = { (char *) "bash", (char *) "-lc", script };
        int r = cli_agent_exec(ctx, vm, argv, 3, NULL, false, NULL, ret_code);
        if (r == -EPROTONOSUPPORT) {
                fprintf(stderr, "note: the guest agent of %s predates commands through the agent; using ssh\n", vm);
                return 1;
        }
        return r;
}

static int show(struct cli_ctx *ctx, const char *ref, json_t **ret) {
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", ref);
        return cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, ret);
}

static void print_dry_run(json_t *res) {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(res, "files"), i, f)
                printf("%s  %10lld  %s%s\n", str(f, "mode"), (long long) json_integer_value(json_object_get(f, "size")),
                       str(f, "path"), json_is_true(json_object_get(f, "untracked")) ? "  (untracked)" : "");
        printf("%zu files, %lld bytes would be shipped from %s\n", json_array_size(json_object_get(res, "files")),
               (long long) json_integer_value(json_object_get(res, "bytes")), str(res, "host_path"));
}

static void skipped_notice(json_t *res) {
        json_int_t n = json_integer_value(json_object_get(res, "skipped_untracked"));
        if (n > 0)
                fprintf(stderr, "note: %lld untracked file(s) not shipped (add --include-untracked to ship them)\n",
                        (long long) n);
}

/* Local dry run: the same file list the daemon would ship, no VM. */
static int local_dry_run(struct cli_ctx *ctx, const char *path, bool untracked) {
        struct git_repo repo;
        struct git_file *files = NULL;
        size_t n = 0, skipped = 0;
        _cleanup_free_ char *err = NULL;
        if (git_repo_inspect(path, &repo, &err) < 0)
                return cli_error(ctx, NULL, "%s", err);
        if (git_repo_files(repo.toplevel, untracked, &files, &n, &skipped, &err) < 0) {
                git_repo_done(&repo);
                return cli_error(ctx, NULL, "%s", err);
        }
        json_t *list = json_array();
        json_int_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
                char mode[8];
                snprintf(mode, sizeof(mode), "%06o", (unsigned) files[i].mode);
                json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:b}", "path", files[i].path, "mode", mode, "size",
                                                      (json_int_t) files[i].size, "untracked", files[i].untracked));
                bytes += (json_int_t) files[i].size;
        }
        _cleanup_json_ json_t *res = json_pack("{s:s, s:o, s:I, s:I}", "host_path", repo.toplevel, "files", list,
                                               "bytes", bytes, "skipped_untracked", (json_int_t) skipped);
        if (ctx->json)
                cli_print_json(res);
        else
                print_dry_run(res);
        skipped_notice(res);
        git_files_free(files, n);
        git_repo_done(&repo);
        return 0;
}

static char *abs_path(const char *p) {
        char buf[PATH_MAX];
        return realpath(p, buf) ? xstrdup(buf) : xstrdup(p);
}

static int prepare(struct cli_ctx *ctx, const char *vm, const char *path, struct cli_args *a, json_t **ret) {
        _cleanup_free_ char *abs = abs_path(path);
        _cleanup_json_ json_t *params = json_pack("{s:s, s:s, s:b}", "vm", vm, "path", abs, "include_untracked",
                                                  cli_has(a, "include-untracked"));
        if (cli_flag(a, "branch"))
                json_object_set_new(params, "branch", json_string(cli_flag(a, "branch")));
        if (cli_flag(a, "from"))
                json_object_set_new(params, "from", json_string(cli_flag(a, "from")));
        return cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_WORKSPACE_PREPARE, params, ret);
}

static int cmd_vm_workspace_prepare(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        if (cli_flag(a, "from") && !cli_flag(a, "branch"))
                return cli_usage_error(a->cmd, "--from needs --branch");
        if (cli_has(a, "dry-run"))
                return local_dry_run(ctx, a->pos[1], cli_has(a, "include-untracked"));
        int r = prepare(ctx, a->pos[0], a->pos[1], a, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else {
                const char *m = str(res, "method");
                printf("shipped %lld files (%lld bytes) from %s to %s:%s at %.12s%s\n",
                       (long long) json_integer_value(json_object_get(res, "files")),
                       (long long) json_integer_value(json_object_get(res, "bytes")), str(res, "host_path"), a->pos[0],
                       str(res, "guest_path"), str(res, "head_commit"),
                       strcmp(m, "disk") == 0    ? " (written into its repo disk)"
                       : strcmp(m, "agent") == 0 ? " (through the agent: /root/repo in use, or no repo disk)"
                       : strcmp(m, "ssh") == 0   ? " (over ssh: the agent is too old for streams)"
                                                 : "");
        }
        skipped_notice(res);
        return 0;
}

static int cmd_vm_workspace_export(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        const char *out = cli_flag(a, "output");
        _cleanup_free_ char *tmp = NULL, *abs = NULL;
        if (out) {
                /* the daemon writes it: make it absolute here */
                if (out[0] == '/')
                        abs = xstrdup(out);
                else {
                        char cwd[PATH_MAX];
                        if (!getcwd(cwd, sizeof(cwd)))
                                return cli_error(ctx, NULL, "getcwd: %s", strerror(errno));
                        abs = path_join(cwd, out);
                }
        } else {
                _cleanup_free_ char *rnd = random_hex(6);
                if (mkdir_p(ctx->layout.runtime_dir, 0700) < 0)
                        return cli_error(ctx, NULL, "cannot create %s", ctx->layout.runtime_dir);
                tmp = xasprintf("%s/export-%s.patch", ctx->layout.runtime_dir, rnd);
        }
        _cleanup_json_ json_t *params = json_pack("{s:s, s:s}", "vm", a->pos[0], "output", abs ? abs : tmp);
        if (cli_flag(a, "base-commit"))
                json_object_set_new(params, "base_commit", json_string(cli_flag(a, "base-commit")));
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_WORKSPACE_EXPORT, params, &res);
        if (r)
                return r;
        if (tmp) {
                _cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC);
                char buf[65536];
                ssize_t k;
                while (fd >= 0 && (k = read(fd, buf, sizeof(buf))) > 0)
                        if (fwrite(buf, 1, (size_t) k, stdout) != (size_t) k)
                                break;
                fflush(stdout);
                unlink(tmp);
        } else if (ctx->json)
                cli_print_json(res);
        else
                printf("wrote %s: %zu changed file(s) since %.12s\n", abs,
                       json_array_size(json_object_get(res, "files")), str(res, "base_commit"));
        return 0;
}

/* `vm workspace prepare VM PATH` / `vm workspace export VM` */
int cmd_vm_workspace(struct cli_ctx *ctx, struct cli_args *a) {
        struct cli_args sub = *a;
        sub.pos = a->pos + 1;
        sub.npos = a->npos - 1;
        if (strcmp(a->pos[0], "prepare") == 0) {
                if (sub.npos != 2)
                        return cli_usage_error(a->cmd, "usage: vm workspace prepare VM PATH");
                if (cli_flag(a, "output") || cli_flag(a, "base-commit"))
                        return cli_usage_error(a->cmd, "--output and --base-commit belong to export");
                return cmd_vm_workspace_prepare(ctx, &sub);
        }
        if (strcmp(a->pos[0], "export") == 0) {
                if (sub.npos != 1)
                        return cli_usage_error(a->cmd, "usage: vm workspace export VM [--base-commit C] [--output F]");
                if (cli_flag(a, "branch") || cli_flag(a, "from") || cli_has(a, "include-untracked") ||
                    cli_has(a, "dry-run"))
                        return cli_usage_error(a->cmd, "--branch, --from, --include-untracked and --dry-run belong to prepare");
                return cmd_vm_workspace_export(ctx, &sub);
        }
        return cli_usage_error(a->cmd, "unknown workspace command '%s' (prepare or export)", a->pos[0]);
}

/* ---- vm exec ---------------------------------------------------------------- */

int cmd_vm_exec(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *vm = NULL, *t = NULL;
        if (a->dashdash < 0 || a->dashdash >= a->npos)
                return cli_usage_error(a->cmd, "the command goes after '--'");
        if (a->dashdash != 1)
                return cli_usage_error(a->cmd, "unexpected argument '%s' before '--'", a->pos[1]);
        int r = show(ctx, a->pos[0], &vm);
        if (r)
                return r;
        if (strcmp(str(vm, "state"), "running") != 0)
                return cli_error(ctx, NULL, "vm %s is %s (start it with: banger vm start %s)", str(vm, "name"),
                                 str(vm, "state"), str(vm, "name"));
        json_t *ws = json_object_get(vm, "workspace");
        const char *cwd = cli_flag(a, "guest-path");
        if (!cwd)
                cwd = json_is_object(ws) ? str(ws, "guest_path") : "/root";
        if (json_is_object(ws) && !cli_flag(a, "guest-path")) {
                /* is the workspace still the host's HEAD? */
                _cleanup_free_ char *head = NULL, *err = NULL;
                if (git_capture(str(ws, "host_path"), (const char *const[]) { "rev-parse", "HEAD", NULL }, &head, &err) ==
                            0 &&
                    strcmp(head, str(ws, "head_commit")) != 0) {
                        if (cli_has(a, "auto-prepare")) {
                                _cleanup_json_ json_t *res = NULL;
                                fprintf(stderr, "host HEAD moved to %.12s: preparing the workspace again\n", head);
                                struct cli_args none = { .cmd = a->cmd, .dashdash = -1 };
                                if ((r = prepare(ctx, a->pos[0], str(ws, "host_path"), &none, &res)))
                                        return r;
                        } else
                                fprintf(stderr,
                                        "warning: the workspace in %s is at %.12s but %s is now at %.12s "
                                        "(--auto-prepare ships it again)\n",
                                        str(vm, "name"), str(ws, "head_commit"), str(ws, "host_path"), head);
                }
        }
        if (!cli_has(a, "ssh")) {
                int code = 0;
                r = agent_command(ctx, str(vm, "name"), cwd, a->pos + 1, a->npos - 1, &code);
                if (r <= 0)
                        return r < 0 ? r : code;
                if ((r = cli_wait_sshd(ctx, str(vm, "name"), 60000)))
                        return r;
        }
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", a->pos[0]);
        cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, params, &t);
        _cleanup_free_ char *remote = remote_command(cwd, a->pos + 1, a->npos - 1);
        _cleanup_strv_free_ char **argv = cli_ssh_argv(vm, (char *[]) { remote }, 1, false);
        cli_disconnect(ctx);
        r = cli_run_foreground(argv);
        return r < 0 ? cli_error(ctx, NULL, "cannot run ssh: %s", strerror(-r)) : r;
}

/* ---- vm run ------------------------------------------------------------------ */

struct timing {
        const char *name;
        int64_t ms;
};

/* One `vm run`, phase by phase. */
struct run {
        struct cli_ctx *ctx;
        struct cli_args *a;
        const char *path; /* the repository to ship, or NULL */
        char *toplevel;   /* owned: its work tree root, or NULL */
        char **cmd;       /* after "--", or NULL */
        int ncmd;
        bool rm, detach, nat;
        bool no_ssh_wait; /* created ready once the agent answers */
        json_t *vm;       /* owned: vm.show of the new VM */
        char *name;       /* owned */
        const char *cwd;  /* where the command runs in the guest */
        struct timing tm[8];
        int ntm;
        int64_t t0;
};

static void timed(struct run *r, const char *name, int64_t since) {
        if (r->ntm < (int) ELEMENTSOF(r->tm))
                r->tm[r->ntm++] = (struct timing) { name, mono_ms_now() - since };
}

/* Every combination is checked before a VM exists. */
static int run_check(struct run *r) {
        struct cli_args *a = r->a;
        if (a->dashdash < 0 && a->npos > 1)
                return cli_usage_error(a->cmd, "unexpected argument '%s' (the command goes after '--')", a->pos[1]);
        if (a->dashdash > 1)
                return cli_usage_error(a->cmd, "unexpected argument '%s' before '--'", a->pos[1]);
        if (a->dashdash >= 0 && r->ncmd == 0)
                return cli_usage_error(a->cmd, "'--' must be followed by a command");
        if (r->detach && r->rm)
                return cli_usage_error(a->cmd, "-d/--detach and --rm exclude each other");
        if (r->detach && r->ncmd > 0)
                return cli_usage_error(a->cmd, "-d/--detach does not run a command (use vm exec later)");
        if (cli_flag(a, "from") && !cli_flag(a, "branch"))
                return cli_usage_error(a->cmd, "--from needs --branch");
        if ((cli_flag(a, "branch") || cli_has(a, "include-untracked")) && !r->path)
                return cli_usage_error(a->cmd, "--branch, --from and --include-untracked need a PATH");
        if (cli_has(a, "dry-run") && !r->path)
                return cli_usage_error(a->cmd, "--dry-run needs a PATH");
        return 0;
}

/* The create request; the repository checked before anything is made. */
static int run_params(struct run *r, json_t *params) {
        const char *v;
        int rc;
        if ((v = cli_flag(r->a, "name")))
                json_object_set_new(params, "name", json_string(v));
        if ((v = cli_flag(r->a, "image")))
                json_object_set_new(params, "image", json_string(v));
        if (r->path) {
                /* the repository goes into the work disk before the first boot */
                _cleanup_free_ char *abs = abs_path(r->path);
                json_object_set_new(params, "workspace_path", json_string(abs));
                if (cli_has(r->a, "include-untracked"))
                        json_object_set_new(params, "include_untracked", json_true());
                if ((v = cli_flag(r->a, "branch")))
                        json_object_set_new(params, "branch", json_string(v));
                if ((v = cli_flag(r->a, "from")))
                        json_object_set_new(params, "from", json_string(v));
        }
        if ((rc = cli_spec_params(r->a, params)))
                return rc;
        r->nat = json_is_true(json_object_get(params, "nat"));
        if (!r->path)
                return 0;
        struct git_repo repo;
        _cleanup_free_ char *err = NULL;
        if ((rc = git_repo_inspect(r->path, &repo, &err)) < 0)
                return cli_fail(r->ctx, rc, "%s", err);
        r->toplevel = TAKE_PTR(repo.toplevel);
        git_repo_done(&repo);
        return 0;
}

/* The file that makes the repository a mise project (at its root, which is
 * what /root/repo holds), or NULL. */
static const char *mise_file(const char *toplevel) {
        static const char *const names[] = { "mise.toml", ".mise.toml", ".tool-versions" };
        for (size_t i = 0; toplevel && i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *p = path_join(toplevel, names[i]);
                if (access(p, F_OK) == 0)
                        return names[i];
        }
        return NULL;
}

/* The bootstrap needs the internet: refused before a VM exists (spec §6). */
static int run_check_bootstrap(struct run *r) {
        const char *f = cli_has(r->a, "no-bootstrap") ? NULL : mise_file(r->toplevel);
        if (!f || r->nat)
                return 0;
        return cli_error(r->ctx, NULL,
                         "%s/%s makes this a mise project, and its tooling bootstrap needs outbound network access: "
                         "pass --nat, or --no-bootstrap to skip the bootstrap (no VM was created)",
                         r->toplevel, f);
}

static volatile sig_atomic_t run_interrupted;
static void on_run_signal(int sig) {
        (void) sig;
        run_interrupted = 1;
}

/* mise, when the project has it (run_check_bootstrap made sure of NAT). */
static void run_bootstrap(struct run *r) {
        if (cli_has(r->a, "no-bootstrap") || !mise_file(r->toplevel) || !r->nat)
                return;
        int64_t t = mono_ms_now();
        char *boot[] = { (char *) "sh", (char *) "-c",
                         (char *) "mkdir -p /root/.cache/banger; if command -v mise >/dev/null; then "
                                  "mise trust && mise install; else echo 'mise not in this image'; fi "
                                  ">/root/.cache/banger/vm-run-tooling.log 2>&1" };
        int code = -1, rc = cli_has(r->a, "ssh") ? 1 : agent_command(r->ctx, r->name, r->cwd, boot, 3, &code);
        if (rc == 1 && (!r->no_ssh_wait || cli_wait_sshd(r->ctx, r->name, 120000) == 0)) {
                r->no_ssh_wait = false;
                _cleanup_free_ char *remote = remote_command(r->cwd, boot, 3);
                _cleanup_strv_free_ char **argv = cli_ssh_argv(r->vm, (char *[]) { remote }, 1, false);
                code = cli_run_foreground(argv);
        }
        if (code != 0)
                fprintf(stderr, "warning: tooling bootstrap failed (see /root/.cache/banger/vm-run-tooling.log in the "
                                "guest)\n");
        timed(r, "tooling bootstrap", t);
}

static int run_workspace(struct run *r) {
        _cleanup_json_ json_t *res = NULL;
        int64_t t = mono_ms_now();
        json_t *ws = json_object_get(r->vm, "workspace");
        if (json_is_object(ws)) /* written into the work disk before boot (vm.create.begin) */
                res = json_incref(ws);
        else {
                int rc = prepare(r->ctx, r->name, r->path, r->a, &res);
                if (rc)
                        return rc;
                timed(r, "workspace prepare", t);
        }
        if (r->ctx->progress.mode != CLI_PROGRESS_OFF)
                fprintf(stderr, "shipped %lld files (%lld bytes) to %s:/root/repo\n",
                        (long long) json_integer_value(json_object_get(res, "files")),
                        (long long) json_integer_value(json_object_get(res, "bytes")), r->name);
        skipped_notice(res);
        r->cwd = "/root/repo";
        run_bootstrap(r);
        return 0;
}

/* An OCI image's run config (image show's "oci"."config"), or NULL. */
static json_t *image_run_config(struct run *r) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", str(r->vm, "image"));
        if (cli_call(r->ctx, CLI_NO_AUTOSTART, RPC_METHOD_IMAGE_SHOW, params, &res) < 0)
                return NULL;
        json_t *cfg = json_object_get(json_object_get(res, "oci"), "config");
        return json_is_object(cfg) ? json_incref(cfg) : NULL;
}

/* No command, an OCI image with an entrypoint or a command: that, through
 * the agent, as `docker run IMAGE` would (its Env, WorkingDir and user).
 * *ran false when the image has neither. */
static int run_entrypoint(struct run *r, bool *ran) {
        _cleanup_json_ json_t *cfg = image_run_config(r);
        json_t *ep = json_object_get(cfg, "entrypoint"), *cmd = json_object_get(cfg, "cmd"), *it;
        size_t n = json_array_size(ep) + json_array_size(cmd), i, k = 0;
        *ran = false;
        if (!cfg || n == 0)
                return 0;
        *ran = true;
        if (n > 256)
                return cli_error(r->ctx, NULL, "the image's Entrypoint and Cmd have %zu arguments (at most 256)", n);
        _cleanup_free_ char **argv = xcalloc(n + 1, sizeof(char *));
        json_array_foreach(ep, i, it) argv[k++] = (char *) json_string_value(it);
        json_array_foreach(cmd, i, it) argv[k++] = (char *) json_string_value(it);
        for (i = 0; i < k; i++)
                if (!argv[i])
                        return cli_error(r->ctx, NULL, "the image's Entrypoint or Cmd is not a list of strings");
        /* the image's Env, its user (resolved at pull time) and that user's HOME */
        _cleanup_json_ json_t *extra = json_pack("{s:O}", "env", json_object_get(cfg, "env"));
        json_t *uid = json_object_get(cfg, "uid"), *gid = json_object_get(cfg, "gid"), *env = json_object_get(extra, "env");
        const char *home = json_string_value(json_object_get(cfg, "home"));
        bool has_home = false;
        json_array_foreach(env, i, it) has_home |= strncmp(strempty(json_string_value(it)), "HOME=", 5) == 0;
        if (home && !has_home && json_is_array(env))
                json_array_append_new(env, json_pack("s+", "HOME=", home));
        if (json_is_integer(uid) && json_is_integer(gid)) {
                json_object_set(extra, "uid", uid);
                json_object_set(extra, "gid", gid);
        }
        /* WorkingDir, else the workspace when one was shipped, else / (as docker run) */
        const char *wd = json_string_value(json_object_get(cfg, "working_dir"));
        int64_t t = mono_ms_now();
        int code = 0, rc = cli_agent_exec(r->ctx, r->name, argv, (int) k, wd ? wd : r->path ? r->cwd : "/",
                                          isatty(STDIN_FILENO) && isatty(STDOUT_FILENO), extra, &code);
        timed(r, "entrypoint (agent)", t);
        if (rc == -EPROTONOSUPPORT)
                return cli_error(r->ctx, NULL, "the guest agent of %s is too old to run the image's entrypoint", r->name);
        return rc < 0 ? rc : code;
}

/* The command (or an interactive shell) over ssh. */
static int run_command(struct run *r) {
        int64_t t = mono_ms_now();
        _cleanup_json_ json_t *res = NULL, *tp = json_pack("{s:s}", "vm", r->name);
        _cleanup_strv_free_ char **argv = NULL;
        int rc;
        bool ran = false;
        if (r->ncmd == 0 && !cli_has(r->a, "ssh") && ((rc = run_entrypoint(r, &ran)) != 0 || ran))
                return rc; /* the image's entrypoint ran (or could not) */
        if (r->ncmd > 0 && !cli_has(r->a, "ssh")) {
                int code = 0;
                rc = agent_command(r->ctx, r->name, r->cwd, r->cmd, r->ncmd, &code);
                if (rc <= 0) {
                        timed(r, "command (agent)", t);
                        return rc < 0 ? rc : code;
                }
        }
        /* ssh: the VM was created without waiting for sshd */
        if (r->no_ssh_wait && (rc = cli_wait_sshd(r->ctx, r->name, 120000)))
                return rc;
        (void) cli_call(r->ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, tp, &res); /* activity, best effort */
        cli_disconnect(r->ctx);
        if (r->ncmd > 0) {
                _cleanup_free_ char *remote = remote_command(r->cwd, r->cmd, r->ncmd);
                argv = cli_ssh_argv(r->vm, (char *[]) { remote }, 1, false);
        } else {
                _cleanup_free_ char *qcwd = shell_quote(r->cwd), *remote = xasprintf("cd %s && exec bash -l", qcwd);
                argv = cli_ssh_argv(r->vm, (char *[]) { remote }, 1, true);
        }
        rc = cli_run_foreground(argv);
        if (rc < 0)
                rc = cli_fail(r->ctx, rc, "cannot run ssh: %s", strerror(-rc));
        timed(r, r->ncmd > 0 ? "command (ssh)" : "session", t);
        if (r->ncmd == 0 && !r->rm)
                fprintf(stderr, "vm %s is still running (stop with: banger vm stop %s)\n", r->name, r->name);
        return rc;
}

/* --rm: on a fresh connection (the old one may be mid-answer). */
static int run_remove(struct run *r, int rc) {
        /* the disks are thrown away: no orderly poweroff, and the daemon does
         * the rest after answering (a crash meanwhile is finished at its next
         * start) */
        _cleanup_json_ json_t *res = NULL,
                              *dp = json_pack("{s:s, s:b, s:b}", "vm", r->name, "kill", true, "background", true);
        int64_t t = mono_ms_now();
        cli_disconnect(r->ctx);
        r->ctx->no_progress = true;
        int dr = cli_call(r->ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_DELETE, dp, &res);
        timed(r, "delete (--rm)", t);
        return dr < 0 && rc == 0 ? dr : rc;
}

static void run_timings(struct run *r) {
        for (int i = 0; i < r->ntm; i++)
                fprintf(stderr, "timing: %-26s %8.3f s\n", r->tm[i].name, (double) r->tm[i].ms / 1000.0);
        fprintf(stderr, "timing: %-26s %8.3f s\n", "total", (double) (mono_ms_now() - r->t0) / 1000.0);
}

/* After the VM exists: a Ctrl-C ends the wait for the daemon and goes on to
 * the cleanup (--rm) instead of killing us with the VM left behind. */
static int run_in_vm(struct run *r) {
        struct sigaction sa = { .sa_handler = on_run_signal }, old_int, old_term;
        int rc = 0;
        sigemptyset(&sa.sa_mask);
        run_interrupted = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        cli_disconnect(r->ctx);
        r->ctx->interrupt = &run_interrupted;
        r->cwd = "/root";
        if (r->path)
                rc = run_workspace(r);
        if (rc == 0 && r->detach)
                printf("vm %s is ready; connect with: banger vm ssh %s\n", r->name, r->name);
        else if (rc == 0)
                rc = run_command(r);
        r->ctx->interrupt = NULL;
        if (run_interrupted && rc < 128)
                rc = 130; /* interrupted before the command ran */
        if (r->rm)
                rc = run_remove(r, rc);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return rc;
}

int cmd_vm_run(struct cli_ctx *ctx, struct cli_args *a) {
        struct run r = { .ctx = ctx, .a = a, .path = a->dashdash == 0 || a->npos == 0 ? NULL : a->pos[0],
                         .ncmd = a->dashdash >= 0 ? a->npos - a->dashdash : 0,
                         .cmd = a->dashdash >= 0 ? a->pos + a->dashdash : NULL, .rm = cli_has(a, "rm"),
                         .detach = cli_has(a, "detach") };
        _cleanup_json_ json_t *params = json_object();
        int rc;
        if ((rc = run_check(&r)) || (rc = run_params(&r, params)))
                goto out;
        if (cli_has(a, "dry-run")) {
                rc = local_dry_run(ctx, r.path, cli_has(a, "include-untracked"));
                goto out;
        }
        if ((rc = run_check_bootstrap(&r)))
                goto out;
        r.t0 = mono_ms_now();
        /* a command through the agent needs no sshd: ready once the agent answers
         * (and so is an OCI image's entrypoint; a shell waits for sshd later) */
        r.no_ssh_wait = !r.detach && !cli_has(a, "ssh");
        if (r.no_ssh_wait)
                json_object_set_new(params, "wait_ssh", json_false());
        rc = cli_vm_create(ctx, params, true, &r.vm);
        timed(&r, r.no_ssh_wait ? "create + boot + agent ready" : "create + boot + ssh ready", r.t0);
        if (rc)
                goto out; /* a failed create keeps its VM (state error) for `vm logs` */
        r.name = xstrdup(str(r.vm, "name"));
        rc = run_in_vm(&r);
        if (cli_has(a, "timings"))
                run_timings(&r);
out:
        json_decref(r.vm);
        free(r.name);
        free(r.toplevel);
        return rc;
}
