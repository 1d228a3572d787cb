/*
 * multi_feed.c: several named feeds on one manager, each with its own user data.
 *
 * Every feed subscribes with an init message ("push N": the project's feed_server answers with
 * N numbered messages "msg 1".."msg N", and does so again after every reconnect), counts what it
 * receives in its own struct, and checks the numbers arrive in order. One feed is restarted
 * half-way to show that its subscription is sent again. At the end the per-feed stats are
 * printed and the manager is freed, which closes every feed and calls each on_drop.
 * Exits 0 with "multi_feed: PASS", 1 on any failure; every wait is bounded.
 *
 *   ./multi_feed ws://127.0.0.1:PORT/
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kharbranth.h>

#define WAIT_MS 15000

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "multi_feed: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

#define CHECK(call)                                                                           \
    do {                                                                                      \
        kh_result rc_ = (call);                                                               \
        if (rc_ != KH_OK) {                                                                   \
            char msg_[512];                                                                   \
            kh_last_error(msg_, sizeof msg_);                                                 \
            fail("%s -> %s (%s)", #call, kh_result_str(rc_), msg_);                           \
        }                                                                                     \
    } while (0)

/* All feeds signal progress through one condition variable; each keeps its own counters. */
static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t progress;

/* The user data of one feed. Its hooks never run concurrently with each other, but main reads
 * the counters meanwhile, so they are behind progress_lock. */
struct feed {
    const char *name;
    int per_subscription; /* messages per "push N" */
    int opens;
    int expected_next; /* the next "msg i" number */
    long received;     /* "msg i" messages received */
    long out_of_order;
    unsigned long long bytes;
    int errors;
    int dropped;
};

static void on_open(void *ud, const char *conn) {
    struct feed *f = ud;
    pthread_mutex_lock(&progress_lock);
    f->opens++;
    f->expected_next = 1; /* the subscription is sent again: numbering restarts */
    pthread_cond_broadcast(&progress);
    pthread_mutex_unlock(&progress_lock);
    printf("[%s] open (#%d)\n", conn, f->opens);
}

static void on_text(void *ud, const char *conn, const char *data, size_t len) {
    struct feed *f = ud;
    char num[24];
    size_t n;
    (void)conn;
    if (len <= 4 || memcmp(data, "msg ", 4) != 0)
        return;
    n = len - 4 < sizeof num - 1 ? len - 4 : sizeof num - 1;
    memcpy(num, data + 4, n); /* data is not NUL-terminated */
    num[n] = '\0';
    pthread_mutex_lock(&progress_lock);
    if (atoi(num) == f->expected_next)
        f->expected_next++;
    else if (atoi(num) == 1) /* every "push N" numbers from 1 */
        f->expected_next = 2;
    else
        f->out_of_order++;
    f->received++;
    f->bytes += len;
    pthread_cond_broadcast(&progress);
    pthread_mutex_unlock(&progress_lock);
}

static void on_error(void *ud, const char *conn, kh_result code, const char *message) {
    struct feed *f = ud;
    fprintf(stderr, "[%s] error %s: %s\n", conn, kh_result_str(code), message);
    pthread_mutex_lock(&progress_lock);
    f->errors++;
    pthread_mutex_unlock(&progress_lock);
}

static void on_drop(void *ud) {
    struct feed *f = ud;
    pthread_mutex_lock(&progress_lock);
    f->dropped++;
    pthread_mutex_unlock(&progress_lock);
}

