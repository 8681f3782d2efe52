/* SPDX-License-Identifier: MIT */
/*
 * QEMU's agent transport: which boot gets which (agent_transport.c), the
 * guest CID allocator, vsock agent addresses, the CID on a QEMU command
 * line (reconcile), the AF_VSOCK connect through its seam (this kernel has
 * no vsock loopback: a connect to VMADDR_CID_LOCAL times out), and the
 * host's device check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostinfo.h"
#include "jsonx.h"
#include "macro.h"
#include "vm/agent_client.h"
#include "vm/agent_transport.h"
#include "vm/vms_internal.h"

static int decide(const char *config, bool device, enum vm_boot_kind kind, enum agent_transport saved,
                  enum agent_transport *ret) {
        _cleanup_free_ char *why = NULL;
        struct agent_transport_ask q = { .config = config, .device = device, .device_why = "no /dev/vhost-vsock",
                                         .kind = kind, .saved = saved };
        int rc = agent_transport_decide(&q, ret, &why);
        assert_true(rc == 0 ? why == NULL : why != NULL);
        if (rc < 0)
                assert_non_null(strstr(why, "no /dev/vhost-vsock"));
        return rc;
}

/* device present/absent x config x cold/template/warm/restore-or-fork */
static void test_decide(void **state) {
        const enum agent_transport S = AGENT_TRANSPORT_VIRTIO_SERIAL, V = AGENT_TRANSPORT_VSOCK;
        const char *configs[] = { "auto", "virtio-serial", "vsock" };
        enum agent_transport t;
        (void) state;
        for (size_t c = 0; c < ELEMENTSOF(configs); c++)
                for (int dev = 0; dev < 2; dev++) {
                        const char *cf = configs[c];
                        /* cold: the config, "auto" following the device */
                        int rc = decide(cf, dev, VM_BOOT_COLD, S, &t);
                        if (strcmp(cf, "vsock") == 0 && !dev)
                                assert_int_equal(rc, -EOPNOTSUPP);
                        else {
                                assert_int_equal(rc, 0);
                                assert_int_equal(t, strcmp(cf, "virtio-serial") == 0 ? S : dev ? V : S);
                        }
                        /* a template and its warm VMs: always the port */
                        assert_int_equal(decide(cf, dev, VM_BOOT_TEMPLATE, V, &t), 0);
                        assert_int_equal(t, S);
                        assert_int_equal(decide(cf, dev, VM_BOOT_WARM, V, &t), 0);
                        assert_int_equal(t, S);
                        /* a snapshot's state (restore, fork): what it was saved with, whatever the config */
                        assert_int_equal(decide(cf, dev, VM_BOOT_STATE, S, &t), 0);
                        assert_int_equal(t, S);
                        rc = decide(cf, dev, VM_BOOT_STATE, V, &t);
                        assert_int_equal(rc, dev ? 0 : -EOPNOTSUPP);
                        if (dev)
                                assert_int_equal(t, V);
                }
        assert_int_equal(decide(NULL, true, VM_BOOT_COLD, S, &t), 0); /* no config: auto */
        assert_int_equal(t, V);
        assert_true(agent_transport_warm_ok("auto") && agent_transport_warm_ok("virtio-serial"));
        assert_false(agent_transport_warm_ok("vsock"));
        assert_int_equal(agent_transport_from_string("vsock", &t), 0);
        assert_int_equal(t, V);
        assert_int_equal(agent_transport_from_string("virtio-serial", &t), 0);
        assert_int_equal(t, S);
        assert_int_equal(agent_transport_from_string("auto", &t), -EINVAL);
        assert_string_equal(agent_transport_to_string(V), "vsock");
}

static void test_cid_pick(void **state) {
        (void) state;
        assert_int_equal(vsock_cid_pick(NULL, 0, 0), 3);
        assert_int_equal(vsock_cid_pick(NULL, 0, 10), 10);
        unsigned used[] = { 3, 4, 6 };
        assert_int_equal(vsock_cid_pick(used, 3, 0), 5);
        assert_int_equal(vsock_cid_pick(used, 3, 6), 7);  /* EADDRINUSE at 5: the next one up */
        unsigned dense[] = { 5, 3, 4 };
        assert_int_equal(vsock_cid_pick(dense, 3, 3), 6);
        unsigned top[] = { AGENT_VSOCK_CID_MAX };
        assert_int_equal(vsock_cid_pick(top, 1, AGENT_VSOCK_CID_MAX), 0); /* none left */
        assert_int_equal(vsock_cid_pick(NULL, 0, AGENT_VSOCK_CID_MAX), AGENT_VSOCK_CID_MAX);
}

static void test_addr(void **state) {
        unsigned cid = 0;
        (void) state;
        _cleanup_free_ char *a = agent_addr_vsock_new(42, "0123abcd");
        assert_string_equal(a, "vsock:42/0123abcd");
        assert_true(agent_addr_vsock(a, &cid));
        assert_int_equal(cid, 42);
        assert_true(agent_addr_vsock("vsock:3", &cid) && cid == 3);
        const char *bad[] = { "vsock:2/x", "vsock:", "vsock:-3", "vsock:3x", "vsock:4294967295", "vsock:99999999999",
                              "/run/banger/vms/x/agent.sock", "vsock: 3", NULL };
        for (const char **b = bad; *b; b++)
                assert_false(agent_addr_vsock(*b, &cid));
        int fd = -1;
        assert_int_equal(agent_socket_connect("vsock:2/x", &fd), -EINVAL); /* never a path relative to the cwd */
        assert_int_equal(fd, -1);
}

