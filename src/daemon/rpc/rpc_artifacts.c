/* SPDX-License-Identifier: MIT */
/* RPC handlers for kernel.* and image.*: decode, call the artifacts
 * subsystem, map its errors onto RPC codes. */
#include <errno.h>
#include <string.h>

#include "artifacts/artifacts.h"
#include "dispatch.h"
#include "macro.h"
#include "ops/opstate.h"
#include "rpc_methods.h"
#include "strbuf.h"

/* Long work is registered as an operation (daemon.operations.list). */
static void op_begin(struct rpc_call *call, const char *kind, const char *target) {
        opstate_begin(call->svc->ops, call->op_id, kind, target);
}

static void op_end(struct rpc_call *call, int r, const struct op_error *e) {
        opstate_finish(call->svc->ops, call->op_id, r == 0 ? OP_DONE : r == -ECANCELED ? OP_CANCELLED : OP_FAILED,
                       r == 0 ? NULL : op_error_message(e));
}

struct name_params {
        char *name;
        bool force;
        bool available;
        char *from;
        char *ref;
        char *output;
        char *rootfs, *work_seed, *kernel, *initrd, *kernel_ref, *init_mode;
        char *platform;
        char *distro, *arch, *modules;
        int64_t size;
        bool dry_run;
};

#define F(n, t, f, req) { n, t, offsetof(struct name_params, f), req, JSON_NO_PRESENT, 0, 0 }
static const struct json_field name_only[] = { F("name", JSON_FIELD_STRING, name, true) };
static const struct json_field name_force[] = { F("name", JSON_FIELD_STRING, name, true),
                                                F("force", JSON_FIELD_BOOL, force, false) };
static const struct json_field list_fields[] = { F("available", JSON_FIELD_BOOL, available, false) };
static const struct json_field pull_fields[] = {
        F("ref", JSON_FIELD_STRING, ref, true),          F("name", JSON_FIELD_STRING, name, false),
        F("kernel_ref", JSON_FIELD_STRING, kernel_ref, false), F("platform", JSON_FIELD_STRING, platform, false),
        F("size", JSON_FIELD_INT, size, false),
};
static const struct json_field prune_fields[] = { F("dry_run", JSON_FIELD_BOOL, dry_run, false) };
static const struct json_field export_fields[] = { F("name", JSON_FIELD_STRING, name, true),
                                                   F("output", JSON_FIELD_STRING, output, true) };
static const struct json_field register_fields[] = {
        F("name", JSON_FIELD_STRING, name, true),          F("rootfs", JSON_FIELD_STRING, rootfs, true),
        F("work_seed", JSON_FIELD_STRING, work_seed, false), F("kernel", JSON_FIELD_STRING, kernel, false),
        F("initrd", JSON_FIELD_STRING, initrd, false),     F("kernel_ref", JSON_FIELD_STRING, kernel_ref, false),
        F("init_mode", JSON_FIELD_STRING, init_mode, false), F("modules", JSON_FIELD_STRING, modules, false),
};
static const struct json_field import_fields[] = { F("name", JSON_FIELD_STRING, name, true),
                                                   F("from", JSON_FIELD_STRING, from, true),
                                                   F("force", JSON_FIELD_BOOL, force, false),
                                                   F("distro", JSON_FIELD_STRING, distro, false),
                                                   F("arch", JSON_FIELD_STRING, arch, false) };
#undef F

static int h_kernel_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        json_t *list = NULL;
        int r = kernel_list(call->svc->artifacts, p->available, &list, e);
        if (r < 0)
                return r;
        *ret = json_pack("{s:o}", "kernels", list);
        return 0;
}

static int h_kernel_show(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        int r = kernel_show(call->svc->artifacts, p->name, ret, e);
        return r;
}

static int h_kernel_pull(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);

        op_begin(call, "kernel.pull", p->name);
        int r = kernel_pull(call->svc->artifacts, p->name, p->force, &pr, ret, e);
        op_end(call, r, e);
        if (r == 0)
                call->svc->accel_refresh(call->svc->ud);
        return r;
}

static int h_kernel_build(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);

        op_begin(call, "kernel.build", p->name);
        int r = kernel_build(call->svc->artifacts, p->name, p->force, &pr, ret, e);
        op_end(call, r, e);
        if (r == 0)
                call->svc->accel_refresh(call->svc->ud);
        return r;
}

