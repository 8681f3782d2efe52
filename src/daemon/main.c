/* SPDX-License-Identifier: MIT */
/*
 * bangerd: the banger daemon.
 *   bangerd [-d|--foreground] [--log-level L] [--ready-fd N]
 *   bangerd --check-migrations [--json]   exit 0 up to date, 1 pending, 2 newer/unreadable
 *   bangerd --version
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
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

static int check_migrations(bool json) {
        struct layout l;
        struct store_schema_info info;
        _cleanup_free_ char *err = NULL;
        int code;

        if (layout_resolve(&l, env_get, getuid(), &err) < 0) {
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
              "       bangerd --check-migrations [--json]\n"
              "       bangerd --version\n",
              f);
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "foreground", no_argument, NULL, 'd' },
                { "log-level", required_argument, NULL, 'l' },
                { "ready-fd", required_argument, NULL, 'r' },
                { "check-migrations", no_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct daemon_options opts = { .ready_fd = -1 };
        bool check = false, json = false;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        struct daemon *d = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "dh", longopts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        opts.foreground = true;
                        break;
                case 'l':
                        if (log_level_from_string(optarg) < 0) {
                                fprintf(stderr, "bangerd: invalid log level '%s'\n", optarg);
                                return 2;
                        }
                        opts.log_level = optarg;
                        break;
                case 'r': {
                        int64_t fd;
                        if (parse_int_range(optarg, 3, 1024, &fd) < 0) {
                                fprintf(stderr, "bangerd: invalid --ready-fd '%s'\n", optarg);
                                return 2;
                        }
                        opts.ready_fd = (int) fd;
                        break;
                }
                case 'c':
                        check = true;
                        break;
                case 'j':
                        json = true;
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
        if (check)
                return check_migrations(json);

        if (chdir("/") < 0) {
                /* not fatal */
        }
        r = daemon_open(&opts, &d, &err);
        if (r < 0) {
                if (!op_error_is_set(&err))
                        err.err = r;
                fprintf(stderr, "bangerd: %s\n", op_error_message(&err));
                notify_ready(opts.ready_fd, op_error_message(&err));
                return 1;
        }
        notify_ready(opts.ready_fd, NULL);
        r = daemon_serve(d);
        daemon_close(d);
        return r < 0 ? 1 : 0;
}