static void test_cmdline_cid(void **state) {
        (void) state;
        static const char with[] = "qemu\0-device\0virtio-rng-device\0-device\0vhost-vsock-device,guest-cid=17\0-m\0"
                                   "512";
        static const char without[] = "qemu\0-device\0virtio-serial-device\0-chardev\0socket,id=agent,path=/x";
        static const char odd[] = "qemu\0-device\0vhost-vsock-device,guest-cid=17,x=1";
        assert_int_equal(vms_vsock_cid_of_cmdline(with, sizeof(with)), 17);
        assert_int_equal(vms_vsock_cid_of_cmdline(without, sizeof(without)), 0);
        assert_int_equal(vms_vsock_cid_of_cmdline(odd, sizeof(odd)), 0);
}

/* ---- the connect, through the seam ------------------------------------------ */

static int fails_left;
static int fail_with;
static unsigned seen_cid, seen_port;
static pthread_t agent_thread;

/* One request line, one answer with its id. */
static void *fake_agent(void *arg) {
        int fd = (int) (intptr_t) arg;
        char buf[4096];
        size_t got = 0;
        while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
                ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);
                if (k <= 0)
                        break;
                got += (size_t) k;
        }
        buf[got] = '\0';
        json_t *req = json_loads(buf, 0, NULL);
        char *ans = xasprintf("{\"v\":1,\"id\":%lld,\"result\":{\"ok\":true,\"method\":\"%s\"}}\n",
                              (long long) json_integer_value(json_object_get(req, "id")),
                              json_string_value(json_object_get(req, "method")));
        json_decref(req);
        assert_true(write(fd, ans, strlen(ans)) == (ssize_t) strlen(ans));
        free(ans);
        char c;
        while (read(fd, &c, 1) > 0) /* until the host closes */
                ;
        close(fd);
        return NULL;
}

static int fake_connect(unsigned cid, unsigned port, int *ret_fd) {
        seen_cid = cid;
        seen_port = port;
        if (fails_left > 0) {
                fails_left--;
                return -fail_with;
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                return -errno;
        /* the host's end non-blocking as vsock_connect_real leaves it; the agent's blocks (its
         * reads must wait for the request, not give up on EAGAIN) */
        assert_int_equal(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) & ~O_NONBLOCK), 0);
        assert_int_equal(pthread_create(&agent_thread, NULL, fake_agent, (void *) (intptr_t) sv[1]), 0);
        *ret_fd = sv[0];
        return 0;
}

static void call_through(int fail_errno, int fails) {
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        fails_left = fails;
        fail_with = fail_errno;
        assert_int_equal(agent_call("vsock:9/0123abcd", "health", 5000, NULL, &res, &e), 0);
        assert_true(json_is_true(json_object_get(res, "ok")));
        assert_string_equal(json_string_value(json_object_get(res, "method")), "health");
        assert_int_equal(seen_cid, 9);
        assert_int_equal(seen_port, AGENT_VSOCK_PORT);
        assert_int_equal(fails_left, 0);
        json_decref(res);
        pthread_join(agent_thread, NULL);
}

static void test_connect_seam(void **state) {
        (void) state;
        agent_set_vsock_connect(fake_connect);
        call_through(0, 0);
        /* "not yet up", retried like a missing or refusing socket */
        call_through(ECONNREFUSED, 2);
        call_through(ECONNRESET, 1);
        call_through(ETIMEDOUT, 1);
        call_through(ENODEV, 2);
        /* anything else ends the call at once */
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        fails_left = 1000;
        fail_with = EACCES;
        assert_int_equal(agent_call("vsock:9/0123abcd", "health", 5000, NULL, &res, &e), -EACCES);
        assert_true(fails_left == 999);
        assert_non_null(strstr(op_error_message(&e), "vsock:9"));
        op_error_done(&e);
        fails_left = 0;
        agent_set_vsock_connect(NULL);
        assert_int_equal(agent_vsock_errno(-ECONNRESET), -ECONNREFUSED);
        assert_int_equal(agent_vsock_errno(-ENODEV), -ENOENT);
        assert_int_equal(agent_vsock_errno(-EPERM), -EPERM);
}

static void test_device_check(void **state) {
        char *why = NULL;
        (void) state;
        assert_false(hostinfo_vhost_vsock_at("/nonexistent/vhost-vsock", &why));
        assert_string_equal(why, "no /nonexistent/vhost-vsock");
        free(why);
        assert_false(hostinfo_vhost_vsock_at("/etc/hostname", &why));
        assert_non_null(strstr(why, "not a character device"));
        free(why);
        assert_true(hostinfo_vhost_vsock_at("/dev/null", &why)); /* a character device that opens read-write */
        assert_null(why);
        /* this machine: whatever it has, the answer and the reason agree */
        bool ok = hostinfo_vhost_vsock(&why);
        assert_true(ok ? why == NULL : why != NULL);
        free(why);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decide),        cmocka_unit_test(test_cid_pick),
                cmocka_unit_test(test_addr),          cmocka_unit_test(test_cmdline_cid),
                cmocka_unit_test(test_connect_seam),  cmocka_unit_test(test_device_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
