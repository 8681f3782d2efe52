/* SPDX-License-Identifier: MIT */
/*
 * Workspace export: the guest's changes since a base commit as a patch for
 * `git apply` (binary-safe), made in the guest with a temporary index (its
 * own index and work tree untouched), through the agent (SSH for an agent
 * of protocol version 1). Serialised with prepare by the workspace lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitrepo.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "proc_spawn.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vms_internal.h"

#define EXPORT_TIMEOUT_MS 600000

/* A temporary index: the guest's own index and work tree stay as they are. */
static char *export_script(const char *guest_path, const char *base) {
        _cleanup_free_ char *qbase = shell_quote(base), *qpath = shell_quote(guest_path);
        return xasprintf(
                "set -e; cd %s; base=$(git rev-parse --verify -q %s^{commit}) || { printf 'unknown base commit %%s\\n' %s >&2; exit 3; }; "
                "idx=\"$(git rev-parse --absolute-git-dir)/banger-export-index\"; rm -f \"$idx\"; "
                "trap 'rm -f \"$idx\"' EXIT; git read-tree --index-output=\"$idx\" \"$base\"; "
                "GIT_INDEX_FILE=\"$idx\" git add -A; "
                "GIT_INDEX_FILE=\"$idx\" git diff --cached --binary \"$base\"; "
                "GIT_INDEX_FILE=\"$idx\" git diff --cached --name-only \"$base\" >&2",
                qpath, qbase, qbase);
}

/* The export script through the agent: stdout to outfd, stderr (the file
 * names, or why it failed) into res->err. 1: the agent is too old. */
static int export_agent(struct vms *v, const struct vm_row *row, const char *script, int outfd,
                        struct spawn_result *res, struct op_error *e) {
        struct vm_paths p;
        vm_paths_init(v, row, &p);
        _cleanup_close_ int errfd = memfd_create("banger-export-err", MFD_CLOEXEC);
        int status = -1, rc = errfd < 0 ? op_fail(e, -errno, "memfd: %s", strerror(errno))
                                        : workspace_agent_script(v, &p, script, -1, outfd, errfd, EXPORT_TIMEOUT_MS, &status, e);
        vm_paths_done(&p);
        if (rc != 0)
                return rc;
        struct stat st;
        size_t len = fstat(errfd, &st) == 0 && st.st_size > 0 ? (size_t) st.st_size : 0;
        if (len > (16u << 20))
                len = 16u << 20;
        res->err = xcalloc(1, len + 1);
        if (len && pread(errfd, res->err, len, 0) < 0)
                res->err[0] = '\0';
        res->exit_code = status;
        return 0;
}

static int do_export(struct vms *v, const struct vm_row *row, const char *guest_path, const char *base_c,
                     const char *output, json_t **ret, struct op_error *e) {
        _cleanup_free_ char *script = export_script(guest_path, base_c);
        _cleanup_close_ int outfd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (outfd < 0)
                return op_fail(e, -errno, "cannot write %s: %s", output, strerror(errno));
        struct spawn_result res = { 0 };
        int rc = export_agent(v, row, script, outfd, &res, e);
        if (rc == 1) { /* an agent too old for streams: ssh */
                _cleanup_strv_free_ char **argv = workspace_ssh_argv(v, row, script);
                struct spawn_fd_map fds[] = { { 1, outfd } };
                struct spawn_opts so = { .fds = fds, .n_fds = 1, .capture_stderr = true,
                                         .timeout_ms = EXPORT_TIMEOUT_MS };
                rc = spawn_run(argv, &so, &res);
        }
        if (rc < 0 || res.exit_code != 0) {
                rc = op_fail_as(e, res.exit_code == 3 ? RPC_BAD_REQUEST : RPC_OPERATION_FAILED, rc < 0 ? rc : -EIO,
                                "exporting the workspace of %s failed: %s", row->name,
                                rc < 0 ? strerror(-rc) : res.err);
                spawn_result_done(&res);
                unlink(output);
                return rc;
        }
        json_t *names = json_array();
        char *save = NULL;
        for (char *tok = strtok_r(res.err, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
                json_array_append_new(names, json_string(tok));
        spawn_result_done(&res);
        struct stat st;
        *ret = json_pack("{s:s, s:s, s:o, s:I}", "base_commit", base_c, "output", output, "files", names, "bytes",
                         (json_int_t) (fstat(outfd, &st) == 0 ? st.st_size : 0));
        if (store_vm_touch(v->deps.store, row->id) < 0)
                log_warn("vm %s: cannot record its activity", row->name);
        return 0;
}

int workspace_export(struct vms *v, const char *ref, const char *base, const char *output, json_t **ret,
                     struct op_error *e) {
        struct vm_row row = { 0 };
        struct vm_paths p = { 0 };
        int rc;

        if (!output || output[0] != '/')
                return op_bad_request(e, "output must be an absolute path");
        if ((rc = vms_get_row(v, ref, &row, e)) < 0)
                return rc;
        vm_paths_init(v, &row, &p);
        _cleanup_json_ json_t *ws = row.workspace_json ? json_loads(row.workspace_json, 0, NULL) : NULL;
        const char *gp = json_string_value(json_object_get(ws, "guest_path"));
        const char *recorded = json_string_value(json_object_get(ws, "head_commit"));
        _cleanup_free_ char *guest_path = xstrdup(gp ? gp : GUEST_REPO);
        _cleanup_free_ char *base_c = xstrdup(base && *base ? base : recorded ? recorded : "HEAD");
        if (vms_live_pid(v, &row, &p, NULL) <= 0)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", row.name, row.state);
        else {
                struct vm_lock *l = vms_workspace_lock(v, row.id);
                rc = do_export(v, &row, guest_path, base_c, output, ret, e);
                vms_workspace_unlock(v, l);
        }
        vm_paths_done(&p);
        vm_row_done(&row);
        return rc;
}
