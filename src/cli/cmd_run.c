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
#include <sys/wait.h>
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

/* Runs argv (ssh), the terminal's Ctrl-C going to it; its exit code, or
 * 128+signal. */
static int run_child(char **argv) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                execvp(argv[0], argv);
                fprintf(stderr, "banger: cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        struct sigaction ign = { .sa_handler = SIG_IGN }, oi, ot;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGINT, &ign, &oi);
        sigaction(SIGTERM, &ign, &ot);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        sigaction(SIGINT, &oi, NULL);
        sigaction(SIGTERM, &ot, NULL);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The guest side of a command: `bash -lc` in cwd, never exec'd away (so a
 * command killed by signal N gives 128+N, not a dead shell). */
static char *remote_command(const char *cwd, char *const *cmd, int n) {
        _cleanup_free_ char *joined = shell_join(cmd, n), *qcwd = shell_quote(cwd);
        _cleanup_free_ char *script = xasprintf("cd %s && { %s\n}; exit $?", qcwd, joined);
        _cleanup_free_ char *qscript = shell_quote(script);
        return xasprintf("bash -lc %s", qscript);
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
        else
                printf("shipped %lld files (%lld bytes) from %s to %s:%s at %.12s\n",
                       (long long) json_integer_value(json_object_get(res, "files")),
                       (long long) json_integer_value(json_object_get(res, "bytes")), str(res, "host_path"), a->pos[0],
                       str(res, "guest_path"), str(res, "head_commit"));
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
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", a->pos[0]);
        cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, params, &t);
        _cleanup_free_ char *remote = remote_command(cwd, a->pos + 1, a->npos - 1);
        _cleanup_strv_free_ char **argv = cli_ssh_argv(vm, (char *[]) { remote }, 1, false);
        cli_disconnect(ctx);
        r = run_child(argv);
        return r < 0 ? cli_error(ctx, NULL, "cannot run ssh: %s", strerror(-r)) : r;
}

/* ---- vm run ------------------------------------------------------------------ */

static volatile sig_atomic_t run_interrupted;
static void on_run_signal(int sig) {
        (void) sig;
        run_interrupted = 1;
}

struct timing {
        const char *name;
        int64_t ms;
};

