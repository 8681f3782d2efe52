/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Child processes, built on posix_spawn (safe in threaded programs: no fork
 * without exec).
 *
 * fd ownership: the parent fds named in `fds` stay owned by the caller and are
 * never closed by spawn; the child gets them dup2()ed at `child_fd`. Every other
 * fd of ours is O_CLOEXEC and so does not reach the child; fds above the
 * highest mapped child fd are closed in the child as well. Child fds 0-2 that
 * are neither mapped nor captured are connected to /dev/null. Capture pipes are
 * created and closed by spawn_run().
 *
 * argv is a vector: there is no shell and no quoting anywhere.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct spawn_fd_map {
        int child_fd;
        int parent_fd;
};

struct spawn_opts {
        const struct spawn_fd_map *fds;
        size_t n_fds;
        bool capture_stdout;
        bool capture_stderr;
        bool new_session;   /* setsid(): survives our process group */
        bool new_pgroup;    /* own process group; timeouts/cancels signal the whole group */
        bool die_with_parent; /* SIGKILL when the spawning thread dies (PR_SET_PDEATHSIG):
                               * helpers of a daemon that is killed -9 do not outlive it */
        char *const *envp;  /* NULL: inherit */
        int timeout_ms;     /* spawn_run only; 0: none. SIGKILL on expiry */
        size_t max_capture; /* bytes per stream; 0: 16 MiB */
        /* spawn_run only: polled a few times a second; true kills the child
         * (SIGTERM, then SIGKILL after cancel_grace_ms) and marks the result cancelled. */
        bool (*cancel)(void *ud);
        void *cancel_ud;
        int cancel_grace_ms; /* SIGTERM -> SIGKILL; 0: 2 s */
        const char *cwd;     /* NULL: ours */
        /* spawn_run only: each chunk read from a captured stream (1 stdout,
         * 2 stderr) as it arrives, before (and whatever) the capture keeps */
        void (*output)(void *ud, int stream, const char *buf, size_t len);
        void *output_ud;
};

struct spawn_result {
        int exit_code;   /* exit status, or 128+signal */
        int term_signal; /* 0 unless killed by a signal */
        bool timed_out;
        bool cancelled;
        char *out; /* owned, NUL-terminated ("" when not captured) */
        size_t out_len;
        char *err; /* owned, NUL-terminated */
        size_t err_len;
};

/* Starts argv[0] (PATH searched when it has no '/'). 0 or -errno. At most
 * SPAWN_MAX_FDS mapped fds. */
#define SPAWN_MAX_FDS 16
int spawn_start(char *const argv[], const struct spawn_opts *opts, pid_t *ret_pid);

/* Starts and waits; captures output as asked. Returns 0 when the child ran
 * (whatever its exit code) or -errno when it could not be started. */
int spawn_run(char *const argv[], const struct spawn_opts *opts, struct spawn_result *ret);

void spawn_result_done(struct spawn_result *r);

/* Waits for pid; returns exit code or 128+signal, or -errno. */
int spawn_wait(pid_t pid);

/* Looks `name` up in PATH (or checks it when it contains '/'); malloc'd path
 * in *ret. 0 or -ENOENT. */
int find_executable(const char *name, char **ret);

/* Runs argv (output captured, timeout_ms) and succeeds when the exit code is
 * at most max_ok_exit. Otherwise *ret_err says "<cmd> failed (exit N): <its
 * stderr>", or "cannot run <cmd>: <why> (<install_hint>)". */
int spawn_run_checked(char *const argv[], int timeout_ms, int max_ok_exit, const char *install_hint, char **ret_err);
