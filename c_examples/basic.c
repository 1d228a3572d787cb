/*
 * basic.c: one connection through kharbranth's C ABI.
 *
 * Connects to a WebSocket server (the project's examples/feed_server, which echoes messages and
 * answers "push N" with N messages "msg 1".."msg N"), receives, sends, restarts and closes the
 * connection, checking every step. Exits 0 and prints "basic: PASS" when all went well, 1 on
 * any failure. Every wait is bounded.
 *
 *   ./basic ws://127.0.0.1:PORT/
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

#define WAIT_MS 10000 /* bound of every wait (generous: the examples also run under valgrind) */
#define PUSH_COUNT 5

/* ---- failure reporting ------------------------------------------------------------------ */

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "basic: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Calls a kh_ function and fails with its code and kh_last_error() unless it returned KH_OK. */
#define CHECK(call)                                                                           \
    do {                                                                                      \
        kh_result rc_ = (call);                                                               \
        if (rc_ != KH_OK) {                                                                   \
            char msg_[512];                                                                   \
            kh_last_error(msg_, sizeof msg_);                                                 \
            fail("%s -> %s (%s)", #call, kh_result_str(rc_), msg_);                           \
        }                                                                                     \
    } while (0)

/* ---- what the hooks record (shared with the hook threads, behind a mutex) ---------------- */

struct feed {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int opens;
    int texts;           /* text messages received */
    int pushed;          /* "msg i" messages received in order */
    int out_of_order;    /* "msg i" messages that were not the next number */
    char last_text[256]; /* last text message that was not a "msg i" */
    size_t binaries;
    unsigned char last_binary[64];
    size_t last_binary_len;
    int pongs;
    int closes;
    unsigned close_code;
    char close_reason[128];
    int errors;
    int drops;
};

static void feed_init(struct feed *f) {
    pthread_condattr_t attr;
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&f->changed, &attr);
    pthread_condattr_destroy(&attr);
}

static void feed_destroy(struct feed *f) {
    pthread_cond_destroy(&f->changed);
    pthread_mutex_destroy(&f->lock);
}