/* Waits until every feed received `target[i]` messages and opened `opens[i]` times. */
static int wait_all(struct feed *feeds, size_t count, const long *target, const int *opens) {
    struct timespec deadline;
    int done = 0, rc = 0;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&progress_lock);
    while (rc != ETIMEDOUT) {
        size_t i;
        done = 1;
        for (i = 0; i < count; i++)
            if (feeds[i].received < target[i] || feeds[i].opens < opens[i])
                done = 0;
        if (done)
            break;
        rc = pthread_cond_timedwait(&progress, &progress_lock, &deadline);
    }
    pthread_mutex_unlock(&progress_lock);
    return done;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("KH_URL");
    struct feed feeds[] = {
        {.name = "trades", .per_subscription = 200},
        {.name = "quotes", .per_subscription = 500},
        {.name = "book", .per_subscription = 50},
        {.name = "funding", .per_subscription = 10},
    };
    const size_t count = sizeof feeds / sizeof feeds[0];
    long target[sizeof feeds / sizeof feeds[0]];
    int opens[sizeof feeds / sizeof feeds[0]];
    kh_manager *mgr = NULL;
    pthread_condattr_t attr;
    size_t i;
    int failed = 0;

    if (url == NULL) {
        fprintf(stderr, "usage: %s ws://host:port/path\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order when redirected */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&progress, &attr);
    pthread_condattr_destroy(&attr);

    CHECK(kh_log_init("warn"));
    CHECK(kh_manager_new_with_threads(2, &mgr));
    for (i = 0; i < count; i++) {
        char subscribe[32];
        kh_config *cfg = NULL;
        kh_hooks hooks;
        int len = snprintf(subscribe, sizeof subscribe, "push %d", feeds[i].per_subscription);

        CHECK(kh_config_new(url, &cfg));
        CHECK(kh_config_set_ping_interval_ms(cfg, 2000));
        CHECK(kh_config_set_connect_timeout_ms(cfg, 5000));
        CHECK(kh_config_set_reconnect_backoff_ms(cfg, 100, 1000));
        CHECK(kh_config_add_init_text(cfg, subscribe, (size_t)len));

        memset(&hooks, 0, sizeof hooks);
        hooks.user_data = &feeds[i]; /* each feed its own user data */
        hooks.on_open = on_open;
        hooks.on_text = on_text;
        hooks.on_error = on_error;
        hooks.on_drop = on_drop;
        CHECK(kh_manager_add(mgr, feeds[i].name, cfg, &hooks));
        kh_config_free(cfg);
        target[i] = feeds[i].per_subscription;
        opens[i] = 1;
    }
    {
        /* A name can only be used once; the failed add does not take the hooks. */
        kh_config *cfg = NULL;
        kh_result rc;
        CHECK(kh_config_new(url, &cfg));
        rc = kh_manager_add(mgr, "trades", cfg, NULL);
        kh_config_free(cfg);
        if (rc != KH_ALREADY_EXISTS)
            fail("adding a second \"trades\" returned %s", kh_result_str(rc));
    }

    for (i = 0; i < count; i++)
        CHECK(kh_manager_wait_open(mgr, feeds[i].name, WAIT_MS));
    if (!wait_all(feeds, count, target, opens))
        fail("not every feed got its first subscription's messages within %d ms", WAIT_MS);
    printf("every feed received its subscription\n");

    /* More on demand, and a restart of "book": it subscribes again after reconnecting. */
    CHECK(kh_manager_send_text(mgr, "trades", "push 100", 8));
    target[0] += 100;
    CHECK(kh_manager_restart(mgr, "book"));
    target[2] += feeds[2].per_subscription;
    opens[2] = 2;
    if (!wait_all(feeds, count, target, opens))
        fail("the second round did not arrive within %d ms", WAIT_MS);
    CHECK(kh_manager_wait_open(mgr, "book", WAIT_MS));

    printf("%-8s %6s %9s %10s %9s %10s %10s %9s\n", "feed", "opens", "msgs_in", "bytes_in",
           "msgs_out", "bytes_out", "reconnects", "rtt_us");
    for (i = 0; i < count; i++) {
        kh_conn_stats s;
        kh_conn_state state;
        CHECK(kh_manager_stats(mgr, feeds[i].name, &s));
        CHECK(kh_manager_state(mgr, feeds[i].name, &state));
        pthread_mutex_lock(&progress_lock);
        printf("%-8s %6d %9llu %10llu %9llu %10llu %10llu %9llu\n", feeds[i].name, feeds[i].opens,
               (unsigned long long)s.messages_in, (unsigned long long)s.bytes_in,
               (unsigned long long)s.messages_out, (unsigned long long)s.bytes_out,
               (unsigned long long)s.reconnects, (unsigned long long)s.last_rtt_us);
        if (feeds[i].out_of_order != 0) {
            fprintf(stderr, "[%s] %ld messages out of order\n", feeds[i].name, feeds[i].out_of_order);
            failed = 1;
        }
        if (s.messages_in < (unsigned long long)target[i] || s.bytes_in < feeds[i].bytes) {
            fprintf(stderr, "[%s] stats count less than the hooks saw\n", feeds[i].name);
            failed = 1;
        }
        if (state != KH_STATE_OPEN) {
            fprintf(stderr, "[%s] state %u, not open\n", feeds[i].name, (unsigned)state);
            failed = 1;
        }
        pthread_mutex_unlock(&progress_lock);
    }

    /* Freeing the manager closes every feed (1001 "going away") and calls every on_drop. */
    kh_manager_free(mgr);
    for (i = 0; i < count; i++) {
        if (feeds[i].dropped != 1) {
            fprintf(stderr, "[%s] on_drop ran %d times\n", feeds[i].name, feeds[i].dropped);
            failed = 1;
        }
    }
    pthread_cond_destroy(&progress);
    if (failed)
        fail("see above");
    printf("multi_feed: PASS\n");
    return 0;
}
