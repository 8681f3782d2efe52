/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "jsonx.h"

static const struct config_host host = {
        .state_dir = "/s",
        .home = "/home/u",
        .ncpus = 2,
        .mem_bytes = 24ULL << 30,
        .apt_mirror = "http://mirror.example/debian",
};

static struct config *load_ok(const char *text, const struct config_host *h) {
        struct config *c = NULL;
        struct config_error e;
        if (config_load(text, text ? strlen(text) : 0, h ? h : &host, &c, &e) < 0)
                fail_msg("unexpected error line %u: %s", e.line, e.msg);
        return c;
}

static void expect_error(const char *text, unsigned line, const char *needle) {
        struct config *c = NULL;
        struct config_error e;
        if (config_load(text, strlen(text), &host, &c, &e) == 0) {
                config_free(c);
                fail_msg("expected an error for: %s", text);
        }
        assert_int_equal(e.line, line);
        if (!strstr(e.msg, needle))
                fail_msg("error '%s' does not mention '%s'", e.msg, needle);
        config_error_done(&e);
}

static void test_defaults(void **state) {
        (void) state;
        struct config *c = load_ok(NULL, NULL);
        assert_string_equal(c->log_level, "info");
        assert_string_equal(c->vmm, "auto");
        assert_string_equal(c->accel, "auto");
        assert_string_equal(c->bridge_name, "br-fc");
        assert_string_equal(c->bridge_ip, "172.16.0.1");
        assert_int_equal(c->cidr, 24);
        assert_int_equal(c->tap_pool_size, 0);
        assert_string_equal(c->default_dns, "1.1.1.1");
        assert_string_equal(c->default_image_name, "debian-bookworm");
        assert_string_equal(c->ssh_key_path, "/s/ssh/id_ed25519");
        assert_int_equal(c->stats_poll_interval_ms, 10000);
        assert_int_equal(c->auto_stop_stale_after_ms, 0);
        assert_string_equal(c->debian_mirror, "http://mirror.example/debian");
        assert_int_equal(c->prov[CONFIG_DEBIAN_MIRROR].source, CONFIG_SOURCE_HOST);
        /* 2 cpus: heuristic 0 loses to the floor; 24 GiB / 8 = 3 GiB wins */
        assert_int_equal(c->vcpu, 2);
        assert_int_equal(c->prov[CONFIG_VCPU].source, CONFIG_SOURCE_BUILTIN);
        assert_int_equal(c->memory_mib, 3072);
        assert_int_equal(c->prov[CONFIG_MEMORY_MIB].source, CONFIG_SOURCE_AUTO);
        assert_int_equal(c->disk_size_bytes, 8ULL << 30);
        assert_int_equal(c->prov[CONFIG_DISK_SIZE].source, CONFIG_SOURCE_BUILTIN);
        assert_null(c->warnings);
        config_free(c);
}

static void test_heuristic_caps(void **state) {
        (void) state;
        struct config_host big = host;
        big.ncpus = 64;
        big.mem_bytes = 512ULL << 30;
        big.apt_mirror = NULL;
        struct config *c = load_ok(NULL, &big);
        assert_int_equal(c->vcpu, 4);
        assert_int_equal(c->prov[CONFIG_VCPU].source, CONFIG_SOURCE_AUTO);
        assert_int_equal(c->memory_mib, 8192);
        assert_string_equal(c->debian_mirror, CONFIG_FALLBACK_MIRROR);
        assert_int_equal(c->prov[CONFIG_DEBIAN_MIRROR].source, CONFIG_SOURCE_BUILTIN);
        config_free(c);
}

static void test_file_values(void **state) {
        (void) state;
        struct config *c = load_ok("log_level = \"debug\"\n"
                                   "cidr = 16\n"
                                   "bridge_name = \"br-fc-test\"\n"
                                   "ssh_key_path = \"~/.ssh/id_ed25519\"\n"
                                   "stats_poll_interval = \"1m\"\n"
                                   "auto_stop_stale_after = 3600\n"
                                   "[vm_defaults]\n"
                                   "vcpu = 3\n"
                                   "memory_mib = \"4G\"\n"
                                   "disk_size = 16384\n"
                                   "system_overlay_size = \"10GiB\"\n",
                                   NULL);
        assert_string_equal(c->log_level, "debug");
        assert_int_equal(c->prov[CONFIG_LOG_LEVEL].source, CONFIG_SOURCE_FILE);
        assert_int_equal(c->prov[CONFIG_LOG_LEVEL].line, 1);
        assert_int_equal(c->cidr, 16);
        assert_string_equal(c->bridge_name, "br-fc-test");
        assert_string_equal(c->ssh_key_path, "/home/u/.ssh/id_ed25519");
        assert_int_equal(c->stats_poll_interval_ms, 60000);
        assert_int_equal(c->auto_stop_stale_after_ms, 3600000);
        assert_int_equal(c->vcpu, 3);
        assert_int_equal(c->prov[CONFIG_VCPU].source, CONFIG_SOURCE_FILE);
        assert_int_equal(c->prov[CONFIG_VCPU].line, 8);
        assert_int_equal(c->memory_mib, 4096);
        assert_int_equal(c->disk_size_bytes, 16ULL << 30);
        assert_int_equal(c->system_overlay_size_bytes, 10ULL << 30);
        config_free(c);
}

static void test_unknown_keys_warn(void **state) {
        (void) state;
        struct config *c = load_ok("bogus = 1\n[vm_defaults]\ncpus = 2\n[other]\nx = 1\n", NULL);
        assert_non_null(c->warnings);
        assert_non_null(strstr(c->warnings[0], "'bogus'"));
        assert_non_null(strstr(c->warnings[1], "'vm_defaults.cpus'"));
        assert_non_null(strstr(c->warnings[2], "'other'"));
        assert_null(c->warnings[3]);
        config_free(c);
}