static void on_open(void *ud, const char *conn) {
    struct feed *f = ud;
    printf("[%s] open\n", conn);
    pthread_mutex_lock(&f->lock);
    f->opens++;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void on_text(void *ud, const char *conn, const char *data, size_t len) {
    struct feed *f = ud;
    (void)conn;
    pthread_mutex_lock(&f->lock);
    f->texts++;
    /* data is not NUL-terminated: copy with the length. */
    if (len > 4 && memcmp(data, "msg ", 4) == 0) {
        char num[32];
        size_t n = len - 4 < sizeof num - 1 ? len - 4 : sizeof num - 1;
        memcpy(num, data + 4, n);
        num[n] = '\0';
        if (atoi(num) == f->pushed + 1)
            f->pushed++;
        else
            f->out_of_order++;
    } else {
        size_t n = len < sizeof f->last_text - 1 ? len : sizeof f->last_text - 1;
        memcpy(f->last_text, data, n);
        f->last_text[n] = '\0';
    }
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void on_binary(void *ud, const char *conn, const uint8_t *data, size_t len) {
    struct feed *f = ud;
    (void)conn;
    pthread_mutex_lock(&f->lock);
    f->binaries++;
    f->last_binary_len = len < sizeof f->last_binary ? len : sizeof f->last_binary;
    memcpy(f->last_binary, data, f->last_binary_len);
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void on_pong(void *ud, const char *conn, const uint8_t *data, size_t len) {
    struct feed *f = ud;
    (void)conn;
    (void)data;
    (void)len;
    pthread_mutex_lock(&f->lock);
    f->pongs++;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void on_close(void *ud, const char *conn, uint16_t code, const char *reason, size_t len) {
    struct feed *f = ud;
    size_t n = len < sizeof f->close_reason - 1 ? len : sizeof f->close_reason - 1;
    printf("[%s] close %u \"%.*s\"\n", conn, (unsigned)code, (int)len, reason);
    pthread_mutex_lock(&f->lock);
    f->closes++;
    f->close_code = code;
    memcpy(f->close_reason, reason, n);
    f->close_reason[n] = '\0';
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void on_error(void *ud, const char *conn, kh_result code, const char *message) {
    struct feed *f = ud;
    fprintf(stderr, "[%s] error %s: %s\n", conn, kh_result_str(code), message);
    pthread_mutex_lock(&f->lock);
    f->errors++;
    pthread_mutex_unlock(&f->lock);
}

static void on_drop(void *ud) {
    struct feed *f = ud;
    pthread_mutex_lock(&f->lock);
    f->drops++;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

/* ---- bounded waits ----------------------------------------------------------------------- */

typedef int (*predicate)(const struct feed *f, int arg);

/* Waits until pred(f, arg) holds, at most WAIT_MS. Returns 1 when it holds, 0 on timeout. */
static int wait_for(struct feed *f, predicate pred, int arg) {
    struct timespec deadline;
    int ok, rc = 0;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    deadline.tv_nsec += (long)(WAIT_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->lock);
    while (!(ok = pred(f, arg)) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->changed, &f->lock, &deadline);
    pthread_mutex_unlock(&f->lock);
    return ok;
}

static int opened(const struct feed *f, int n) { return f->opens >= n; }
static int pushed(const struct feed *f, int n) { return f->pushed >= n; }
static int got_pong(const struct feed *f, int n) { return f->pongs >= n; }
static int got_binary(const struct feed *f, int n) { return f->binaries >= (size_t)n; }
static int got_text(const struct feed *f, int which) {
    static const char *const expected[] = {"hello from basic", "after restart"};
    return strcmp(f->last_text, expected[which]) == 0;
}

/* ---- the example ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("KH_URL");
    static const char subscribe[] = "hello from basic"; /* sent after every (re)connect */
    static const uint8_t blob[] = {0x00, 0x01, 0xfe, 0xff, 0x42};
    kh_manager *mgr = NULL;
    kh_config *cfg = NULL;
    kh_conn_stats stats;
    kh_conn_state state;
    struct feed feed;
    kh_result rc;
    char err[256];

    if (url == NULL) {
        fprintf(stderr, "usage: %s ws://host:port/path\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order when redirected */
    printf("kharbranth %s (header %s)\n", kh_version(), KH_VERSION_STRING);
    CHECK(kh_log_init("warn"));
    feed_init(&feed);

    /* A configuration: the caller owns it and frees it after adding the connection. */
    CHECK(kh_config_new(url, &cfg));
    CHECK(kh_config_set_ping_interval_ms(cfg, 5000));
    CHECK(kh_config_set_pong_timeout_ms(cfg, 5000));
    CHECK(kh_config_set_connect_timeout_ms(cfg, 5000));
    CHECK(kh_config_set_reconnect_backoff_ms(cfg, 100, 2000));
    CHECK(kh_config_add_header(cfg, "X-Example", "basic"));
    CHECK(kh_config_add_init_text(cfg, subscribe, strlen(subscribe)));

    /* Hooks: every member may be NULL; the struct is copied by kh_manager_add. */
    kh_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.user_data = &feed;
    hooks.on_open = on_open;
    hooks.on_text = on_text;
    hooks.on_binary = on_binary;
    hooks.on_pong = on_pong;
    hooks.on_close = on_close;
    hooks.on_error = on_error;
    hooks.on_drop = on_drop;

    CHECK(kh_manager_new_with_threads(2, &mgr));
    CHECK(kh_manager_add(mgr, "feed", cfg, &hooks));
    kh_config_free(cfg);

    /* Connect and receive: the server echoes the init message. */
    CHECK(kh_manager_wait_open(mgr, "feed", WAIT_MS));
    CHECK(kh_manager_state(mgr, "feed", &state));
    if (state != KH_STATE_OPEN)
        fail("state after wait_open is %u, not KH_STATE_OPEN", (unsigned)state);
    if (!wait_for(&feed, got_text, 0))
        fail("no echo of the init message within %d ms", WAIT_MS);
    printf("echo: %s\n", feed.last_text);

    /* Send: ask for PUSH_COUNT numbered messages and wait until all arrived in order. */
    CHECK(kh_manager_send_text(mgr, "feed", "push 5", 6));
    if (!wait_for(&feed, pushed, PUSH_COUNT))
        fail("received %d of %d pushed messages within %d ms", feed.pushed, PUSH_COUNT, WAIT_MS);
    printf("received msg 1..%d\n", PUSH_COUNT);
    CHECK(kh_manager_send_binary(mgr, "feed", blob, sizeof blob));
    if (!wait_for(&feed, got_binary, 1))
        fail("no binary echo within %d ms", WAIT_MS);
    if (feed.last_binary_len != sizeof blob || memcmp(feed.last_binary, blob, sizeof blob) != 0)
        fail("the binary echo differs from what was sent");
    CHECK(kh_manager_send_ping(mgr, "feed", (const uint8_t *)"p", 1));
    if (!wait_for(&feed, got_pong, 1))
        fail("no pong within %d ms", WAIT_MS);
    printf("binary echo and pong ok\n");

    /* Errors come back as codes with a message. */
    rc = kh_manager_send_text(mgr, "nope", "x", 1);
    if (rc != KH_CONNECTION_NOT_FOUND)
        fail("send to an unknown name returned %s", kh_result_str(rc));
    kh_last_error(err, sizeof err);
    printf("unknown name: %s (%s)\n", kh_result_str(rc), err);
    rc = kh_manager_send_text(mgr, "feed", "\xff\xfe", 2);
    if (rc != KH_INVALID_ARGUMENT)
        fail("send of invalid UTF-8 returned %s", kh_result_str(rc));

    /* Restart: closes cleanly, reconnects at once and sends the init message again. */
    CHECK(kh_manager_restart(mgr, "feed"));
    if (!wait_for(&feed, opened, 2))
        fail("no second on_open within %d ms of the restart", WAIT_MS);
    CHECK(kh_manager_wait_open(mgr, "feed", WAIT_MS));
    CHECK(kh_manager_send_text(mgr, "feed", "after restart", 13));
    if (!wait_for(&feed, got_text, 1))
        fail("no echo after the restart within %d ms", WAIT_MS);
    printf("restarted and echoed again\n");

    CHECK(kh_manager_stats(mgr, "feed", &stats));
    printf("stats: in %llu msgs / %llu B, out %llu msgs / %llu B, reconnects %llu, rtt %llu us\n",
           (unsigned long long)stats.messages_in, (unsigned long long)stats.bytes_in,
           (unsigned long long)stats.messages_out, (unsigned long long)stats.bytes_out,
           (unsigned long long)stats.reconnects, (unsigned long long)stats.last_rtt_us);
    /* init echo + 5 pushed + binary echo + init echo after restart + "after restart" echo */
    if (stats.messages_in < 9 || stats.messages_out < 5 || stats.reconnects != 1)
        fail("unexpected stats");

    /* Close: returns when the close is complete; no hook runs after it, on_drop has run. */
    CHECK(kh_manager_close(mgr, "feed", 1000, "done"));
    pthread_mutex_lock(&feed.lock);
    if (feed.drops != 1)
        fail("on_drop ran %d times by the time kh_manager_close returned", feed.drops);
    if (feed.out_of_order != 0)
        fail("%d pushed messages arrived out of order", feed.out_of_order);
    printf("closed: on_close %d time(s), last code %u \"%s\"\n", feed.closes, feed.close_code,
           feed.close_reason);
    pthread_mutex_unlock(&feed.lock);
    rc = kh_manager_state(mgr, "feed", &state);
    if (rc != KH_CONNECTION_NOT_FOUND)
        fail("state after close returned %s, not KH_CONNECTION_NOT_FOUND", kh_result_str(rc));

    kh_manager_free(mgr);
    if (feed.drops != 1)
        fail("on_drop ran %d times", feed.drops);
    feed_destroy(&feed);
    printf("basic: PASS\n");
    return 0;
}
