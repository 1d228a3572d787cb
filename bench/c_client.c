/* kharbranth through its C ABI (include/kharbranth.h), the way a C user drives it: callbacks.
 *
 *   c_client push|echo|idle URL N S [rbuf=BYTES] [fbuf=BYTES] [bin=1] [workers=W] [hosts=H] [poll=1]
 *            [driven=1]
 *
 * push: on_text/on_binary count messages until the marker "END" (time from the first message).
 * echo: on_text records the round trip and sends the next message itself (kh_manager_send_text
 *       from inside the callback); 1000 warm-up messages are not counted.
 * idle: N connections on one manager; VmRSS growth per connection, time until all are open,
 *       thread count, and how long kh_manager_free takes with all of them open. hosts=H
 *       spreads them over the server addresses 127.0.0.1 to 127.0.0.H (URL host 127.0.0.1):
 *       one address pair has only ~28,000 ephemeral ports.
 * poll=1 (push and echo): the connection is added with kh_manager_add_polled and main takes its
 *       events with kh_manager_poll in batches of up to 1,024 instead of callbacks (client
 *       "kharbranth-c-poll"); echo sends the next message from the poll loop.
 * driven=1 (with poll=1): the manager is kh_manager_new_driven's, whose connection runs on main's
 *       thread inside kh_manager_poll (client "kharbranth-c-driven").
 * rbuf, fbuf: kh_config_set_read_buffer_size and kh_config_set_frame_buffer_size (defaults if
 *       not given).
 * Prints one JSON line. A hard timeout (alarm) ends it after 120 s.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kharbranth.h"

#define WARMUP 1000

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long proc_status(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = atol(line + n + 1);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

static void check(kh_result r, const char *what) {
    if (r != KH_OK) {
        char buf[512];
        kh_last_error(buf, sizeof buf);
        fprintf(stderr, "c_client: %s: %s (%s)\n", what, kh_result_str(r), buf);
        exit(1);
    }
}

/* Written by the connection's callbacks only (never concurrently), read by main after done. */
struct state {
    uint64_t count, bytes, size, total;
    double t_start, t_end, t_sent;
    double *rtts;
    uint64_t nrtt;
    kh_manager *mgr;
    const char *payload;
    int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void finish(struct state *s) {
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Counts a pushed message; returns 1 for the server's END, which ends the run. */
static inline int on_payload(struct state *s, const void *data, size_t len) {
    if (len == 3 && memcmp(data, "END", 3) == 0) {
        s->t_end = now();
        finish(s);
        return 1;
    }
    if (s->count == 0)
        s->t_start = now();
    s->count++;
    s->bytes += len;
    return 0;
}

static void push_text(void *ud, const char *conn, const char *data, size_t len) {
    (void)conn;
    on_payload(ud, data, len);
}

static void push_binary(void *ud, const char *conn, const uint8_t *data, size_t len) {
    (void)conn;
    on_payload(ud, data, len);
}

static void echo_text(void *ud, const char *conn, const char *data, size_t len) {
    (void)data;
    (void)len;
    struct state *s = ud;
    double t = now();
    s->rtts[s->nrtt++] = (t - s->t_sent) * 1e6;
    if (s->nrtt >= s->total) {
        s->t_end = t;
        finish(s);
        return;
    }
    s->t_sent = now();
    kh_result r = kh_manager_send_text(s->mgr, conn, s->payload, s->size);
    if (r != KH_OK) {
        fprintf(stderr, "c_client: send in callback: %s\n", kh_result_str(r));
        finish(s);
    }
}

static void on_error(void *ud, const char *conn, kh_result code, const char *msg) {
    (void)ud;
    if (getenv("KH_BENCH_DEBUG"))
        fprintf(stderr, "c_client: [%s] %s: %s\n", conn, kh_result_str(code), msg);
}

/* The poll variant's loop: events of the one connection, in batches, until the state is done
 * or `secs` pass. Runs on main only, so the state needs no lock here. */
static kh_event poll_events[1024];
static size_t poll_cap = 1024;
/* Polls that returned events, and those events: how full the caller's array came back. */
static uint64_t polls_with_events, polled_events;

/* An event that is not a message: only errors are shown, and only when debugging. */
static void other_event(const kh_event *e) {
    if (e->kind == KH_EVENT_ERROR && getenv("KH_BENCH_DEBUG"))
        fprintf(stderr, "c_client: [%s] %s: %.*s\n", e->conn, kh_result_str(e->error),
                (int)e->len, (const char *)e->data);
}

/* A batch of pushed messages, the way a consumer that cares about each message's cost walks
 * it: one pass, and the end of the run tested where only a message can end it (the END
 * message), as a callback does. */
static int push_batch(struct state *s, const kh_event *e, const kh_event *end) {
    for (; e < end; e++) {
        if (e->kind == KH_EVENT_TEXT || e->kind == KH_EVENT_BINARY) {
            if (on_payload(s, e->data, e->len))
                return 1;
        } else {
            other_event(e);
        }
    }
    return 0;
}

static int echo_batch(struct state *s, const kh_event *e, const kh_event *end) {
    for (; e < end && !s->done; e++) {
        if (e->kind == KH_EVENT_TEXT || e->kind == KH_EVENT_BINARY)
            echo_text(s, e->conn, (const char *)e->data, e->len);
        else
            other_event(e);
    }
    return s->done;
}

static int poll_loop(struct state *s, int echo, int secs) {
    double deadline = now() + secs;
    while (!s->done && now() < deadline) {
        size_t n = 0;
        kh_result r = kh_manager_poll(s->mgr, poll_events, poll_cap, 1000, &n);
        if (r != KH_OK) {
            fprintf(stderr, "c_client: kh_manager_poll: %s\n", kh_result_str(r));
            return 0;
        }
        polls_with_events += n > 0;
        polled_events += n;
        if (echo ? echo_batch(s, poll_events, poll_events + n)
                 : push_batch(s, poll_events, poll_events + n))
            break;
    }
    return s->done;
}

static int wait_done(struct state *s, int secs) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += secs;
    pthread_mutex_lock(&s->mu);
    while (!s->done)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) != 0)
            break;
    int d = s->done;
    pthread_mutex_unlock(&s->mu);
    return d;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void size_name(char *w, size_t n, const char *kind, uint64_t size) {
    if (size >= 1048576 && size % 1048576 == 0)
        snprintf(w, n, "%s_%lluMiB", kind, (unsigned long long)(size >> 20));
    else if (size >= 1024 && size % 1024 == 0)
        snprintf(w, n, "%s_%lluKiB", kind, (unsigned long long)(size >> 10));
    else
        snprintf(w, n, "%s_%lluB", kind, (unsigned long long)size);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s push|echo|idle URL N S [rbuf=B] [bin=1] [workers=W]\n", argv[0]);
        return 2;
    }
    alarm(120);
    const char *mode = argv[1], *url = argv[2];
    uint64_t n = strtoull(argv[3], 0, 10), size = strtoull(argv[4], 0, 10);
    size_t rbuf = 0, fbuf = 0;
    int bin = 0, poll = 0, driven = 0;
    unsigned workers = 0, hosts = 1;
    for (int i = 5; i < argc; i++) {
        if (strncmp(argv[i], "rbuf=", 5) == 0)
            rbuf = strtoull(argv[i] + 5, 0, 10);
        else if (strncmp(argv[i], "fbuf=", 5) == 0)
            fbuf = strtoull(argv[i] + 5, 0, 10);
        else if (strcmp(argv[i], "bin=1") == 0)
            bin = 1;
        else if (strcmp(argv[i], "poll=1") == 0)
            poll = 1;
        else if (strcmp(argv[i], "driven=1") == 0)
            driven = poll = 1;
        else if (strncmp(argv[i], "cap=", 4) == 0) {
            poll_cap = strtoull(argv[i] + 4, 0, 10);
            if (poll_cap < 1 || poll_cap > 1024)
                poll_cap = 1024;
        }
        else if (strncmp(argv[i], "workers=", 8) == 0)
            workers = atoi(argv[i] + 8);
        else if (strncmp(argv[i], "hosts=", 6) == 0)
            hosts = atoi(argv[i] + 6);
    }
    if (hosts < 1 || hosts > 250)
        hosts = 1;
    if (strcmp(mode, "idle") == 0)
        alarm(600);
    kh_manager *mgr;
    if (driven)
        check(kh_manager_new_driven(&mgr), "kh_manager_new_driven");
    else
        check(kh_manager_new_with_threads(workers, &mgr), "kh_manager_new");
    kh_config *cfg;
    check(kh_config_new(url, &cfg), "kh_config_new");
    check(kh_config_set_max_message_size(cfg, 64u << 20), "max_message_size");
    if (rbuf)
        check(kh_config_set_read_buffer_size(cfg, rbuf), "read_buffer_size");
    if (fbuf)
        check(kh_config_set_frame_buffer_size(cfg, fbuf), "frame_buffer_size");
    static struct state st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    st.size = size;
    st.mgr = mgr;
    kh_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.user_data = &st;
    hooks.on_error = on_error;
    const char *client = driven ? "kharbranth-c-driven" : poll ? "kharbranth-c-poll" : "kharbranth-c";
    char w[32];
    long threads_default = 0;

    if (strcmp(mode, "push") == 0) {
        if (bin)
            hooks.on_binary = push_binary;
        else
            hooks.on_text = push_text;
        int ok;
        if (poll) {
            check(kh_manager_add_polled(mgr, "bench", cfg), "kh_manager_add_polled");
            ok = poll_loop(&st, 0, 100);
        } else {
            check(kh_manager_add(mgr, "bench", cfg, &hooks), "kh_manager_add");
            ok = wait_done(&st, 100);
        }
        double secs = st.t_end > st.t_start ? st.t_end - st.t_start : 0;
        size_name(w, sizeof w, "push", size);
        if (bin)
            strncat(w, "_bin", sizeof w - strlen(w) - 1);
        printf("{\"client\":\"%s\",\"workload\":\"%s\",\"msgs\":%llu,\"bytes\":%llu,\"secs\":%.6f,"
               "\"msgs_per_sec\":%.1f,\"mb_per_sec\":%.2f,\"ok\":%s,\"rbuf\":%zu,"
               "\"events_per_poll\":%.1f}\n",
               client, w, (unsigned long long)st.count, (unsigned long long)st.bytes, secs,
               secs > 0 ? st.count / secs : 0, secs > 0 ? st.bytes / 1e6 / secs : 0,
               ok && st.count == n ? "true" : "false", rbuf,
               polls_with_events ? (double)polled_events / polls_with_events : 0.0);
        fflush(stdout);
        kh_manager_close(mgr, "bench", 1000, "done");
    } else if (strcmp(mode, "echo") == 0) {
        char *payload = malloc(size);
        memset(payload, 'x', size);
        st.payload = payload;
        st.total = n + WARMUP;
        st.rtts = calloc(st.total, sizeof(double));
        hooks.on_text = echo_text;
        if (poll)
            check(kh_manager_add_polled(mgr, "bench", cfg), "kh_manager_add_polled");
        else
            check(kh_manager_add(mgr, "bench", cfg, &hooks), "kh_manager_add");
        check(kh_manager_wait_open(mgr, "bench", 10000), "kh_manager_wait_open");
        st.t_start = now();
        st.t_sent = now();
        check(kh_manager_send_text(mgr, "bench", payload, size), "send");
        int ok = poll ? poll_loop(&st, 1, 100) : wait_done(&st, 100);
        double secs = st.t_end - st.t_start;
        uint64_t m = st.nrtt > WARMUP ? st.nrtt - WARMUP : 0;
        double *r = st.rtts + (st.nrtt - m);
        qsort(r, m, sizeof(double), cmp);
        double p50 = m ? r[(size_t)((m - 1) * 0.50 + 0.5)] : 0;
        double p99 = m ? r[(size_t)((m - 1) * 0.99 + 0.5)] : 0;
        size_name(w, sizeof w, "echo", size);
        printf("{\"client\":\"%s\",\"workload\":\"%s\",\"msgs\":%llu,\"bytes\":%llu,\"secs\":%.6f,"
               "\"msgs_per_sec\":%.1f,\"mb_per_sec\":%.2f,\"ok\":%s,\"p50_us\":%.2f,"
               "\"p99_us\":%.2f,\"rbuf\":%zu}\n",
               client, w, (unsigned long long)st.nrtt, (unsigned long long)(st.nrtt * size), secs,
               secs > 0 ? st.nrtt / secs : 0, secs > 0 ? st.nrtt * size / 1e6 / secs : 0,
               ok && m == n ? "true" : "false", p50, p99, rbuf);
        fflush(stdout);
        kh_manager_close(mgr, "bench", 1000, "done");
    } else if (strcmp(mode, "idle") == 0) {
        /* One config per server address: 127.0.0.1 in the URL becomes 127.0.0.k. */
        kh_config *cfgs[250];
        const char *host = strstr(url, "127.0.0.1");
        cfgs[0] = cfg;
        for (unsigned k = 1; k < hosts; k++) {
            char u[512];
            if (!host || strlen(url) + 4 >= sizeof u) {
                fprintf(stderr, "c_client: hosts=%u needs a URL on 127.0.0.1\n", hosts);
                return 2;
            }
            snprintf(u, sizeof u, "%.*s127.0.0.%u%s", (int)(host - url), url, k + 1, host + 9);
            check(kh_config_new(u, &cfgs[k]), "kh_config_new");
        }
        threads_default = proc_status("Threads");
        long before = proc_status("VmRSS");
        double t0 = now();
        char name[32];
        for (uint64_t i = 0; i < n; i++) {
            snprintf(name, sizeof name, "c%llu", (unsigned long long)i);
            check(kh_manager_add(mgr, name, cfgs[i % hosts], NULL), "kh_manager_add");
        }
        uint64_t opened = 0;
        for (uint64_t i = 0; i < n; i++) {
            snprintf(name, sizeof name, "c%llu", (unsigned long long)i);
            double left = 60 - (now() - t0);
            if (left > 0 && kh_manager_wait_open(mgr, name, (uint32_t)(left * 1000)) == KH_OK)
                opened++;
        }
        double open_secs = now() - t0;
        sleep(1);
        long after = proc_status("VmRSS");
        long threads = proc_status("Threads");
        double per = opened ? (double)(after - before) / opened : 0;
        double total = now() - t0;
        for (unsigned k = 1; k < hosts; k++)
            kh_config_free(cfgs[k]);
        /* Every connection is open: free closes them all (bounded by the close timeout). */
        double f0 = now();
        kh_manager_free(mgr);
        double free_secs = now() - f0;
        printf("{\"client\":\"%s\",\"workload\":\"idle\",\"msgs\":%llu,\"bytes\":0,\"secs\":%.6f,"
               "\"msgs_per_sec\":%.1f,\"mb_per_sec\":0,\"ok\":%s,\"conns\":%llu,"
               "\"open_secs\":%.3f,\"rss_per_conn_kib\":%.2f,\"rss_kib\":%ld,\"threads\":%ld,"
               "\"threads_before\":%ld,\"free_secs\":%.3f,\"hosts\":%u,\"rbuf\":%zu}\n",
               client, (unsigned long long)opened, total, open_secs > 0 ? opened / open_secs : 0,
               opened == n ? "true" : "false", (unsigned long long)opened, open_secs, per, after,
               threads, threads_default, free_secs, hosts, rbuf);
        fflush(stdout);
        kh_config_free(cfg);
        return 0;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    kh_config_free(cfg);
    kh_manager_free(mgr);
    return 0;
}
