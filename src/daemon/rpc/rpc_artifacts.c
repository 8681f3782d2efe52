/* SPDX-License-Identifier: MIT */
/* RPC handlers for kernel.* and image.*: decode, call the artifacts
 * subsystem, map its errors onto RPC codes. */
#include <errno.h>
#include <string.h>

#include "artifacts/artifacts.h"
#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "ops/opstate.h"
#include "rpc_methods.h"
#include "strbuf.h"

int rpc_fail_from(struct art_error *e, int r, struct rpc_failure *fail) {
        static const enum rpc_code codes[] = {
                [ART_ERR_FAILED] = RPC_OPERATION_FAILED,
                [ART_ERR_NOT_FOUND] = RPC_NOT_FOUND,
                [ART_ERR_EXISTS] = RPC_ALREADY_EXISTS,
                [ART_ERR_BAD_REQUEST] = RPC_BAD_REQUEST,
        };
        fail->code = e->kind <= ART_ERR_BAD_REQUEST ? codes[e->kind] : RPC_OPERATION_FAILED;
        fail->message = e->msg ? TAKE_PTR(e->msg) : xstrdup(strerror(-r));
        return r < 0 ? r : -EIO;
}

static void p_stage(void *ud, const char *stage, const char *detail) {
        struct rpc_call *c = ud;
        opstate_set_stage(&c->d->ops, c->op_id, stage);
        rpc_call_stage(c, stage, detail);
}

static void p_bytes(void *ud, const char *stage, uint64_t done, uint64_t total) {
        rpc_call_bytes(ud, stage, done, total);
}

static bool p_cancelled(void *ud) {
        struct rpc_call *c = ud;
        return rpc_call_cancelled(c) || opstate_cancel_requested(&c->d->ops, c->op_id);
}

void rpc_call_progress(struct rpc_call *call, struct progress *ret) {
        *ret = (struct progress) { p_stage, p_bytes, p_cancelled, call };
}

/* Long work is registered as an operation (daemon.operations.list). */
static void op_begin(struct rpc_call *call, const char *kind, const char *target) {
        opstate_begin(&call->d->ops, call->op_id, kind, target);
}

static void op_end(struct rpc_call *call, int r, const struct art_error *e) {
        opstate_finish(&call->d->ops, call->op_id, r == 0 ? OP_DONE : r == -ECANCELED ? OP_CANCELLED : OP_FAILED,
                       r == 0 ? NULL : e->msg);
}

struct name_params {
        char *name;
        bool force;
        bool available;
        char *from;
        char *ref;
        char *output;
        char *rootfs, *work_seed, *kernel, *initrd, *kernel_ref, *init_mode;
};

#define F(n, t, f, req) { n, t, offsetof(struct name_params, f), req, JSON_NO_PRESENT, 0, 0 }
static const struct json_field name_only[] = { F("name", JSON_FIELD_STRING, name, true) };
static const struct json_field name_force[] = { F("name", JSON_FIELD_STRING, name, true),
                                                F("force", JSON_FIELD_BOOL, force, false) };
static const struct json_field list_fields[] = { F("available", JSON_FIELD_BOOL, available, false) };
static const struct json_field pull_fields[] = { F("ref", JSON_FIELD_STRING, ref, true),
                                                 F("name", JSON_FIELD_STRING, name, false) };
static const struct json_field export_fields[] = { F("name", JSON_FIELD_STRING, name, true),
                                                   F("output", JSON_FIELD_STRING, output, true) };
static const struct json_field register_fields[] = {
        F("name", JSON_FIELD_STRING, name, true),          F("rootfs", JSON_FIELD_STRING, rootfs, true),
        F("work_seed", JSON_FIELD_STRING, work_seed, false), F("kernel", JSON_FIELD_STRING, kernel, false),
        F("initrd", JSON_FIELD_STRING, initrd, false),     F("kernel_ref", JSON_FIELD_STRING, kernel_ref, false),
        F("init_mode", JSON_FIELD_STRING, init_mode, false),
};
static const struct json_field import_fields[] = { F("name", JSON_FIELD_STRING, name, true),
                                                   F("from", JSON_FIELD_STRING, from, true),
                                                   F("force", JSON_FIELD_BOOL, force, false) };
#undef F

static int h_kernel_list(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        json_t *list = NULL;
        int r = kernel_list(&call->d->artifacts, p->available, &list, &e);
        if (r < 0)
                return rpc_fail_from(&e, r, fail);
        *ret = json_pack("{s:o}", "kernels", list);
        return 0;
}

