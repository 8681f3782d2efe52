/* SPDX-License-Identifier: MIT */
#pragma once

/* Looking for processes by what they run (the build sweep: a dead build's
 * apt/dpkg), and whether one still runs. */

#include <stdbool.h>
#include <sys/types.h>

/* Calls fn for every process owned by uid (the owner of /proc/<pid>;
 * PROC_ANY_UID: every process), ourselves excluded, with its argv (the NUL-separated cmdline, at most
 * PROC_SCAN_MAX_ARGS). fn returns true to stop. Kernel threads have no argv
 * and are skipped. */
#define PROC_SCAN_MAX_ARGS 128
#define PROC_ANY_UID ((uid_t) -1)
void proc_scan(uid_t uid, bool (*fn)(pid_t pid, char *const *argv, int argc, void *ud), void *ud);

/* pid runs: it exists and is not a zombie (a process that died but that
 * its parent has not reaped yet is dead for every purpose here). */
bool proc_alive(pid_t pid);

/* pid's /proc/<pid>/<link> (cwd, root, exe) resolved, or NULL. */
char *proc_link(pid_t pid, const char *link);
