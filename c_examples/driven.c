/*
 * driven.c: one thread, no library threads. A manager from kh_manager_new_driven runs its
 * connections inside kh_manager_poll, on the calling thread, so a program with its own loop
 * (a game loop, a trading loop) reads its feeds without any callback on another thread and
 * without locking.
 *
 * Two feeds subscribe with an init message ("push N": the project's feed_server answers with
 * N numbered messages "msg 1".."msg N"); the loop polls both and checks that each feed's
 * numbers arrive once and in order. A send between polls goes out in the next poll. Exits 0
 * with "driven: PASS", 1 on any failure; every wait is bounded.
 *
 *   ./driven ws://127.0.0.1:PORT/
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kharbranth.h>

#define PER_FEED 20000
#define WAIT_MS 15000

#define CHECK(call)                                                                           \
    do {                                                                                      \
        kh_result rc_ = (call);                                                               \
        if (rc_ != KH_OK) {                                                                   \
            char msg_[256];                                                                   \
            kh_last_error(msg_, sizeof msg_);                                                 \
            fprintf(stderr, "driven: FAIL: %s: %s (%s)\n", #call, kh_result_str(rc_), msg_); \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("KH_URL");
    if (url == NULL) {
        fprintf(stderr, "usage: %s ws://127.0.0.1:PORT/\n", argv[0]);
        return 2;
    }
    kh_manager *mgr = NULL;
    CHECK(kh_manager_new_driven(&mgr));

    kh_config *cfg = NULL;
    CHECK(kh_config_new(url, &cfg));
    char push[32];
    int n = snprintf(push, sizeof push, "push %d", PER_FEED);
    CHECK(kh_config_add_init_text(cfg, push, (size_t)n));
    const char *names[2] = {"left", "right"};
    for (int i = 0; i < 2; i++)
        CHECK(kh_manager_add_polled(mgr, names[i], cfg));
    kh_config_free(cfg); /* the manager keeps its own copy */

    int next[2] = {1, 1}; /* the number each feed's next message must carry */
    int echoed = 0, asked = 0;
    kh_event events[256];
    long long deadline = now_ms() + WAIT_MS;
    while ((next[0] <= PER_FEED || next[1] <= PER_FEED || !echoed) && now_ms() < deadline) {
        size_t got = 0;
        /* The connections read, write and reconnect only in here. */
        CHECK(kh_manager_poll(mgr, events, 256, 100, &got));
        for (size_t i = 0; i < got; i++) {
            const kh_event *e = &events[i];
            if (e->kind == KH_EVENT_ERROR) {
                fprintf(stderr, "driven: [%s] %s: %s\n", e->conn, kh_result_str(e->error),
                        (const char *)e->data);
                continue;
            }
            if (e->kind != KH_EVENT_TEXT)
                continue; /* open, ping, pong; a later library may add kinds */
            int f = strcmp(e->conn, "left") == 0 ? 0 : 1;
            if (e->len == 5 && memcmp(e->data, "hello", 5) == 0) {
                echoed = 1; /* the feed server echoes what it does not know */
                continue;
            }
            char want[32];
            int wl = snprintf(want, sizeof want, "msg %d", next[f]);
            if (e->len != (size_t)wl || memcmp(e->data, want, (size_t)wl) != 0) {
                fprintf(stderr, "driven: FAIL: %s got '%.*s', expected '%s'\n", e->conn,
                        (int)(e->len < 40 ? e->len : 40), (const char *)e->data, want);
                return 1;
            }
            next[f]++;
        }
        if (!asked && next[0] > 1) {
            /* Queued now, written by the next poll. */
            CHECK(kh_manager_send_text(mgr, "left", "hello", 5));
            asked = 1;
        }
    }
    kh_manager_free(mgr); /* closes both feeds on this thread; nothing runs after it */
    if (next[0] <= PER_FEED || next[1] <= PER_FEED || !echoed) {
        fprintf(stderr, "driven: FAIL: left %d, right %d of %d messages, echo %d\n", next[0] - 1,
                next[1] - 1, PER_FEED, echoed);
        return 1;
    }
    printf("driven: %d messages on each of two feeds, in order, on one thread\n", PER_FEED);
    printf("driven: PASS\n");
    return 0;
}
