/* SPDX-License-Identifier: MIT */
/*
 * banger-agent --identify: gives a guest restored from a saved state (a
 * template shared by many VMs, or another VM's snapshot) its own identity
 * before anything else can see it (docs/GUEST.md, "Re-identification").
 * Run as root by the host through the agent's exec channel:
 *
 *   banger-agent --identify [--time S.NNNNNNNNN] [--hostname NAME]
 *       [--iface IF --mac MAC --ip A.B.C.D/N [--gw G] [--old-ip A.B.C.D/N]]
 *       [--work SERIAL [--repo SERIAL]] [--sshd]
 *
 * stdin: records, each a header line and its bytes (secrets never go on a
 * command line another guest process could read):
 *   entropy N\n<N bytes>                   credited to the kernel's pool, then the CRNG is reseeded
 *   file MODE LEN PATH\n<LEN bytes>        written atomically (MODE octal, PATH absolute, below /etc or /root)
 *
 * Order: entropy and the clock first (everything after uses them), the work
 * disk mounted on /root and the repo disk on /root/repo when it holds a
 * complete workspace (the template never mounted them: the blocks it read
 * are dropped first), the files, the hostname, the network (old address
 * off, the VM's MAC, its address and route), sshd (restarted, or told to
 * reload its host keys). Any failure: a message on stderr and exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "identity.h"
#include "../shared/guestinit.h"
#include "../shared/guestnet.h"
#include "../shared/vdisk.h"

#define ID_INPUT_MAX (1u << 20)
#define ID_ENTROPY_MAX 512

struct id_opts {
        const char *time, *hostname, *iface, *mac, *ip, *gw, *old_ip, *work, *repo;
        bool sshd;
};

static int fail(const char *what, int err) {
        fprintf(stderr, "banger-agent --identify: %s: %s\n", what, strerror(err < 0 ? -err : err));
        return 1;
}

static int read_all(int fd, char **ret, size_t *ret_len) {
        size_t cap = 1 << 14, len = 0;
        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= ID_INPUT_MAX) {
                                free(buf);
                                return -EFBIG;
                        }
                        char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        free(buf);
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int add_entropy(const char *bytes, size_t n) {
        struct {
                struct rand_pool_info info;
                unsigned char buf[ID_ENTROPY_MAX];
        } e;
        if (n > ID_ENTROPY_MAX)
                return -E2BIG;
        e.info.entropy_count = (int) (n * 8);
        e.info.buf_size = (int) n;
        memcpy(e.buf, bytes, n);
        int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = ioctl(fd, RNDADDENTROPY, &e) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0 ? -errno : 0;
        close(fd);
        return r;
}

/* A path this mode may write: absolute, below /etc/ or /root/, no "..". */
static bool path_ok(const char *p) {
        return (strncmp(p, "/etc/", 5) == 0 || strncmp(p, "/root/", 6) == 0) && !strstr(p, "/../") &&
               !strstr(p, "/./") && strlen(p) < 256 && !strchr(p, '\n');
}

