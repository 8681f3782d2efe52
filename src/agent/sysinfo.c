/* SPDX-License-Identifier: MIT */
/* health and ports, read from /proc (no tools in the guest needed). */
#include "sysinfo.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#ifndef BANGER_AGENT_VERSION
#define BANGER_AGENT_VERSION "0"
#endif

struct sock {
        char proto[5];
        char addr[INET6_ADDRSTRLEN];
        unsigned port;
        unsigned long inode;
};

static int read_socks(const char *file, const char *proto, bool v6, bool tcp, struct sock **socks, size_t *n) {
        FILE *f = fopen(file, "re");
        char line[512];

        if (!f)
                return -1;
        if (!fgets(line, sizeof(line), f)) { /* header */
                fclose(f);
                return 0;
        }
        while (fgets(line, sizeof(line), f)) {
                char local[64], remote[64];
                unsigned st;
                unsigned long inode;
                if (sscanf(line, "%*d: %63s %63s %x %*s %*s %*s %*u %*u %lu", local, remote, &st, &inode) != 4)
                        continue;
                /* TCP: LISTEN (0x0A). UDP: unconnected sockets (0x07) with no remote. */
                if ((tcp && st != 0x0A) || (!tcp && (st != 0x07 || strspn(strchr(remote, ':') + 1, "0") != 4)))
                        continue;
                char *colon = strchr(local, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                struct sock s = { .port = (unsigned) strtoul(colon + 1, NULL, 16), .inode = inode };
                snprintf(s.proto, sizeof(s.proto), "%s", proto);
                /* the kernel prints each 32-bit word in host (little-endian) order */
                unsigned char a[16];
                size_t words = v6 ? 4 : 1;
                if (strlen(local) != words * 8)
                        continue;
                for (size_t w = 0; w < words; w++) {
                        char hex[9];
                        memcpy(hex, local + w * 8, 8);
                        hex[8] = '\0';
                        unsigned long x = strtoul(hex, NULL, 16);
                        memcpy(a + w * 4, &(uint32_t) { (uint32_t) x }, 4);
                }
                inet_ntop(v6 ? AF_INET6 : AF_INET, a, s.addr, sizeof(s.addr));
                struct sock *grown = realloc(*socks, (*n + 1) * sizeof(**socks));
                if (!grown)
                        break;
                *socks = grown;
                (*socks)[(*n)++] = s;
        }
        fclose(f);
        return 0;
}

/* socket inode -> owning pid, by scanning /proc/<pid>/fd. */
static pid_t owner_of(unsigned long inode) {
        DIR *proc = opendir("/proc");
        struct dirent *p;
        char want[64];
        pid_t found = 0;

        if (!proc)
                return 0;
        snprintf(want, sizeof(want), "socket:[%lu]", inode);
        while (!found && (p = readdir(proc))) {
                if (p->d_name[0] < '0' || p->d_name[0] > '9')
                        continue;
                char fdpath[300];
                snprintf(fdpath, sizeof(fdpath), "/proc/%s/fd", p->d_name);
                DIR *fds = opendir(fdpath);
                struct dirent *fd;
                while (fds && (fd = readdir(fds))) {
                        char link[600], target[64];
                        snprintf(link, sizeof(link), "%s/%s", fdpath, fd->d_name);
                        ssize_t k = readlink(link, target, sizeof(target) - 1);
                        if (k <= 0)
                                continue;
                        target[k] = '\0';
                        if (strcmp(target, want) == 0) {
                                found = (pid_t) atoi(p->d_name);
                                break;
                        }
                }
                if (fds)
                        closedir(fds);
        }
        closedir(proc);
        return found;
}

static void comm_of(pid_t pid, char *out, size_t n) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
        out[0] = '\0';
        FILE *f = pid > 0 ? fopen(path, "re") : NULL;
        if (f) {
                if (fgets(out, (int) n, f))
                        out[strcspn(out, "\n")] = '\0';
                fclose(f);
        }
}

static struct sock *all_socks(size_t *n) {
        struct sock *s = NULL;
        *n = 0;
        read_socks("/proc/net/tcp", "tcp", false, true, &s, n);
        read_socks("/proc/net/tcp6", "tcp6", true, true, &s, n);
        read_socks("/proc/net/udp", "udp", false, false, &s, n);
        read_socks("/proc/net/udp6", "udp6", true, false, &s, n);
        return s;
}

