/* SPDX-License-Identifier: MIT */
/* ssh (and other children) in the foreground of the terminal. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>

#include "cli.h"
#include "proc_spawn.h"

int cli_run_foreground(char *const *argv) {
        struct sigaction ign = { .sa_handler = SIG_IGN }, oi, ot;
        /* our stdio, session and terminal; default signals */
        static const struct spawn_fd_map stdio[] = { { 0, 0 }, { 1, 1 }, { 2, 2 } };
        struct spawn_opts o = { .fds = stdio, .n_fds = 3 };
        pid_t pid;
        fflush(stdout);
        fflush(stderr);
        int r = spawn_start(argv, &o, &pid);
        if (r < 0)
                return r;
        /* the terminal's Ctrl-C belongs to the child; we wait for its answer */
        sigemptyset(&ign.sa_mask);
        sigaction(SIGINT, &ign, &oi);
        sigaction(SIGTERM, &ign, &ot);
        r = spawn_wait(pid);
        sigaction(SIGINT, &oi, NULL);
        sigaction(SIGTERM, &ot, NULL);
        return r;
}
