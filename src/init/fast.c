/* SPDX-License-Identifier: MIT */
/*
 * The minimal init for images marked "fast": no systemd. Mounts the usual
 * pseudo filesystems, starts sshd and the agent, reaps children, and turns
 * SIGTERM into a clean poweroff (SIGINT, Ctrl-Alt-Del, into a reboot).
 * SIGUSR1 restarts sshd (the agent's identity step, after it wrote the VM's
 * host key): init is the one owner of its sshd, so a listener still starting
 * when a template was paused can never race a second one for port 22.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init.h"
#include "../shared/vdisk.h"

static pid_t start(char *const argv[]) {
        pid_t pid = fork();

        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                setsid();
                execv(argv[0], argv);
                init_log("cannot exec %s: %s", argv[0], strerror(errno));
                _exit(127);
        }
        return pid;
}

static void shutdown_all(bool reboot_instead) {
        init_stage("shutdown", reboot_instead ? "reboot" : "poweroff");
        kill(-1, SIGTERM);
        for (int i = 0; i < 100; i++) { /* up to 1 s for children to go */
                while (waitpid(-1, NULL, WNOHANG) > 0)
                        ;
                if (kill(-1, 0) < 0 && errno == ESRCH)
                        break;
                usleep(10000);
        }
        kill(-1, SIGKILL);
        sync();
        if (umount2(VDISK_REPO_MOUNT, 0) < 0) /* the repo disk first: it sits on /root */
                umount2(VDISK_REPO_MOUNT, MNT_DETACH);
        umount2("/root", MNT_DETACH);
        mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
        init_poweroff(reboot_instead);
}

/* SIGTERM to a listener that may still be starting (it dies at once, or
 * exits from its accept loop), SIGKILL if it is still there after this. */
#define SSHD_STOP_MS 3000

static char *const sshd_argv[] = { (char *) "/usr/sbin/sshd", (char *) "-D", (char *) "-e", NULL };

static pid_t start_sshd(void) {
        return access(sshd_argv[0], X_OK) == 0 ? start(sshd_argv) : -1;
}

void init_fast_main(const struct init_params *p) {
        sigset_t set;
        pid_t sshd = -1, agent = -1;
        bool restart_sshd = false; /* the old one was told to go; start a new one when it has */

        mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        mkdir("/dev/pts", 0755);
        mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
        mkdir("/dev/shm", 01777);
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        mkdir("/run/sshd", 0755);
        (void) p;

        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGUSR2);
        sigprocmask(SIG_BLOCK, &set, NULL);

        sshd = start_sshd();
        if (access("/usr/local/bin/banger-agent", X_OK) == 0) {
                char *argv[] = { (char *) "/usr/local/bin/banger-agent", NULL };
                agent = start(argv);
        }
        init_stage("init-started", "mode=fast sshd=%s agent=%s", sshd > 0 ? "started" : "absent",
                   agent > 0 ? "started" : "absent");

        for (;;) {
                siginfo_t si;
                struct timespec stop_wait = { SSHD_STOP_MS / 1000, (SSHD_STOP_MS % 1000) * 1000000L };
                int sig = restart_sshd ? sigtimedwait(&set, &si, &stop_wait) : sigwaitinfo(&set, &si);
                if (sig < 0) {
                        if (errno == EAGAIN && restart_sshd && sshd > 0) {
                                init_log("sshd (%d) did not stop: killing it", (int) sshd);
                                kill(sshd, SIGKILL); /* reaped below; the restart follows */
                        }
                        continue;
                }
                switch (sig) {
                case SIGCHLD: {
                        pid_t pid;
                        int status;
                        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                                if (pid == agent)
                                        init_log("agent exited (status %d)", status), agent = -1;
                                if (pid != sshd)
                                        continue;
                                sshd = -1;
                                if (!restart_sshd)
                                        init_log("sshd exited (status %d)", status);
                        }
                        if (restart_sshd && sshd < 0) {
                                restart_sshd = false;
                                sshd = start_sshd();
                                init_log("sshd restarted (%s)", sshd > 0 ? "started" : "absent");
                        }
                        break;
                }
                case SIGUSR1: /* restart sshd: it reads the VM's new host key */
                        if (sshd > 0 && !restart_sshd) {
                                restart_sshd = true;
                                kill(sshd, SIGTERM);
                        } else if (sshd < 0) {
                                sshd = start_sshd();
                                init_log("sshd started (%s)", sshd > 0 ? "started" : "absent");
                        }
                        break;
                case SIGINT:
                        shutdown_all(true);
                        break;
                default: /* SIGTERM, SIGUSR2 */
                        shutdown_all(false);
                }
        }
}
