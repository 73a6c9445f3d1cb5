/*
 * WholeCare RPC client for C (provider systems).
 *
 * Speaks the protocol in docs/rpc-protocol.md: a hello frame, then unary calls as
 * length-prefixed wholecare.rpc.v1.Frame messages. Request and response payloads are
 * serialized protobuf messages (use the protoc-c generated code for the service).
 * One connection, one call at a time per wc_conn; not thread-safe.
 */
#ifndef WHOLECARE_RPC_H
#define WHOLECARE_RPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* gRPC status codes, same numbers and meanings. */
enum wc_status {
    WC_OK = 0, WC_CANCELLED = 1, WC_UNKNOWN = 2, WC_INVALID_ARGUMENT = 3, WC_DEADLINE_EXCEEDED = 4,
    WC_NOT_FOUND = 5, WC_ALREADY_EXISTS = 6, WC_PERMISSION_DENIED = 7, WC_RESOURCE_EXHAUSTED = 8,
    WC_FAILED_PRECONDITION = 9, WC_ABORTED = 10, WC_OUT_OF_RANGE = 11, WC_UNIMPLEMENTED = 12,
    WC_INTERNAL = 13, WC_UNAVAILABLE = 14, WC_DATA_LOSS = 15, WC_UNAUTHENTICATED = 16
};

typedef struct wc_conn wc_conn;

typedef struct {
    const char *key;   /* ASCII; sent lower-case */
    const char *value;
} wc_metadata;

typedef struct {
    int status;            /* enum wc_status */
    char message[512];     /* the server's (or the client's) explanation; empty when OK */
    uint8_t *payload;      /* serialized response message (malloc'd; free with wc_result_free) */
    size_t payload_len;
} wc_result;

/* Connects and exchanges hellos. Returns NULL on failure with a reason in err. */
wc_conn *wc_connect(const char *host, int port, int timeout_ms, char *err, size_t err_len);

/*
 * Makes one unary call. method is "wholecare.<service>.v1.<Service>/<Method>";
 * timeout_ms > 0 sets a deadline (sent to the server and enforced here).
 * Returns the status (also in result->status). Transport failures return
 * WC_UNAVAILABLE; the connection should then be closed and reopened.
 */
int wc_call(wc_conn *conn, const char *method, const wc_metadata *metadata, size_t metadata_count,
            const uint8_t *request, size_t request_len, int timeout_ms, wc_result *result);

void wc_result_free(wc_result *result);
void wc_close(wc_conn *conn);

/* The canonical name of a status code ("INVALID_ARGUMENT"). */
const char *wc_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif
