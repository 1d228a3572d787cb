/* libwebsockets (Debian's libwebsockets-dev) benchmark client: the established C library.
 *
 *   lws_client push|echo PORT PATH N S [RXBUF]
 *
 * push: counts complete messages until the 3-byte marker "END" (time from the first message).
 * echo: one S-byte text message in flight, written from LWS_CALLBACK_CLIENT_WRITEABLE as lws
 *       wants; round trip per message (after 1000 warm-up messages).
 * Prints one JSON line. A hard timeout (alarm) ends it after 120 s.
 */
#include <libwebsockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 1000

static int echo_mode, done, failed;
static uint64_t n_target, size, count, bytes, cur_len;
static double t_start, t_end, t_sent;
static double *rtts;
static uint64_t nrtt, total_echo;
static unsigned char *out;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (echo_mode) {
            t_start = now();
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (echo_mode && !done) {
            /* lws masks the payload in place: refill it every time. */
            memset(out + LWS_PRE, 'x', size);
            t_sent = now();
            if (lws_write(wsi, out + LWS_PRE, size, LWS_WRITE_TEXT) < (int)size) {
                failed = 1;
                done = 1;
                return -1;
            }
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        cur_len += len;
        if (!(lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0))
            break;
        uint64_t mlen = cur_len;
        cur_len = 0;
        if (echo_mode) {
            double t = now();
            rtts[nrtt++] = (t - t_sent) * 1e6;
            if (nrtt >= total_echo) {
                t_end = t;
                done = 1;
                return -1;
            }
            lws_callback_on_writable(wsi);
            break;
        }
        if (mlen == 3 && len == 3 && memcmp(in, "END", 3) == 0) {
            t_end = now();
            done = 1;
            return -1; /* close */
        }
        if (count == 0)
            t_start = now();
        count++;
        bytes += mlen;
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "lws: connection error: %s\n", in ? (char *)in : "?");
        failed = 1;
        done = 1;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (getenv("LWS_BENCH_DEBUG"))
            fprintf(stderr, "lws: closed after %llu messages\n", (unsigned long long)nrtt);
        done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s push|echo PORT PATH N S [RXBUF]\n", argv[0]);
        return 2;
    }
    alarm(120);
    echo_mode = strcmp(argv[1], "echo") == 0;
    int port = atoi(argv[2]);
    const char *path = argv[3];
    n_target = strtoull(argv[4], 0, 10);
    size = strtoull(argv[5], 0, 10);
    size_t rxbuf = argc > 6 ? strtoull(argv[6], 0, 10) : 0;
    if (echo_mode) {
        total_echo = n_target + WARMUP;
        rtts = calloc(total_echo, sizeof(double));
        out = malloc(LWS_PRE + size);
        memset(out + LWS_PRE, 'x', size);
    }
    lws_set_log_level(LLL_ERR, NULL);
    static struct lws_protocols protocols[] = {
        {"bench", cb, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    protocols[0].rx_buffer_size = rxbuf;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws_create_context failed\n");
        return 1;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = path;
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.protocol = NULL;
    ci.local_protocol_name = "bench";
    if (!lws_client_connect_via_info(&ci)) {
        fprintf(stderr, "lws_client_connect_via_info failed\n");
        return 1;
    }
    while (!done && lws_service(ctx, 0) >= 0) {
    }
    lws_context_destroy(ctx);
    double secs = t_end > t_start ? t_end - t_start : 0;
    char name[64];
    snprintf(name, sizeof name, "libwebsockets %s", lws_get_library_version());
    name[strcspn(name + 14, " -") + 14] = 0; /* "libwebsockets 4.1.6" */
    if (echo_mode) {
        uint64_t m = nrtt > WARMUP ? nrtt - WARMUP : 0;
        double *r = rtts + (nrtt - m);
        qsort(r, m, sizeof(double), cmp);
        double p50 = m ? r[(size_t)((m - 1) * 0.50 + 0.5)] : 0;
        double p99 = m ? r[(size_t)((m - 1) * 0.99 + 0.5)] : 0;
        printf("{\"client\":\"%s\",\"workload\":\"echo_%lluB\",\"msgs\":%llu,\"bytes\":%llu,"
               "\"secs\":%.6f,\"msgs_per_sec\":%.1f,\"mb_per_sec\":%.2f,\"ok\":%s,"
               "\"p50_us\":%.2f,\"p99_us\":%.2f,\"rbuf\":%zu}\n",
               name, (unsigned long long)size, (unsigned long long)nrtt,
               (unsigned long long)(nrtt * size), secs, secs > 0 ? nrtt / secs : 0,
               secs > 0 ? nrtt * size / 1e6 / secs : 0,
               (!failed && m == n_target) ? "true" : "false", p50, p99, rxbuf);
    } else {
        char w[32];
        if (size >= 1048576 && size % 1048576 == 0)
            snprintf(w, sizeof w, "push_%lluMiB", (unsigned long long)(size >> 20));
        else if (size >= 1024 && size % 1024 == 0)
            snprintf(w, sizeof w, "push_%lluKiB", (unsigned long long)(size >> 10));
        else
            snprintf(w, sizeof w, "push_%lluB", (unsigned long long)size);
        printf("{\"client\":\"%s\",\"workload\":\"%s\",\"msgs\":%llu,\"bytes\":%llu,"
               "\"secs\":%.6f,\"msgs_per_sec\":%.1f,\"mb_per_sec\":%.2f,\"ok\":%s,\"rbuf\":%zu}\n",
               name, w, (unsigned long long)count, (unsigned long long)bytes, secs,
               secs > 0 ? count / secs : 0, secs > 0 ? bytes / 1e6 / secs : 0,
               (!failed && count == n_target) ? "true" : "false", rxbuf);
    }
    return failed;
}