int cmd_vm_run(struct cli_ctx *ctx, struct cli_args *a) {
        const char *path = a->dashdash == 0 || a->npos == 0 ? NULL : a->pos[0];
        int ncmd = a->dashdash >= 0 ? a->npos - a->dashdash : 0;
        char **cmd = a->dashdash >= 0 ? a->pos + a->dashdash : NULL;
        bool rm = cli_has(a, "rm"), detach = cli_has(a, "detach");
        struct timing tm[8];
        int ntm = 0, rc;

        /* every combination is checked before a VM exists */
        if (a->dashdash < 0 && a->npos > 1)
                return cli_usage_error(a->cmd, "unexpected argument '%s' (the command goes after '--')", a->pos[1]);
        if (a->dashdash > 1)
                return cli_usage_error(a->cmd, "unexpected argument '%s' before '--'", a->pos[1]);
        if (a->dashdash >= 0 && ncmd == 0)
                return cli_usage_error(a->cmd, "'--' must be followed by a command");
        if (detach && rm)
                return cli_usage_error(a->cmd, "-d/--detach and --rm exclude each other");
        if (detach && ncmd > 0)
                return cli_usage_error(a->cmd, "-d/--detach does not run a command (use vm exec later)");
        if (cli_flag(a, "from") && !cli_flag(a, "branch"))
                return cli_usage_error(a->cmd, "--from needs --branch");
        if ((cli_flag(a, "branch") || cli_has(a, "include-untracked")) && !path)
                return cli_usage_error(a->cmd, "--branch, --from and --include-untracked need a PATH");
        if (cli_has(a, "dry-run") && !path)
                return cli_usage_error(a->cmd, "--dry-run needs a PATH");
        _cleanup_json_ json_t *params = json_object();
        const char *v;
        if ((v = cli_flag(a, "name")))
                json_object_set_new(params, "name", json_string(v));
        if ((v = cli_flag(a, "image")))
                json_object_set_new(params, "image", json_string(v));
        if ((rc = cli_spec_params(a, params)))
                return rc;
        if (path) {
                struct git_repo repo;
                _cleanup_free_ char *err = NULL;
                if (git_repo_inspect(path, &repo, &err) < 0)
                        return cli_error(ctx, NULL, "%s", err);
                git_repo_done(&repo);
                if (cli_has(a, "dry-run"))
                        return local_dry_run(ctx, path, cli_has(a, "include-untracked"));
        }
        bool nat = json_is_true(json_object_get(params, "nat"));

        int64_t t0 = mono_ms_now();
        _cleanup_json_ json_t *vm = NULL;
        rc = cli_vm_create(ctx, params, true, &vm);
        tm[ntm++] = (struct timing) { "create + boot + ssh ready", mono_ms_now() - t0 };
        if (rc)
                return rc; /* a failed create keeps its VM (state error) for `vm logs` */
        const char *name = str(vm, "name");
        _cleanup_free_ char *vm_name = xstrdup(name);
        /* From here a Ctrl-C ends the wait for the daemon and goes on to the
         * cleanup (--rm) instead of killing us with the VM left behind. */
        struct sigaction sa = { .sa_handler = on_run_signal }, old_int, old_term;
        sigemptyset(&sa.sa_mask);
        run_interrupted = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        cli_disconnect(ctx);
        ctx->interrupt = &run_interrupted;
        const char *cwd = "/root";
        if (path) {
                _cleanup_json_ json_t *res = NULL;
                int64_t t1 = mono_ms_now();
                if ((rc = prepare(ctx, vm_name, path, a, &res)))
                        goto end;
                tm[ntm++] = (struct timing) { "workspace prepare", mono_ms_now() - t1 };
                fprintf(stderr, "shipped %lld files (%lld bytes) to %s:/root/repo\n",
                        (long long) json_integer_value(json_object_get(res, "files")),
                        (long long) json_integer_value(json_object_get(res, "bytes")), vm_name);
                skipped_notice(res);
                cwd = "/root/repo";
                _cleanup_free_ char *mise = path_join(path, ".mise.toml"), *tv = path_join(path, ".tool-versions");
                if (!cli_has(a, "no-bootstrap") && (access(mise, F_OK) == 0 || access(tv, F_OK) == 0)) {
                        if (!nat)
                                fprintf(stderr, "note: tooling bootstrap (mise) skipped: the VM has no NAT "
                                                "(--nat enables it, --no-bootstrap silences this)\n");
                        else {
                                int64_t t2 = mono_ms_now();
                                char *boot[] = { (char *) "sh", (char *) "-c",
                                                 (char *) "mkdir -p /root/.cache/banger; if command -v mise >/dev/null; then "
                                                          "mise trust && mise install; else echo 'mise not in this image'; fi "
                                                          ">/root/.cache/banger/vm-run-tooling.log 2>&1" };
                                _cleanup_free_ char *remote = remote_command(cwd, boot, 3);
                                _cleanup_strv_free_ char **argv = cli_ssh_argv(vm, (char *[]) { remote }, 1, false);
                                if (run_child(argv) != 0)
                                        fprintf(stderr, "warning: tooling bootstrap failed (see "
                                                        "/root/.cache/banger/vm-run-tooling.log in the guest)\n");
                                tm[ntm++] = (struct timing) { "tooling bootstrap", mono_ms_now() - t2 };
                        }
                }
        }
        if (detach) {
                printf("vm %s is ready; connect with: banger vm ssh %s\n", vm_name, vm_name);
                rc = 0;
                goto end;
        }
        {
                int64_t t3 = mono_ms_now();
                _cleanup_json_ json_t *t = NULL, *tp = json_pack("{s:s}", "vm", vm_name);
                cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, tp, &t);
                cli_disconnect(ctx);
                _cleanup_strv_free_ char **argv = NULL;
                if (ncmd > 0) {
                        _cleanup_free_ char *remote = remote_command(cwd, cmd, ncmd);
                        argv = cli_ssh_argv(vm, (char *[]) { remote }, 1, false);
                } else {
                        _cleanup_free_ char *qcwd = shell_quote(cwd);
                        _cleanup_free_ char *remote = xasprintf("cd %s && exec bash -l", qcwd);
                        argv = cli_ssh_argv(vm, (char *[]) { remote }, 1, true);
                }
                rc = run_child(argv);
                if (rc < 0)
                        rc = cli_error(ctx, NULL, "cannot run ssh: %s", strerror(-rc));
                tm[ntm++] = (struct timing) { ncmd > 0 ? "command" : "session", mono_ms_now() - t3 };
                if (ncmd == 0 && !rm)
                        fprintf(stderr, "vm %s is still running (stop with: banger vm stop %s)\n", vm_name, vm_name);
        }
end:
        ctx->interrupt = NULL;
        if (run_interrupted && rc < 128)
                rc = 130; /* interrupted before the command ran */
        if (rm) {
                _cleanup_json_ json_t *res = NULL, *dp = json_pack("{s:s}", "vm", vm_name);
                int64_t t4 = mono_ms_now();
                cli_disconnect(ctx); /* a fresh connection: the old one may be mid-answer */
                ctx->no_progress = true;
                if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_DELETE, dp, &res) != 0 && rc == 0)
                        rc = 1;
                tm[ntm++] = (struct timing) { "delete (--rm)", mono_ms_now() - t4 };
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (cli_has(a, "timings")) {
                for (int i = 0; i < ntm; i++)
                        fprintf(stderr, "timing: %-26s %8.3f s\n", tm[i].name, (double) tm[i].ms / 1000.0);
                fprintf(stderr, "timing: %-26s %8.3f s\n", "total", (double) (mono_ms_now() - t0) / 1000.0);
        }
        return rc;
}
