/*
 * Minimal reproductions of two bugs found by tests/c/hostile.c (see its report). Run against a
 * feed server (cargo build --release --example feed_server; target/release/examples/feed_server
 * --port 0 prints LISTENING <port>):
 *
 *   cc -Iinclude tests/c/repro_bugs.c target/release/libkharbranth.a -lpthread -ldl -lm -o repro
 *   ./repro lifo  ws://127.0.0.1:PORT/
 *   ./repro flood ws://127.0.0.1:PORT/
 *
 * lifo:  a hook of connection A sends to connection B, then blocks for 3 s. With 4 worker
 *        threads B should keep answering its 200 ms heartbeats (~15 pongs); it gets none, and
 *        sometimes reports KH_PONG_RECEIVE_TIMEOUT: B's task was woken from the blocked worker
 *        and sits in that worker's LIFO slot, which other workers cannot steal.
 * flood: the peer keeps sending (push 20000) while the client closes with a 500 ms close
 *        timeout and a hook that takes 1 ms per message. kh_manager_close should return within
 *        close timeout + 1 s; it returns only after every pending message went through the hook
 *        (~20 s). Same for kh_manager_free. The close timeout / abort is not enforced while
 *        frames keep arriving.
 * Exit status 1 when the bug shows.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kharbranth.h"

static atomic_int pongs, timeouts, texts;
static kh_manager *mgr;

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
static void b_pong(void *u, const char *c, const uint8_t *d, size_t l) {
  (void)u; (void)c; (void)d; (void)l;
  atomic_fetch_add(&pongs, 1);
}
static void b_error(void *u, const char *c, kh_result code, const char *m) {
  (void)u; (void)c; (void)m;
  if (code == KH_PONG_RECEIVE_TIMEOUT) atomic_fetch_add(&timeouts, 1);
}
static void a_text(void *u, const char *c, const char *d, size_t l) {
  (void)u; (void)c;
  if (l == 5 && memcmp(d, "block", 5) == 0) {
    kh_manager_send_text(mgr, "B", "poke", 4); /* wakes B's task from this worker */
    sleep(3);                                  /* ...then blocks this worker */
  }
}
static void slow_text(void *u, const char *c, const char *d, size_t l) {
  (void)u; (void)c; (void)d; (void)l;
  atomic_fetch_add(&texts, 1);
  usleep(1000);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *url = argv[2];
  kh_manager_new_with_threads(4, &mgr);
  kh_config *cfg;
  kh_config_new(url, &cfg);
  if (strcmp(argv[1], "lifo") == 0) {
    kh_hooks ha = {0}, hb = {0};
    ha.on_text = a_text;
    hb.on_pong = b_pong;
    hb.on_error = b_error;
    kh_manager_add(mgr, "A", cfg, &ha);
    kh_config_set_ping_interval_ms(cfg, 200);
    kh_config_set_pong_timeout_ms(cfg, 600);
    kh_manager_add(mgr, "B", cfg, &hb);
    kh_manager_wait_open(mgr, "A", 5000);
    kh_manager_wait_open(mgr, "B", 5000);
    sleep(1);
    int p0 = atomic_load(&pongs);
    kh_manager_send_text(mgr, "A", "block", 5);
    sleep(3);
    int got = atomic_load(&pongs) - p0;
    printf("lifo: B got %d pongs while A's hook blocked 3 s (expected ~15); %d pong timeouts\n",
           got, atomic_load(&timeouts));
    kh_manager_free(mgr);
    kh_config_free(cfg);
    return got < 8 || atomic_load(&timeouts) ? 1 : 0;
  }
  kh_hooks h = {0};
  h.on_text = slow_text;
  kh_config_set_close_timeout_ms(cfg, 500);
  kh_manager_add(mgr, "F", cfg, &h);
  kh_manager_wait_open(mgr, "F", 5000);
  kh_manager_send_text(mgr, "F", "push 20000", 10);
  while (atomic_load(&texts) < 10) usleep(1000);
  long long t0 = now_ms();
  kh_manager_close(mgr, "F", 1000, NULL);
  long long dt = now_ms() - t0;
  printf("flood: kh_manager_close took %lld ms (close timeout 500 ms; expected < 1500); "
         "%d messages went through the hook\n", dt, atomic_load(&texts));
  kh_manager_free(mgr);
  kh_config_free(cfg);
  return dt > 1500 ? 1 : 0;
}