static int mkdir_parents(const char *path) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", path);
        for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                if (mkdir(buf, strcmp(buf, "/root/.ssh") == 0 ? 0700 : 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static int put_file(const char *path, unsigned mode, const char *data, size_t len) {
        char tmp[300];
        int r = mkdir_parents(path);
        if (r < 0)
                return r;
        snprintf(tmp, sizeof(tmp), "%s.banger-id.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write(fd, data, len) == (ssize_t) len ? 0 : -EIO;
        if (r == 0 && (fchown(fd, 0, 0) < 0 || fchmod(fd, mode & 07777) < 0))
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

enum pass { CHECK, ENTROPY, FILES };

/* The records of in[0..len): all checked (CHECK), the entropy applied
 * (ENTROPY), the files written (FILES). */
static int records(const char *in, size_t len, enum pass pass) {
        size_t pos = 0;
        while (pos < len) {
                const char *nl = memchr(in + pos, '\n', len - pos);
                char head[320], path[300];
                unsigned mode;
                size_t n;
                if (!nl || (size_t) (nl - (in + pos)) >= sizeof(head))
                        return fail("a record header", EINVAL);
                memcpy(head, in + pos, (size_t) (nl - (in + pos)));
                head[nl - (in + pos)] = '\0';
                pos = (size_t) (nl - in) + 1;
                if (sscanf(head, "entropy %zu", &n) == 1 && !strchr(head + 8, ' ')) {
                        if (n > len - pos || n > ID_ENTROPY_MAX)
                                return fail("entropy", EINVAL);
                        int r = pass == ENTROPY ? add_entropy(in + pos, n) : 0;
                        if (r < 0)
                                return fail("adding entropy", r);
                } else if (sscanf(head, "file %o %zu %299s", &mode, &n, path) == 3) {
                        if (n > len - pos || !path_ok(path) || mode > 07777)
                                return fail(head, EINVAL);
                        int r = pass == FILES ? put_file(path, mode, in + pos, n) : 0;
                        if (r < 0)
                                return fail(path, r);
                } else
                        return fail(head, EINVAL);
                pos += n;
        }
        return 0;
}

static int set_time(const char *s) {
        char *end;
        errno = 0;
        long long sec = strtoll(s, &end, 10);
        long nsec = 0;
        if (*end == '.') {
                char digits[10] = "000000000";
                size_t k = strspn(end + 1, "0123456789");
                memcpy(digits, end + 1, k > 9 ? 9 : k);
                nsec = strtol(digits, NULL, 10);
                end += 1 + k;
        }
        if (errno || *end || sec <= 0)
                return -EINVAL;
        struct timespec ts = { .tv_sec = (time_t) sec, .tv_nsec = nsec };
        return clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
}

/* dir is a mount of the disk with that serial, mounted now if it was not
 * (the template never mounted it: the blocks it read are dropped first);
 * when label, only a disk labelled so (a complete workspace) is mounted. */
static int mount_disk(const char *serial, const char *dir, const char *label) {
        char dev[64];
        struct stat m, d;
        int r = vdisk_find(serial, dev, sizeof(dev));
        if (r < 0)
                return r;
        if (stat(dir, &m) == 0 && stat(dev, &d) == 0 && S_ISBLK(d.st_mode) && m.st_dev == d.st_rdev)
                return 0; /* a snapshot of a VM: already there */
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = ioctl(fd, BLKFLSBUF, 0) < 0 ? -errno : 0; /* blocks the template read are not this disk's */
        close(fd);
        if (r == 0 && label && (r = vdisk_has_label(dev, label)) <= 0)
                return r; /* no workspace on it: /root/repo stays the work disk's */
        mkdir(dir, 0755);
        if (r >= 0 && mount(dev, dir, "ext4", MS_NOATIME, NULL) < 0)
                r = -errno;
        return r < 0 ? r : 0;
}

/* argv, its stdio on /dev/null; waited for unless background (an orphan
 * once we exit: PID 1 reaps it). */
static int run(char *const argv[], bool background) {
        pid_t pid = fork();
        int st;
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul >= 0) {
                        dup2(nul, 0);
                        dup2(nul, 1);
                        dup2(nul, 2);
                }
                setsid();
                execv(argv[0], argv);
                _exit(127);
        }
        if (background)
                return 0;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool pid1_is_systemd(void) {
        char comm[32] = "";
        int fd = open("/proc/1/comm", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, comm, sizeof(comm) - 1);
        close(fd);
        return n > 0 && strncmp(comm, "systemd", 7) == 0;
}

/* The pid of a running sshd listener (its pid file), or 0. */
static pid_t sshd_pid(void) {
        char buf[32] = "", comm[32] = "", path[64];
        int fd = open("/run/sshd.pid", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid <= 1)
                return 0;
        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                return 0;
        n = read(fd, comm, sizeof(comm) - 1);
        close(fd);
        return n > 0 && strncmp(comm, "sshd", 4) == 0 ? (pid_t) pid : 0;
}

/* The generation in GUEST_INIT_SSHD_FILE; -ENOENT: PID 1 is not banger-init
 * in fast mode. */
static int fast_init_sshd_gen(unsigned long *ret) {
        char buf[48] = "";
        int fd = open(GUEST_INIT_SSHD_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        char *end;
        errno = 0;
        *ret = n > 0 ? strtoul(buf, &end, 10) : 0;
        return n > 0 && errno == 0 && end != buf && *end == ' ' ? 0 : -EBADMSG;
}

/* banger-init restarts its sshd (SIGUSR1); back when the old listener is
 * gone and the new one started (the host asks the agent when it listens). */
static int fast_init_restart_sshd(unsigned long gen) {
        if (kill(1, SIGUSR1) < 0)
                return -errno;
        for (int i = 0; i < 600; i++) { /* up to 6 s: init kills a listener that takes 3 s */
                unsigned long now;
                if (fast_init_sshd_gen(&now) == 0 && now != gen)
                        return 0;
                usleep(10000);
        }
        return -ETIMEDOUT;
}

/* sshd with the VM's host key: systemd restarts its unit (in a child we do
 * not wait for); banger-init in fast mode, the one owner of its sshd,
 * restarts it (a listener of the template still starting at the pause, or
 * failed for want of a key, is replaced, never raced by a second one);
 * under another init a running listener re-executes itself on SIGHUP (new
 * keys), or one is started (it daemonizes; PID 1 reaps it). */
static int sshd_refresh(void) {
        unsigned long gen;
        if (access("/usr/sbin/sshd", X_OK) < 0)
                return 0; /* no sshd in this image */
        if (pid1_is_systemd()) { /* two systemctl calls take seconds under TCG: not waited for */
                pid_t pid = fork();
                if (pid < 0)
                        return -errno;
                if (pid > 0)
                        return 0;
                setsid();
                char *reset[] = { (char *) "/bin/systemctl", (char *) "reset-failed", (char *) "ssh.service", NULL };
                char *restart[] = { (char *) "/bin/systemctl", (char *) "restart", (char *) "--no-block",
                                    (char *) "ssh.service", NULL };
                (void) run(reset, false);
                _exit(run(restart, false) < 0 ? 1 : 0);
        }
        if (fast_init_sshd_gen(&gen) == 0)
                return fast_init_restart_sshd(gen);
        pid_t pid = sshd_pid();
        if (pid > 0)
                return kill(pid, SIGHUP) < 0 ? -errno : 0;
        mkdir("/run/sshd", 0755);
        char *start[] = { (char *) "/usr/sbin/sshd", NULL };
        return run(start, true); /* the host asks the agent when it listens */
}

static int parse_opts(int argc, char **argv, struct id_opts *o) {
        static const struct option longs[] = {
                { "identify", no_argument, NULL, 'I' }, { "time", required_argument, NULL, 't' },
                { "hostname", required_argument, NULL, 'h' }, { "iface", required_argument, NULL, 'i' },
                { "mac", required_argument, NULL, 'm' }, { "ip", required_argument, NULL, 'a' },
                { "gw", required_argument, NULL, 'g' }, { "old-ip", required_argument, NULL, 'o' },
                { "work", required_argument, NULL, 'w' }, { "repo", required_argument, NULL, 'r' },
                { "sshd", no_argument, NULL, 's' },
                { 0 },
        };
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
                switch (c) {
                case 'I': break;
                case 't': o->time = optarg; break;
                case 'h': o->hostname = optarg; break;
                case 'i': o->iface = optarg; break;
                case 'm': o->mac = optarg; break;
                case 'a': o->ip = optarg; break;
                case 'g': o->gw = optarg; break;
                case 'o': o->old_ip = optarg; break;
                case 'w': o->work = optarg; break;
                case 'r': o->repo = optarg; break;
                case 's': o->sshd = true; break;
                default: return -EINVAL;
                }
        }
        return optind == argc && (!o->ip || (o->iface && o->mac)) ? 0 : -EINVAL;
}

static int network(const struct id_opts *o) {
        int r = 0;
        if (o->old_ip && strcmp(o->old_ip, o->ip) != 0 && (r = guestnet_del_addr(o->iface, o->old_ip)) < 0)
                return fail("removing the old address", r);
        if ((r = guestnet_set_mac(o->iface, o->mac)) < 0)
                return fail("setting the MAC address", r);
        if ((r = guestnet_up(o->iface, o->ip, o->gw)) < 0)
                return fail("configuring the network", r);
        return 0;
}

int agent_identify_main(int argc, char **argv) {
        struct id_opts o = { 0 };
        char *in = NULL;
        size_t len = 0;
        int r;
        if (parse_opts(argc, argv, &o) < 0)
                return fail("usage: banger-agent --identify [--time S.N] [--hostname H] [--iface I --mac M --ip CIDR "
                            "[--gw G] [--old-ip CIDR]] [--work SERIAL [--repo SERIAL]] [--sshd] <records", EINVAL);
        if ((r = read_all(STDIN_FILENO, &in, &len)) < 0)
                return fail("reading stdin", r);
        if (records(in, len, CHECK) != 0 || records(in, len, ENTROPY) != 0)
                r = 1; /* all checked before anything is applied; fresh randomness first */
        else if (o.time && (r = set_time(o.time)) < 0)
                r = fail("setting the clock", r);
        else if (o.work && (r = mount_disk(o.work, "/root", NULL)) < 0)
                r = fail("mounting the work disk on /root", r);
        else if (o.work && o.repo && (r = mount_disk(o.repo, VDISK_REPO_MOUNT, VDISK_REPO_LABEL)) < 0)
                r = fail("mounting the repo disk on " VDISK_REPO_MOUNT, r);
        else if ((r = records(in, len, FILES)) != 0)
                ;
        else if (o.hostname && sethostname(o.hostname, strlen(o.hostname)) < 0)
                r = fail("setting the hostname", errno);
        else if (o.ip && (r = network(&o)) != 0)
                ;
        else if (o.sshd && (r = sshd_refresh()) < 0)
                r = fail("restarting sshd", r);
        free(in);
        return r == 0 ? 0 : 1;
}