static int h_kernel_show(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        int r = kernel_show(&call->d->artifacts, p->name, ret, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_kernel_pull(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        struct progress pr;
        rpc_call_progress(call, &pr);

        op_begin(call, "kernel.pull", p->name);
        int r = kernel_pull(&call->d->artifacts, p->name, p->force, &pr, ret, &e);
        op_end(call, r, &e);
        if (r == 0)
                daemon_accel_refresh(call->d);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_kernel_import(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        int r = kernel_import(&call->d->artifacts, p->name, p->from, p->force, ret, &e);
        if (r == 0)
                daemon_accel_refresh(call->d);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_kernel_delete(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        int r = kernel_delete(&call->d->artifacts, p->name, &e);
        if (r < 0)
                return rpc_fail_from(&e, r, fail);
        *ret = json_pack("{s:s, s:b}", "name", p->name, "deleted", true);
        return 0;
}

static int h_image_list(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        json_t *list = NULL;
        int r = image_list(&call->d->artifacts, p->available, &list, &e);
        if (r < 0)
                return rpc_fail_from(&e, r, fail);
        *ret = json_pack("{s:o}", "images", list);
        return 0;
}

static int h_image_show(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        int r = image_show(&call->d->artifacts, p->name, ret, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_image_pull(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        struct progress pr;
        rpc_call_progress(call, &pr);

        op_begin(call, "image.pull", p->name ? p->name : p->ref);
        int r = image_pull(&call->d->artifacts, p->ref, p->name, &pr, ret, &e);
        op_end(call, r, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_image_register(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        _cleanup_json_ json_t *j = json_object();
        const char *keys[] = { "name", "rootfs", "work_seed", "kernel", "initrd", "kernel_ref", "init_mode" };
        const char *vals[] = { p->name, p->rootfs, p->work_seed, p->kernel, p->initrd, p->kernel_ref, p->init_mode };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (vals[i])
                        json_object_set_new(j, keys[i], json_string(vals[i]));
        int r = image_register(&call->d->artifacts, j, ret, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_image_promote(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        struct progress pr;
        rpc_call_progress(call, &pr);
        op_begin(call, "image.promote", p->name);
        int r = image_promote(&call->d->artifacts, p->name, &pr, ret, &e);
        op_end(call, r, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

static int h_image_delete(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        int r = image_delete(&call->d->artifacts, p->name, &e);
        if (r < 0)
                return rpc_fail_from(&e, r, fail);
        *ret = json_pack("{s:s, s:b}", "name", p->name, "deleted", true);
        return 0;
}

static int h_image_export(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct name_params *p = params;
        struct art_error e = { 0 };
        struct progress pr;
        rpc_call_progress(call, &pr);
        op_begin(call, "image.export", p->name);
        int r = image_export(&call->d->artifacts, p->name, p->output, &pr, ret, &e);
        op_end(call, r, &e);
        return r < 0 ? rpc_fail_from(&e, r, fail) : 0;
}

#define M(name, h, fields) { name, h, 0, fields, ELEMENTSOF(fields), sizeof(struct name_params) }
const struct rpc_method rpc_artifact_methods[] = {
        M(RPC_METHOD_KERNEL_LIST, h_kernel_list, list_fields),
        M(RPC_METHOD_KERNEL_SHOW, h_kernel_show, name_only),
        M(RPC_METHOD_KERNEL_PULL, h_kernel_pull, name_force),
        M(RPC_METHOD_KERNEL_IMPORT, h_kernel_import, import_fields),
        M(RPC_METHOD_KERNEL_DELETE, h_kernel_delete, name_only),
        M(RPC_METHOD_IMAGE_LIST, h_image_list, list_fields),
        M(RPC_METHOD_IMAGE_SHOW, h_image_show, name_only),
        M(RPC_METHOD_IMAGE_PULL, h_image_pull, pull_fields),
        M(RPC_METHOD_IMAGE_REGISTER, h_image_register, register_fields),
        M(RPC_METHOD_IMAGE_PROMOTE, h_image_promote, name_only),
        M(RPC_METHOD_IMAGE_DELETE, h_image_delete, name_only),
        M(RPC_METHOD_IMAGE_EXPORT, h_image_export, export_fields),
};
#undef M
const size_t rpc_artifact_methods_n = ELEMENTSOF(rpc_artifact_methods);
