/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's API: HTTP/1.1 on its Unix socket (libcurl), JSON bodies,
 * 204 for a done PUT/PATCH, 200 with a body for a GET, 4xx/5xx with
 * {"fault_message": "..."} (../shared/reference/firecracker-api-v1.14.1.yaml).
 */
#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"
#include "vmm.h"

#define FC_API_MAX_ANSWER (1u << 20)

static size_t take(char *p, size_t size, size_t n, void *ud) {
        struct strbuf *sb = ud;
        if (sb->len + size * n > FC_API_MAX_ANSWER)
                return 0; /* libcurl stops with CURLE_WRITE_ERROR */
        strbuf_add(sb, p, size * n);
        return size * n;
}

int fc_api(const char *socket, const char *method, const char *path, json_t *body, int timeout_ms, json_t **ret,
           struct op_error *e) {
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        _cleanup_free_ char *url = xasprintf("http://localhost%s", path);
        struct strbuf answer = STRBUF_INIT;
        struct curl_slist *hdrs = NULL;
        long status = 0;
        int rc = 0;

        if (ret)
                *ret = NULL;
        CURL *c = curl_easy_init();
        if (!c)
                return op_fail(e, -ENOMEM, "curl_easy_init failed");
        hdrs = curl_slist_append(hdrs, "Accept: application/json");
        if (text)
                hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
        if (text)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
        CURLcode cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c);

        if (cc != CURLE_OK)
                rc = op_fail(e, cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO, "firecracker API %s %s: %s", method,
                             path, curl_easy_strerror(cc));
        else if (status >= 200 && status < 300) {
                if (ret && answer.len > 0 && !(*ret = json_loadb(answer.buf, answer.len, 0, NULL)))
                        rc = op_fail(e, -EPROTO, "firecracker API %s %s: the answer is not JSON", method, path);
        } else {
                _cleanup_json_ json_t *j = answer.len ? json_loadb(answer.buf, answer.len, 0, NULL) : NULL;
                const char *fault = json_string_value(json_object_get(j, "fault_message"));
                _cleanup_free_ char *said = str_defuse(xstrndup(fault ? fault : "(no fault_message)", 400), '?');
                rc = op_fail(e, status == 400 ? -EINVAL : -EIO, "firecracker refused %s %s (HTTP %ld): %s", method,
                             path, status, said);
        }
        strbuf_release(&answer);
        return rc;
}
