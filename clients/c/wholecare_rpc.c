#include "wholecare_rpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <netinet/tcp.h>

#include "wholecare/rpc/v1/frame.pb-c.h"

#define WC_PROTOCOL_VERSION 1
#define WC_MAX_FRAME (4u * 1024u * 1024u)

struct wc_conn {
    int fd;
    uint64_t next_call_id;
    uint32_t server_max_frame;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready; returns 1 ready, 0 timeout, -1 error. deadline < 0: none. */
static int wait_fd(int fd, short events, long long deadline) {
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0) return 0;
            timeout = (int)left;
        }
        struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
        int r = poll(&p, 1, timeout);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        return 1;
    }
}

static int write_all(int fd, const uint8_t *buf, size_t len, long long deadline) {
    size_t done = 0;
    while (done < len) {
        int ready = wait_fd(fd, POLLOUT, deadline);
        if (ready <= 0) return ready == 0 ? -2 : -1;
        ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int read_all(int fd, uint8_t *buf, size_t len, long long deadline) {
    size_t done = 0;
    while (done < len) {
        int ready = wait_fd(fd, POLLIN, deadline);
        if (ready <= 0) return ready == 0 ? -2 : -1;
        ssize_t n = recv(fd, buf + done, len - done, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Serializes and sends one frame with its 4-byte big-endian length prefix. */
static int send_frame(wc_conn *c, const Wholecare__Rpc__V1__Frame *frame, long long deadline) {
    size_t len = wholecare__rpc__v1__frame__get_packed_size(frame);
    if (len > c->server_max_frame) return -3;
    uint8_t *buf = malloc(len + 4);
    if (!buf) return -1;
    buf[0] = (uint8_t)(len >> 24); buf[1] = (uint8_t)(len >> 16); buf[2] = (uint8_t)(len >> 8); buf[3] = (uint8_t)len;
    wholecare__rpc__v1__frame__pack(frame, buf + 4);
    int r = write_all(c->fd, buf, len + 4, deadline);
    free(buf);
    return r;
}

/* Reads one frame; the caller frees it with wholecare__rpc__v1__frame__free_unpacked. */
static int recv_frame(wc_conn *c, Wholecare__Rpc__V1__Frame **out, long long deadline) {
    uint8_t header[4];
    int r = read_all(c->fd, header, 4, deadline);
    if (r != 0) return r;
    uint32_t len = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) | ((uint32_t)header[2] << 8) | header[3];
    if (len > WC_MAX_FRAME) return -4;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -1;
    r = read_all(c->fd, buf, len, deadline);
    if (r != 0) { free(buf); return r; }
    *out = wholecare__rpc__v1__frame__unpack(NULL, len, buf);
    free(buf);
    return *out ? 0 : -5;
}

wc_conn *wc_connect(const char *host, int port, int timeout_ms, char *err, size_t err_len) {
    long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    struct addrinfo hints = { 0 }, *addresses = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port_text, &hints, &addresses);
    if (gai != 0) {
        snprintf(err, err_len, "cannot resolve %s: %s", host, gai_strerror(gai));
        return NULL;
    }
    int fd = -1;
    for (struct addrinfo *a = addresses; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) { close(fd); fd = -1; continue; }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (wait_fd(fd, POLLOUT, deadline) <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        snprintf(err, err_len, "cannot connect to %s:%d", host, port);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    wc_conn *c = calloc(1, sizeof *c);
    if (!c) { close(fd); snprintf(err, err_len, "out of memory"); return NULL; }
    c->fd = fd;
    c->next_call_id = 1;
    c->server_max_frame = WC_MAX_FRAME;

    Wholecare__Rpc__V1__Hello hello = WHOLECARE__RPC__V1__HELLO__INIT;
    hello.version = WC_PROTOCOL_VERSION;
    hello.agent = "wholecare-c/1.0";
    hello.max_frame_size = WC_MAX_FRAME;
    Wholecare__Rpc__V1__Frame frame = WHOLECARE__RPC__V1__FRAME__INIT;
    frame.kind_case = WHOLECARE__RPC__V1__FRAME__KIND_HELLO;
    frame.hello = &hello;
    Wholecare__Rpc__V1__Frame *reply = NULL;
    int sent = send_frame(c, &frame, deadline);
    errno = 0;
    int received = sent == 0 ? recv_frame(c, &reply, deadline) : 0;
    if (sent != 0 || received != 0) {
        /* Say what happened, for whoever has to find out why. */
        const char *why = sent != 0 ? "sending the hello failed"
                        : received == -2 ? "timed out"
                        : received == -5 ? "undecodable reply"
                        : errno != 0 ? strerror(errno) : "connection closed by the server";
        snprintf(err, err_len, "no hello from %s:%d (%s)", host, port, why);
        wc_close(c);
        return NULL;
    }
    if (reply->kind_case == WHOLECARE__RPC__V1__FRAME__KIND_GOAWAY) {
        snprintf(err, err_len, "server refused the connection: %s", reply->goaway->reason);
        wholecare__rpc__v1__frame__free_unpacked(reply, NULL);
        wc_close(c);
        return NULL;
    }
    if (reply->kind_case != WHOLECARE__RPC__V1__FRAME__KIND_HELLO || reply->hello->version != WC_PROTOCOL_VERSION) {
        snprintf(err, err_len, "unexpected reply to hello");
        wholecare__rpc__v1__frame__free_unpacked(reply, NULL);
        wc_close(c);
        return NULL;
    }
    if (reply->hello->max_frame_size > 0) c->server_max_frame = reply->hello->max_frame_size;
    wholecare__rpc__v1__frame__free_unpacked(reply, NULL);
    return c;
}

static int fail(wc_result *result, int status, const char *message) {
    result->status = status;
    snprintf(result->message, sizeof result->message, "%s", message);
    return status;
}

int wc_call(wc_conn *c, const char *method, const wc_metadata *metadata, size_t metadata_count,
            const uint8_t *request, size_t request_len, int timeout_ms, wc_result *result) {
    memset(result, 0, sizeof *result);
    long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
    uint64_t id = c->next_call_id++;

    Wholecare__Rpc__V1__MetadataEntry *entries = NULL, **entry_ptrs = NULL;
    char **lowered = NULL;
    if (metadata_count > 0) {
        entries = calloc(metadata_count, sizeof *entries);
        entry_ptrs = calloc(metadata_count, sizeof *entry_ptrs);
        lowered = calloc(metadata_count, sizeof *lowered);
        if (!entries || !entry_ptrs || !lowered) {
            free(entries); free(entry_ptrs); free(lowered);
            return fail(result, WC_INTERNAL, "out of memory");
        }
        for (size_t i = 0; i < metadata_count; i++) {
            wholecare__rpc__v1__metadata_entry__init(&entries[i]);
            lowered[i] = strdup(metadata[i].key);
            for (char *p = lowered[i]; p && *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
            entries[i].key = lowered[i];
            entries[i].value = (char *)metadata[i].value;
            entry_ptrs[i] = &entries[i];
        }
    }
    Wholecare__Rpc__V1__Request req = WHOLECARE__RPC__V1__REQUEST__INIT;
    req.method = (char *)method;
    req.n_metadata = metadata_count;
    req.metadata = entry_ptrs;
    req.timeout_micros = timeout_ms > 0 ? (uint64_t)timeout_ms * 1000u : 0;
    req.payload.data = (uint8_t *)request;
    req.payload.len = request_len;
    Wholecare__Rpc__V1__Frame frame = WHOLECARE__RPC__V1__FRAME__INIT;
    frame.call_id = id;
    frame.kind_case = WHOLECARE__RPC__V1__FRAME__KIND_REQUEST;
    frame.request = &req;
    int sent = send_frame(c, &frame, deadline);
    for (size_t i = 0; i < metadata_count; i++) free(lowered[i]);
    free(lowered); free(entries); free(entry_ptrs);
    if (sent == -3) return fail(result, WC_RESOURCE_EXHAUSTED, "the request exceeds the server's frame limit");
    if (sent == -2) return fail(result, WC_DEADLINE_EXCEEDED, "deadline exceeded while sending");
    if (sent != 0) return fail(result, WC_UNAVAILABLE, "the connection to the server was lost");

    for (;;) {
        Wholecare__Rpc__V1__Frame *in = NULL;
        int r = recv_frame(c, &in, deadline);
        if (r == -2) {
            /* Tell the server to stop working on it, then report the deadline. */
            Wholecare__Rpc__V1__Cancel cancel = WHOLECARE__RPC__V1__CANCEL__INIT;
            Wholecare__Rpc__V1__Frame cf = WHOLECARE__RPC__V1__FRAME__INIT;
            cf.call_id = id;
            cf.kind_case = WHOLECARE__RPC__V1__FRAME__KIND_CANCEL;
            cf.cancel = &cancel;
            send_frame(c, &cf, now_ms() + 1000);
            return fail(result, WC_DEADLINE_EXCEEDED, "deadline exceeded");
        }
        if (r != 0) return fail(result, WC_UNAVAILABLE, "the connection to the server was lost");
        switch (in->kind_case) {
        case WHOLECARE__RPC__V1__FRAME__KIND_RESPONSE:
            if (in->call_id != id) break; /* a late answer to an earlier, abandoned call */
            result->status = (int)in->response->status;
            snprintf(result->message, sizeof result->message, "%s", in->response->message ? in->response->message : "");
            if (in->response->status == WC_OK && in->response->payload.len > 0) {
                result->payload = malloc(in->response->payload.len);
                if (!result->payload) {
                    wholecare__rpc__v1__frame__free_unpacked(in, NULL);
                    return fail(result, WC_INTERNAL, "out of memory");
                }
                memcpy(result->payload, in->response->payload.data, in->response->payload.len);
                result->payload_len = in->response->payload.len;
            }
            wholecare__rpc__v1__frame__free_unpacked(in, NULL);
            return result->status;
        case WHOLECARE__RPC__V1__FRAME__KIND_PING: {
            Wholecare__Rpc__V1__Pong pong = WHOLECARE__RPC__V1__PONG__INIT;
            pong.opaque = in->ping->opaque;
            Wholecare__Rpc__V1__Frame pf = WHOLECARE__RPC__V1__FRAME__INIT;
            pf.kind_case = WHOLECARE__RPC__V1__FRAME__KIND_PONG;
            pf.pong = &pong;
            send_frame(c, &pf, deadline);
            break;
        }
        case WHOLECARE__RPC__V1__FRAME__KIND_GOAWAY: {
            int status = in->goaway->last_call_id >= id ? -1 : WC_UNAVAILABLE;
            char reason[256];
            snprintf(reason, sizeof reason, "server going away: %s", in->goaway->reason ? in->goaway->reason : "");
            wholecare__rpc__v1__frame__free_unpacked(in, NULL);
            if (status == WC_UNAVAILABLE) return fail(result, WC_UNAVAILABLE, reason);
            continue; /* our call will still be answered */
        }
        default:
            break;
        }
        wholecare__rpc__v1__frame__free_unpacked(in, NULL);
    }
}

void wc_result_free(wc_result *result) {
    free(result->payload);
    result->payload = NULL;
    result->payload_len = 0;
}

void wc_close(wc_conn *c) {
    if (!c) return;
    close(c->fd);
    free(c);
}

const char *wc_status_name(int status) {
    static const char *names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
    };
    return status >= 0 && status <= 16 ? names[status] : "UNKNOWN";
}
