/*
 * wholecare-call: an example provider-system program on the WholeCare C client.
 *
 *   wholecare-call HOST PORT health              Health/Check
 *   wholecare-call HOST PORT methods             Health/ListMethods
 *   wholecare-call HOST PORT echo TEXT           Echo/Echo (test and benchmark servers)
 *   wholecare-call HOST PORT sleep MS            Echo/Sleep
 *   wholecare-call HOST PORT sign-in CLIENT_ID   Identity/SignInClient (secret from
 *                                                $WHOLECARE_CLIENT_SECRET); prints the access token
 *   wholecare-call HOST PORT budget BUDGET_ID    Ledger/GetBudget; prints the balances
 *   wholecare-call HOST PORT invoice BUDGET_ID   Ledger/PostInvoice with --provider ORG_ID
 *       --amount PENCE --reference REF --start YYYY-MM-DD [--end YYYY-MM-DD]
 *       [--council-rate PENCE] (the care meets eligible needs) [--daily-living PENCE]
 *       --key IDEMPOTENCY_KEY; prints the transaction
 *
 * Options (after the command): --timeout MS (the call's deadline, default 10000; 0: none),
 * --connect-timeout MS (connecting and the hello exchange, default 5000; 0: none), --token TOKEN
 * (sent as "authorization: Bearer TOKEN"; default $WHOLECARE_TOKEN).
 * Prints the result on stdout; on failure prints "STATUS_NAME: message" on stderr.
 * The exit status is the RPC status code (0 for OK).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wholecare_rpc.h"
#include "wholecare/health/v1/health.pb-c.h"
#include "wholecare/diagnostics/v1/echo.pb-c.h"
#include "wholecare/identity/v1/identity.pb-c.h"
#include "wholecare/ledger/v1/ledger.pb-c.h"

/* A non-negative whole number of milliseconds, or -1 if the text is not one. */
static int milliseconds(const char *text) {
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < 0 || value > 24L * 3600 * 1000) return -1;
    return (int)value;
}