bool agent_sshd_listening(void) {
        size_t n;
        struct sock *s = all_socks(&n);
        bool yes = false;
        for (size_t i = 0; i < n; i++)
                yes |= s[i].port == 22 && strncmp(s[i].proto, "tcp", 3) == 0;
        free(s);
        return yes;
}

bool agent_ports(char *buf, size_t n, size_t *pos) {
        size_t k;
        struct sock *s = all_socks(&k);
        bool ok = json_put_raw(buf, n, pos, "{\"ports\":[");

        for (size_t i = 0; ok && i < k; i++) {
                char num[96], comm[64];
                pid_t pid = owner_of(s[i].inode);
                comm_of(pid, comm, sizeof(comm));
                snprintf(num, sizeof(num), "%s{\"proto\":", i ? "," : "");
                ok = json_put_raw(buf, n, pos, num) && json_put_string(buf, n, pos, s[i].proto) &&
                     json_put_raw(buf, n, pos, ",\"addr\":") && json_put_string(buf, n, pos, s[i].addr);
                snprintf(num, sizeof(num), ",\"port\":%u,\"pid\":%d,\"process\":", s[i].port, (int) pid);
                ok = ok && json_put_raw(buf, n, pos, num) && json_put_string(buf, n, pos, comm) &&
                     json_put_raw(buf, n, pos, "}");
        }
        free(s);
        return ok && json_put_raw(buf, n, pos, "]}");
}

bool agent_health(char *buf, size_t n, size_t *pos) {
        double up = 0, l1 = 0, l5 = 0, l15 = 0;
        char host[256] = "", tmp[256];
        FILE *f;

        if ((f = fopen("/proc/uptime", "re"))) {
                if (fscanf(f, "%lf", &up) != 1)
                        up = 0;
                fclose(f);
        }
        if ((f = fopen("/proc/loadavg", "re"))) {
                if (fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) != 3)
                        l1 = l5 = l15 = 0;
                fclose(f);
        }
        gethostname(host, sizeof(host) - 1);
        snprintf(tmp, sizeof(tmp),
                 "{\"protocol\":%d,\"version\":\"%s\",\"uptime_s\":%.2f,\"load\":[%.2f,%.2f,%.2f],\"sshd_listening\":%s,"
                 "\"sshd_installed\":%s,\"identify\":true,\"freeze\":true,\"hostname\":",
                 AGENT_PROTOCOL, BANGER_AGENT_VERSION, up, l1, l5, l15, agent_sshd_listening() ? "true" : "false",
                 access("/usr/sbin/sshd", X_OK) == 0 ? "true" : "false");
        return json_put_raw(buf, n, pos, tmp) && json_put_string(buf, n, pos, host) && json_put_raw(buf, n, pos, "}");
}

/* Guest CPU (jiffies since boot, from /proc/stat's first line) and memory
 * (/proc/meminfo); the host turns successive samples into rates. */
bool agent_stats(char *buf, size_t n, size_t *pos) {
        unsigned long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
        unsigned long long mem_total = 0, mem_avail = 0;
        char line[256], tmp[512];
        FILE *f;

        if ((f = fopen("/proc/stat", "re"))) {
                if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle, &iowait, &irq,
                           &softirq, &steal) < 4)
                        user = nice = sys = idle = 0;
                fclose(f);
        }
        if ((f = fopen("/proc/meminfo", "re"))) {
                while (fgets(line, sizeof(line), f)) {
                        if (sscanf(line, "MemTotal: %llu kB", &mem_total) == 1)
                                continue;
                        sscanf(line, "MemAvailable: %llu kB", &mem_avail);
                }
                fclose(f);
        }
        long hz = sysconf(_SC_CLK_TCK);
        snprintf(tmp, sizeof(tmp),
                 "{\"cpu\":{\"user\":%llu,\"system\":%llu,\"idle\":%llu,\"total\":%llu,\"hz\":%ld,\"ncpu\":%ld},"
                 "\"memory\":{\"total_kib\":%llu,\"available_kib\":%llu}}",
                 user + nice, sys + irq + softirq, idle + iowait,
                 user + nice + sys + idle + iowait + irq + softirq + steal, hz > 0 ? hz : 100,
                 sysconf(_SC_NPROCESSORS_ONLN), mem_total, mem_avail);
        return json_put_raw(buf, n, pos, tmp);
}
