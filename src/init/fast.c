/* SPDX-License-Identifier: MIT */
/*
 * The minimal init for images marked "fast": no systemd. Mounts the usual
 * pseudo filesystems, starts sshd and the agent, reaps children, and turns
 * SIGTERM into a clean poweroff (SIGINT, Ctrl-Alt-Del, into a reboot).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

void init_fast_main(const struct init_params *p) {
        sigset_t set;
        pid_t sshd = -1, agent = -1;

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
        sigaddset(&set, SIGUSR2);
        sigprocmask(SIG_BLOCK, &set, NULL);

        if (access("/usr/sbin/sshd", X_OK) == 0) {
                char *argv[] = { (char *) "/usr/sbin/sshd", (char *) "-D", (char *) "-e", NULL };
                sshd = start(argv);
        }
        if (access("/usr/local/bin/banger-agent", X_OK) == 0) {
                char *argv[] = { (char *) "/usr/local/bin/banger-agent", NULL };
                agent = start(argv);
        }
        init_stage("init-started", "mode=fast sshd=%s agent=%s", sshd > 0 ? "started" : "absent",
                   agent > 0 ? "started" : "absent");

        for (;;) {
                siginfo_t si;
                if (sigwaitinfo(&set, &si) < 0)
                        continue;
                switch (si.si_signo) {
                case SIGCHLD: {
                        pid_t pid;
                        int status;
                        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                                if (pid == sshd || pid == agent)
                                        init_log("%s exited (status %d)", pid == sshd ? "sshd" : "agent", status);
                        break;
                }
                case SIGINT:
                        shutdown_all(true);
                        break;
                default: /* SIGTERM, SIGUSR2 */
                        shutdown_all(false);
                }
        }
}
