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
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init.h"
#include "../shared/guestinit.h"
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

struct sshd {
        pid_t pid;         /* -1: none running */
        unsigned gen;      /* starts so far (GUEST_INIT_SSHD_FILE) */
        bool restart;      /* the old one was told to go; start a new one when it has */
        bool killed;       /* ... and it did not go in time: SIGKILL sent */
        int64_t kill_at;   /* monotonic ms */
};

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts sshd (when the image has one) and records the generation. */
static void sshd_start(struct sshd *d) {
        char line[48];
        d->pid = access(sshd_argv[0], X_OK) == 0 ? start(sshd_argv) : -1;
        d->gen++;
        int n = snprintf(line, sizeof(line), "%u %d\n", d->gen, (int) d->pid);
        int fd = open(GUEST_INIT_SSHD_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || write(fd, line, (size_t) n) != n || rename(GUEST_INIT_SSHD_FILE ".tmp", GUEST_INIT_SSHD_FILE) < 0)
                init_log("cannot record sshd in %s: %s", GUEST_INIT_SSHD_FILE, strerror(errno));
        if (fd >= 0)
                close(fd);
}

/* SIGUSR1: the running listener goes (the SIGCHLD of its exit starts the
 * next one), or, with none running, one starts now. */
static void sshd_restart(struct sshd *d) {
        if (d->restart)
                return; /* the one that starts next reads the newest key */
        if (d->pid > 0) {
                d->restart = true, d->killed = false;
                d->kill_at = mono_ms() + SSHD_STOP_MS;
                kill(d->pid, SIGTERM);
        } else
                sshd_start(d);
}

static void sshd_reaped(struct sshd *d, int status) {
        d->pid = -1;
        if (!d->restart) {
                init_log("sshd exited (status %d)", status);
                return;
        }
        d->restart = false;
        sshd_start(d);
}

/* The wait for a signal: bounded while a stopping listener may need SIGKILL. */
static int wait_signal(const sigset_t *set, siginfo_t *si, struct sshd *d) {
        if (!d->restart || d->killed)
                return sigwaitinfo(set, si);
        int64_t left = d->kill_at - mono_ms();
        struct timespec ts = { left > 0 ? left / 1000 : 0, left > 0 ? (left % 1000) * 1000000L : 0 };
        int sig = sigtimedwait(set, si, &ts);
        if (sig < 0 && errno == EAGAIN) {
                init_log("sshd (%d) did not stop within %d ms: killing it", (int) d->pid, SSHD_STOP_MS);
                kill(d->pid, SIGKILL); /* its SIGCHLD starts the next one */
                d->killed = true;
        }
        return sig;
}

void init_fast_main(const struct init_params *p) {
        sigset_t set;
        pid_t agent = -1;
        struct sshd sshd = { .pid = -1 };

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

        sshd_start(&sshd);
        if (access("/usr/local/bin/banger-agent", X_OK) == 0) {
                char *argv[] = { (char *) "/usr/local/bin/banger-agent", NULL };
                agent = start(argv);
        }
        init_stage("init-started", "mode=fast sshd=%s agent=%s", sshd.pid > 0 ? "started" : "absent",
                   agent > 0 ? "started" : "absent");

        for (;;) {
                siginfo_t si;
                switch (wait_signal(&set, &si, &sshd)) {
                case SIGCHLD: {
                        pid_t pid;
                        int status;
                        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                                if (pid == sshd.pid)
                                        sshd_reaped(&sshd, status);
                                else if (pid == agent)
                                        init_log("agent exited (status %d)", status), agent = -1;
                        break;
                }
                case SIGUSR1: /* restart sshd: it reads the VM's new host key */
                        sshd_restart(&sshd);
                        break;
                case SIGINT:
                        shutdown_all(true);
                        break;
                case SIGTERM:
                case SIGUSR2:
                        shutdown_all(false);
                        break;
                default: /* interrupted, or the SIGKILL deadline passed */
                        break;
                }
        }
}