static int h_kernel_import(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct kernel_import_opts o = { .from = p->from, .distro = p->distro, .arch = p->arch, .force = p->force };
        int r = kernel_import(call->svc->artifacts, p->name, &o, ret, e);
        if (r == 0)
                call->svc->accel_refresh(call->svc->ud);
        return r;
}

static int h_kernel_delete(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        int r = kernel_delete(call->svc->artifacts, p->name, e);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s, s:b}", "name", p->name, "deleted", true);
        return 0;
}

static int h_image_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        json_t *list = NULL;
        int r = image_list(call->svc->artifacts, p->available, &list, e);
        if (r < 0)
                return r;
        *ret = json_pack("{s:o}", "images", list);
        return 0;
}

static int h_image_show(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        int r = image_show(call->svc->artifacts, p->name, ret, e);
        return r;
}

static int h_image_pull(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);

        if (p->size < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "size must not be negative");
        op_begin(call, "image.pull", p->name ? p->name : p->ref);
        struct oci_pull_opts o = { .name = p->name, .kernel_ref = p->kernel_ref, .platform = p->platform,
                                   .size_bytes = (uint64_t) p->size };
        int r = image_pull(call->svc->artifacts, p->ref, &o, &pr, ret, e);
        op_end(call, r, e);
        return r;
}

static int h_image_cache_prune(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        return oci_cache_prune(call->svc->artifacts, p->dry_run, ret, e);
}

static int h_image_register(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        _cleanup_json_ json_t *j = json_object();
        const char *keys[] = { "name", "rootfs", "work_seed", "kernel", "initrd", "kernel_ref", "init_mode", "modules" };
        const char *vals[] = { p->name,      p->rootfs,     p->work_seed, p->kernel,
                               p->initrd,    p->kernel_ref, p->init_mode, p->modules };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (vals[i])
                        json_object_set_new(j, keys[i], json_string(vals[i]));
        int r = image_register(call->svc->artifacts, j, ret, e);
        return r;
}

static int h_image_promote(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        op_begin(call, "image.promote", p->name);
        int r = image_promote(call->svc->artifacts, p->name, &pr, ret, e);
        op_end(call, r, e);
        return r;
}

static int h_image_delete(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        int r = image_delete(call->svc->artifacts, p->name, e);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s, s:b}", "name", p->name, "deleted", true);
        return 0;
}

static int h_image_export(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct name_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        op_begin(call, "image.export", p->name);
        int r = image_export(call->svc->artifacts, p->name, p->output, &pr, ret, e);
        op_end(call, r, e);
        return r;
}

#define M(name, h, fields) { name, h, 0, fields, ELEMENTSOF(fields), sizeof(struct name_params) }
const struct rpc_method rpc_artifact_methods[] = {
        M(RPC_METHOD_KERNEL_LIST, h_kernel_list, list_fields),
        M(RPC_METHOD_KERNEL_SHOW, h_kernel_show, name_only),
        M(RPC_METHOD_KERNEL_PULL, h_kernel_pull, name_force),
        M(RPC_METHOD_KERNEL_BUILD, h_kernel_build, name_force),
        M(RPC_METHOD_KERNEL_IMPORT, h_kernel_import, import_fields),
        M(RPC_METHOD_KERNEL_DELETE, h_kernel_delete, name_only),
        M(RPC_METHOD_IMAGE_LIST, h_image_list, list_fields),
        M(RPC_METHOD_IMAGE_SHOW, h_image_show, name_only),
        M(RPC_METHOD_IMAGE_PULL, h_image_pull, pull_fields),
        M(RPC_METHOD_IMAGE_REGISTER, h_image_register, register_fields),
        M(RPC_METHOD_IMAGE_PROMOTE, h_image_promote, name_only),
        M(RPC_METHOD_IMAGE_DELETE, h_image_delete, name_only),
        M(RPC_METHOD_IMAGE_EXPORT, h_image_export, export_fields),
        M(RPC_METHOD_IMAGE_CACHE_PRUNE, h_image_cache_prune, prune_fields),
};
#undef M
const size_t rpc_artifact_methods_n = ELEMENTSOF(rpc_artifact_methods);
