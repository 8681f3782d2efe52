/* SPDX-License-Identifier: MIT */
/*
 * bangerd: the banger daemon.
 *   bangerd [-d|--foreground] [--log-level L] [--ready-fd N]
 *   bangerd --system [--install FILE] [-d] [--log-level L]
 *   bangerd --check-migrations [--system [--install FILE]] [--json]
 *                                          exit 0 up to date, 1 pending, 2 newer/unreadable
 *   bangerd --version
 * (and, started by mmdebstrap as an unshare build's customize hook, that
 * hook: priv.h)
 *
 * --system: the daemon of a system install (/etc/banger/install.toml). Run
 * as root it makes its directories the owner's and becomes the owner
 * (groups included) before anything else; run as the owner it just starts.
 * What needs root goes through the root helper.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "fsutil.h"
#include "install.h"
#include "jsonx.h"
#include "layout.h"
#include "log.h"
#include "macro.h"
#include "parse.h"
#include "store/store.h"
#include "strbuf.h"
#include "version.h"

static const char *env_get(const char *n) {
        return getenv(n);
}

static int check_migrations(const struct install_info *install, bool json) {
        struct layout l;
        struct store_schema_info info;
        _cleanup_free_ char *err = NULL;
        int code;

        if (install)
                install_layout(install, &l);
        else if (layout_resolve(&l, env_get, getuid(), &err) < 0) {
                fprintf(stderr, "bangerd: %s\n", err);
                return 2;
        }
        store_inspect(l.db_path, &info);
        switch (info.state) {
        case STORE_SCHEMA_UP_TO_DATE:
                code = 0;
                break;
        case STORE_SCHEMA_MISSING:
        case STORE_SCHEMA_PENDING:
                code = 1;
                break;
        default:
                code = 2;
        }
        if (json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:i}", "db", l.db_path, "state",
                                                     store_schema_state_to_string(info.state), "latest_applied",
                                                     info.latest_applied, "latest_known", info.latest_known,
                                                     "pending", info.pending, "detail", info.detail, "exit", code);
                _cleanup_free_ char *s = json_dump_compact(j);
                puts(s);
        } else
                printf("%s: %s (%s)\n", l.db_path, store_schema_state_to_string(info.state), info.detail);
        store_schema_info_done(&info);
        layout_done(&l);
        return code;
}

static int load_install(const char *file, struct install_info *ret) {
        _cleanup_free_ char *text = NULL, *msg = NULL;
        size_t len;
        int r = read_file_nofollow(file, 64 * 1024, &text, &len);
        if (r < 0) {
                fprintf(stderr, "bangerd: %s: %s%s\n", file, strerror(-r),
                        r == -ENOENT ? " (banger is not installed system-wide: sudo banger system install)" : "");
                return r;
        }
        if ((r = install_parse(text, len, ret, &msg)) < 0)
                fprintf(stderr, "bangerd: %s: %s\n", file, msg);
        return r;
}

/* A directory of the owner's, 0700 (made when missing). */
static int own_dir(const char *path, const struct install_info *i) {
        struct stat st;
        _cleanup_free_ char *parent = xstrdup(path);
        *strrchr(parent, '/') = '\0';
        /* parents the owner can pass through; the directory itself private */
        if ((parent[0] && mkdir_p(parent, 0755) < 0) || (mkdir(path, 0700) < 0 && errno != EEXIST) ||
            lstat(path, &st) < 0) {
                fprintf(stderr, "bangerd: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode) || lchown(path, i->owner_uid, i->owner_gid) < 0 || chmod(path, 0700) < 0) {
                fprintf(stderr, "bangerd: %s: not a directory the owner can have\n", path);
                return -ENOTDIR;
        }
        return 0;
}

/* As root: the owner's directories, then the owner's identity for good.
 * As the owner: nothing to do. Anyone else: no. */
static int become_owner(const struct install_info *i) {
        if (geteuid() != 0) {
                if (getuid() == i->owner_uid)
                        return 0;
                fprintf(stderr, "bangerd: this install belongs to %s; run bangerd --system as root or as %s\n",
                        i->owner_user, i->owner_user);
                return -EPERM;
        }
        int r;
        if ((r = own_dir(i->state_dir, i)) < 0 || (r = own_dir(i->cache_dir, i)) < 0 ||
            (r = own_dir(i->runtime_dir, i)) < 0)
                return r;
        if (initgroups(i->owner_user, i->owner_gid) < 0 || setgid(i->owner_gid) < 0 || setuid(i->owner_uid) < 0) {
                fprintf(stderr, "bangerd: cannot become %s: %s\n", i->owner_user, strerror(errno));
                return -errno;
        }
        if (setuid(0) == 0) { /* must be impossible now */
                fprintf(stderr, "bangerd: still root after dropping to %s\n", i->owner_user);
                return -EPERM;
        }
        return 0;
}

/* The environment of a system daemon: its owner's, and a fixed PATH. */
static void system_env(const struct install_info *i) {
        setenv("HOME", i->owner_home, 1);
        setenv("USER", i->owner_user, 1);
        setenv("LOGNAME", i->owner_user, 1);
        _cleanup_free_ char *path = xasprintf("%s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                              i->prefix);
        setenv("PATH", path, 1);
        unsetenv("XDG_RUNTIME_DIR");
        unsetenv("XDG_STATE_HOME");
        unsetenv("XDG_CACHE_HOME");
        unsetenv("XDG_CONFIG_HOME");
}

static void notify_ready(int fd, const char *err) {
        if (fd < 0)
                return;
        _cleanup_free_ char *msg = err ? xasprintf("ERROR %s\n", err) : xstrdup("READY\n");
        if (write(fd, msg, strlen(msg)) < 0) {
                /* the CLI went away; nothing to tell */
        }
        close(fd);
}

static void usage(FILE *f) {
        fputs("usage: bangerd [-d|--foreground] [--log-level LEVEL] [--ready-fd FD]\n"
              "       bangerd --system [--install FILE] [-d] [--log-level LEVEL] [--ready-fd FD]\n"
              "       bangerd --check-migrations [--system [--install FILE]] [--json]\n"
              "       bangerd --version\n",
              f);
}

struct args {
        struct daemon_options opts;
        bool check, json, system_mode;
        const char *install_file;
};

/* -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct args *a) {
        static const struct option longopts[] = {
                { "foreground", no_argument, NULL, 'd' },       { "log-level", required_argument, NULL, 'l' },
                { "ready-fd", required_argument, NULL, 'r' },   { "check-migrations", no_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },             { "version", no_argument, NULL, 'V' },
                { "system", no_argument, NULL, 's' },           { "install", required_argument, NULL, 'i' },
                { "help", no_argument, NULL, 'h' },             {},
        };
        int c;
        int64_t fd;
        while ((c = getopt_long(argc, argv, "dh", longopts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        a->opts.foreground = true;
                        break;
                case 'l':
                        if (log_level_from_string(optarg) < 0)
                                return fprintf(stderr, "bangerd: invalid log level '%s'\n", optarg), 2;
                        a->opts.log_level = optarg;
                        break;
                case 'r':
                        if (parse_int_range(optarg, 3, 1024, &fd) < 0)
                                return fprintf(stderr, "bangerd: invalid --ready-fd '%s'\n", optarg), 2;
                        a->opts.ready_fd = (int) fd;
                        break;
                case 'c':
                        a->check = true;
                        break;
                case 'i':
                        a->install_file = optarg;
                        a->system_mode = true;
                        break;
                case 's':
                        a->system_mode = true;
                        break;
                case 'j':
                        a->json = true;
                        break;
                case 'V':
                        printf("bangerd v%s (commit %s, built %s)\n", banger_version(), banger_commit(),
                               banger_built_at());
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "bangerd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        return -1;
}

static int run(const struct daemon_options *opts) {
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        struct daemon *d = NULL;
        if (chdir("/") < 0) {
                /* not fatal */
        }
        umask(0077); /* everything bangerd makes is its user's alone (keys, disks, sockets) */
        int r = daemon_open(opts, &d, &err);
        if (r < 0) {
                if (!op_error_is_set(&err))
                        err.err = r;
                fprintf(stderr, "bangerd: %s\n", op_error_message(&err));
                notify_ready(opts->ready_fd, op_error_message(&err));
                return 1;
        }
        notify_ready(opts->ready_fd, NULL);
        r = daemon_serve(d);
        daemon_close(d);
        return r < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
        struct args a = { .opts = { .ready_fd = -1 } };
        _cleanup_(install_info_done) struct install_info install = { 0 };
        if (priv_is_build_hook()) /* a copy of us inside an unshare build (priv.h) */
                return priv_build_hook_main(argc, argv);
        int r = parse_args(argc, argv, &a);
        if (r >= 0)
                return r;
        if (a.system_mode) {
                if (load_install(a.install_file ? a.install_file : install_file_path(env_get), &install) < 0)
                        return 2;
                a.opts.install = &install;
        }
        if (a.check)
                return check_migrations(a.opts.install, a.json);
        if (a.opts.install) {
                if (become_owner(&install) < 0)
                        return 1;
                system_env(&install);
        }
        return run(&a.opts);
}