static int usage(void) {
    fprintf(stderr, "usage: wholecare-call HOST PORT (health|methods|echo TEXT|sleep MS|sign-in CLIENT_ID|budget BUDGET_ID|"
                    "invoice BUDGET_ID --provider ORG --amount PENCE --reference REF --start DATE [--end DATE] "
                    "[--council-rate PENCE] [--daily-living PENCE] --key KEY) [--timeout MS] [--connect-timeout MS] [--token TOKEN]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4) return usage();
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *command = argv[3];
    const char *argument = NULL;
    int first_option = 4;
    if (strcmp(command, "echo") == 0 || strcmp(command, "sleep") == 0 || strcmp(command, "sign-in") == 0 ||
        strcmp(command, "budget") == 0 || strcmp(command, "invoice") == 0) {
        if (argc < 5) return usage();
        argument = argv[4];
        first_option = 5;
    }
    int timeout_ms = 10000, connect_timeout_ms = 5000;
    const char *token = getenv("WHOLECARE_TOKEN");
    const char *provider = NULL, *reference = NULL, *start = NULL, *end = NULL, *key = NULL;
    long long amount = 0, council_rate = -1, daily_living = 0;
    for (int i = first_option; i < argc; i++) {
        int has_value = i + 1 < argc;
        if (strcmp(argv[i], "--timeout") == 0 && has_value) timeout_ms = milliseconds(argv[++i]);
        else if (strcmp(argv[i], "--connect-timeout") == 0 && has_value) connect_timeout_ms = milliseconds(argv[++i]);
        else if (strcmp(argv[i], "--token") == 0 && has_value) token = argv[++i];
        else if (strcmp(argv[i], "--provider") == 0 && has_value) provider = argv[++i];
        else if (strcmp(argv[i], "--amount") == 0 && has_value) amount = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reference") == 0 && has_value) reference = argv[++i];
        else if (strcmp(argv[i], "--start") == 0 && has_value) start = argv[++i];
        else if (strcmp(argv[i], "--end") == 0 && has_value) end = argv[++i];
        else if (strcmp(argv[i], "--council-rate") == 0 && has_value) council_rate = atoll(argv[++i]);
        else if (strcmp(argv[i], "--daily-living") == 0 && has_value) daily_living = atoll(argv[++i]);
        else if (strcmp(argv[i], "--key") == 0 && has_value) key = argv[++i];
        else return usage();
    }
    if (strcmp(command, "invoice") == 0 && (!provider || !reference || !start || !key || amount <= 0)) return usage();
    if (timeout_ms < 0 || connect_timeout_ms < 0) return usage();

    char err[256];
    wc_conn *conn = wc_connect(host, port, connect_timeout_ms, err, sizeof err);
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
    } else if (strcmp(command, "sign-in") == 0) {
        Wholecare__Identity__V1__SignInClientRequest sign_in = WHOLECARE__IDENTITY__V1__SIGN_IN_CLIENT_REQUEST__INIT;
        const char *secret = getenv("WHOLECARE_CLIENT_SECRET");
        sign_in.client_id = (char *)argument;
        sign_in.client_secret = (char *)(secret ? secret : "");
        request_len = wholecare__identity__v1__sign_in_client_request__get_packed_size(&sign_in);
        request = malloc(request_len + 1);
        wholecare__identity__v1__sign_in_client_request__pack(&sign_in, request);
        method = "wholecare.identity.v1.Identity/SignInClient";
    } else if (strcmp(command, "budget") == 0) {
        Wholecare__Ledger__V1__GetBudgetRequest get = WHOLECARE__LEDGER__V1__GET_BUDGET_REQUEST__INIT;
        get.budget_id = (char *)argument;
        request_len = wholecare__ledger__v1__get_budget_request__get_packed_size(&get);
        request = malloc(request_len + 1);
        wholecare__ledger__v1__get_budget_request__pack(&get, request);
        method = "wholecare.ledger.v1.Ledger/GetBudget";
    } else if (strcmp(command, "invoice") == 0) {
        Wholecare__Ledger__V1__PostInvoiceRequest invoice = WHOLECARE__LEDGER__V1__POST_INVOICE_REQUEST__INIT;
        Wholecare__Ledger__V1__CareFacts care = WHOLECARE__LEDGER__V1__CARE_FACTS__INIT;
        invoice.budget_id = (char *)argument;
        invoice.provider_organisation_id = (char *)provider;
        invoice.amount_pence = amount;
        invoice.invoice_reference = (char *)reference;
        invoice.service_start = (char *)start;
        invoice.service_end = (char *)(end ? end : "");
        invoice.idempotency_key = (char *)key;
        if (council_rate >= 0) {
            care.eligible = 1;
            care.council_rate_pence = council_rate;
            care.daily_living_pence = daily_living;
            invoice.care = &care;
        }
        request_len = wholecare__ledger__v1__post_invoice_request__get_packed_size(&invoice);
        request = malloc(request_len + 1);
        wholecare__ledger__v1__post_invoice_request__pack(&invoice, request);
        method = "wholecare.ledger.v1.Ledger/PostInvoice";
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
    } else if (strcmp(command, "sign-in") == 0) {
        Wholecare__Identity__V1__SignInResponse *r = wholecare__identity__v1__sign_in_response__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        printf("%s\n", r->access_token);
        wholecare__identity__v1__sign_in_response__free_unpacked(r, NULL);
    } else if (strcmp(command, "budget") == 0) {
        Wholecare__Ledger__V1__Budget *r = wholecare__ledger__v1__budget__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        printf("budget=%s allocated=%lld spent=%lld committed=%lld available=%lld\n", r->id, (long long)r->allocated_pence,
               (long long)r->spent_pence, (long long)r->committed_pence, (long long)r->available_pence);
        wholecare__ledger__v1__budget__free_unpacked(r, NULL);
    } else if (strcmp(command, "invoice") == 0) {
        Wholecare__Ledger__V1__Transaction *r = wholecare__ledger__v1__transaction__unpack(NULL, result.payload_len, result.payload);
        if (!r) { fprintf(stderr, "INTERNAL: undecodable response\n"); return WC_INTERNAL; }
        printf("transaction=%s kind=%s amount=%lld toward_cap=%lld\n", r->id, r->kind, (long long)r->amount_pence,
               (long long)r->eligible_toward_cap_pence);
        wholecare__ledger__v1__transaction__free_unpacked(r, NULL);
    } else {
        printf("slept\n");
    }
    wc_result_free(&result);
    wc_close(conn);
    return 0;
}