static void test_bad_values(void **state) {
        (void) state;
        expect_error("log_level = \"loud\"\n", 1, "log_level: must be one of error, warn, info, debug");
        expect_error("\nvmm = \"xen\"\n", 2, "vmm:");
        expect_error("accel = 1\n", 1, "accel: must be a string");
        expect_error("cidr = 31\n", 1, "cidr: must be between 8 and 30");
        expect_error("cidr = 7\n", 1, "cidr");
        expect_error("cidr = \"24\"\n", 1, "cidr: must be a integer");
        expect_error("bridge_name = \"br0\"\n", 1, "bridge_name: must be br-fc");
        expect_error("bridge_name = \"br-fc-waytoolongname\"\n", 1, "bridge_name");
        expect_error("bridge_ip = \"300.1.1.1\"\n", 1, "bridge_ip: must be an IPv4");
        expect_error("bridge_ip = \"172.16.0.0\"\n", 1, "network or broadcast");
        expect_error("default_dns = \"dns.google\"\n", 1, "default_dns");
        expect_error("tap_pool_size = 65\n", 1, "tap_pool_size");
        expect_error("default_image_name = \"Deb\"\n", 1, "default_image_name: must be a DNS label");
        expect_error("debian_mirror = \"ftp://x\"\n", 1, "debian_mirror");
        expect_error("stats_poll_interval = \"10x\"\n", 1, "stats_poll_interval: must be a duration");
        expect_error("stats_poll_interval = \"500ms\"\n", 1, "at least 1s");
        expect_error("ssh_key_path = \"relative\"\n", 1, "ssh_key_path: must be an absolute path");
        expect_error("[vm_defaults]\nvcpu = 0\n", 2, "vm_defaults.vcpu: must be between 1 and 64");
        expect_error("[vm_defaults]\ndisk_size = \"200G\"\n", 2, "vm_defaults.disk_size");
        expect_error("[vm_defaults]\nmemory_mib = \"1.5G\"\n", 2, "vm_defaults.memory_mib");
        expect_error("vm_defaults = 1\n", 1, "vm_defaults: must be a table");
        expect_error("a = [1]\n", 1, "arrays are not supported");
}

static void test_file_sync(void **state) {
        (void) state;
        struct config *c = load_ok("[[file_sync]]\nhost = \"~/.gitconfig\"\nguest = \"~/.gitconfig\"\n"
                                   "[[file_sync]]\nhost = \"/etc/x\"\nguest = \"/root/dir/x\"\nmode = \"0644\"\n",
                                   NULL);
        assert_int_equal(c->n_file_sync, 2);
        assert_string_equal(c->file_sync[0].host, "/home/u/.gitconfig");
        assert_string_equal(c->file_sync[0].guest, "/root/.gitconfig");
        assert_int_equal(c->file_sync[0].mode, 0600);
        assert_int_equal(c->file_sync[1].mode, 0644);
        config_free(c);

        expect_error("[[file_sync]]\nhost = \"/a\"\nguest = \"~/a\"\n[[file_sync]]\nhost = \"/b\"\nguest = \"/etc/b\"\n", 6,
                     "file_sync[1].guest: '/etc/b' must be under /root/");
        expect_error("[[file_sync]]\nhost = \"/a\"\n", 1, "file_sync[0]: 'guest' is required");
        expect_error("[[file_sync]]\nhost = \"/a\"\nguest = \"/root/../etc/x\"\n", 3, "file_sync[0].guest: must not contain '..'");
        expect_error("[[file_sync]]\nguest = \"/root/x\"\n", 1, "file_sync[0]: 'host' is required");
        expect_error("[[file_sync]]\nhost = \"rel\"\nguest = \"/root/x\"\n", 2, "file_sync[0].host");
        expect_error("[[file_sync]]\nhost = \"/a\"\nguest = \"/root/x\"\nmode = \"0999\"\n", 4, "file_sync[0].mode");
        expect_error("[[file_sync]]\nhost = \"/a\"\nguest = \"/root/\"\n", 3, "must be under /root/");
        expect_error("[[file_sync]]\nhost = \"/a\"\nguest = \"/root/x\"\nmode = 644\n", 4, "file_sync[0].mode: must be a string");
        expect_error("[file_sync]\nhost = \"/a\"\n", 1, "file_sync: must be an array of tables");
}

static void test_json(void **state) {
        (void) state;
        struct config *c = load_ok("cidr = 20\n", NULL);
        json_t *j = config_to_json(c);
        json_t *cidr = json_object_get(j, "cidr");
        assert_int_equal(json_integer_value(json_object_get(cidr, "value")), 20);
        assert_string_equal(json_string_value(json_object_get(cidr, "source")), "config");
        assert_int_equal(json_integer_value(json_object_get(cidr, "line")), 1);
        json_t *vd = json_object_get(j, "vm_defaults");
        assert_string_equal(json_string_value(json_object_get(json_object_get(vd, "disk_size"), "value")), "8 GiB");
        assert_string_equal(json_string_value(json_object_get(json_object_get(vd, "memory_mib"), "source")), "auto");
        assert_true(json_is_array(json_object_get(j, "warnings")));
        json_decref(j);
        config_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),         cmocka_unit_test(test_heuristic_caps),
                cmocka_unit_test(test_file_values),      cmocka_unit_test(test_unknown_keys_warn),
                cmocka_unit_test(test_bad_values),       cmocka_unit_test(test_file_sync),
                cmocka_unit_test(test_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
