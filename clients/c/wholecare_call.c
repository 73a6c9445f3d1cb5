/*
 * wholecare-call: an example provider-system program on the WholeCare C client.
 *
 *   wholecare-call HOST PORT health              Health/Check
 *   wholecare-call HOST PORT methods             Health/ListMethods
 *   wholecare-call HOST PORT echo TEXT           Echo/Echo (test and benchmark servers)
 *   wholecare-call HOST PORT sleep MS            Echo/Sleep
 *
 * Options (after the command): --timeout MS, --token TOKEN (sent as "authorization:
 * Bearer TOKEN"; default $WHOLECARE_TOKEN).
 * Prints the result on stdout; on failure prints "STATUS_NAME: message" on stderr.
 * The exit status is the RPC status code (0 for OK).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wholecare_rpc.h"
#include "wholecare/health/v1/health.pb-c.h"
#include "wholecare/diagnostics/v1/echo.pb-c.h"

static int usage(void) {
    fprintf(stderr, "usage: wholecare-call HOST PORT (health|methods|echo TEXT|sleep MS) [--timeout MS] [--token TOKEN]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4) return usage();
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *command = argv[3];
    const char *argument = NULL;
    int first_option = 4;
    if (strcmp(command, "echo") == 0 || strcmp(command, "sleep") == 0) {
        if (argc < 5) return usage();
        argument = argv[4];
        first_option = 5;
    }
    int timeout_ms = 10000;
    const char *token = getenv("WHOLECARE_TOKEN");
    for (int i = first_option; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) token = argv[++i];
        else return usage();
    }

    char err[256];
    wc_conn *conn = wc_connect(host, port, 5000, err, sizeof err);
    if (!conn) {
        fprintf(stderr, "UNAVAILABLE: %s\n", err);
        return WC_UNAVAILABLE;
    }
    char bearer[4096];
    wc_metadata metadata[1];
    size_t metadata_count = 0;
    if (token && *token) {
        snprintf(bearer, sizeof bearer, "Bearer %s", token);
        metadata[0].key = "authorization";
        metadata[0].value = bearer;
        metadata_count = 1;
    }

    const char *method = NULL;
    uint8_t *request = NULL;
    size_t request_len = 0;
    if (strcmp(command, "health") == 0) {
        Wholecare__Health__V1__CheckRequest check = WHOLECARE__HEALTH__V1__CHECK_REQUEST__INIT;
        request_len = wholecare__health__v1__check_request__get_packed_size(&check);
        request = malloc(request_len + 1);
        wholecare__health__v1__check_request__pack(&check, request);
        method = "wholecare.health.v1.Health/Check";
    } else if (strcmp(command, "methods") == 0) {
        Wholecare__Health__V1__ListMethodsRequest list = WHOLECARE__HEALTH__V1__LIST_METHODS_REQUEST__INIT;
        request_len = wholecare__health__v1__list_methods_request__get_packed_size(&list);
        request = malloc(request_len + 1);
        wholecare__health__v1__list_methods_request__pack(&list, request);
        method = "wholecare.health.v1.Health/ListMethods";
    } else if (strcmp(command, "echo") == 0) {
        Wholecare__Diagnostics__V1__EchoRequest echo = WHOLECARE__DIAGNOSTICS__V1__ECHO_REQUEST__INIT;
        echo.text = (char *)argument;
        request_len = wholecare__diagnostics__v1__echo_request__get_packed_size(&echo);
        request = malloc(request_len + 1);
        wholecare__diagnostics__v1__echo_request__pack(&echo, request);
        method = "wholecare.diagnostics.v1.Echo/Echo";
    } else if (strcmp(command, "sleep") == 0) {
        Wholecare__Diagnostics__V1__SleepRequest sleep = WHOLECARE__DIAGNOSTICS__V1__SLEEP_REQUEST__INIT;
        sleep.milliseconds = (uint32_t)atoi(argument);
        request_len = wholecare__diagnostics__v1__sleep_request__get_packed_size(&sleep);
        request = malloc(request_len + 1);
        wholecare__diagnostics__v1__sleep_request__pack(&sleep, request);
        method = "wholecare.diagnostics.v1.Echo/Sleep";
    } else {
        wc_close(conn);
        return usage();
    }

    wc_result result;
    int status = wc_call(conn, method, metadata, metadata_count, request, request_len, timeout_ms, &result);
    free(request);
    if (status != WC_OK) {
        fprintf(stderr, "%s: %s\n", wc_status_name(status), result.message);
        wc_result_free(&result);
        wc_close(conn);
        return status;
    }
    if (strcmp(command, "health") == 0) {
        Wholecare__Health__V1__CheckResponse *r = wholecare__health__v1__check_response__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        printf("%s server=%s protocol=%u\n",
               r->status == WHOLECARE__HEALTH__V1__CHECK_RESPONSE__SERVING_STATUS__SERVING ? "SERVING" : "NOT_SERVING",
               r->server, r->protocol_version);
        wholecare__health__v1__check_response__free_unpacked(r, NULL);
    } else if (strcmp(command, "methods") == 0) {
        Wholecare__Health__V1__ListMethodsResponse *r = wholecare__health__v1__list_methods_response__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        for (size_t i = 0; i < r->n_methods; i++) printf("%s\n", r->methods[i]);
        wholecare__health__v1__list_methods_response__free_unpacked(r, NULL);
    } else if (strcmp(command, "echo") == 0) {
        Wholecare__Diagnostics__V1__EchoResponse *r = wholecare__diagnostics__v1__echo_response__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        printf("%s\n", r->text);
        wholecare__diagnostics__v1__echo_response__free_unpacked(r, NULL);
    } else {
        printf("slept\n");
    }
    wc_result_free(&result);
    wc_close(conn);
    return 0;
}
