/*
 * hostile.c: a C caller that misuses the kharbranth C ABI on purpose (issue 4, "A hostile C
 * caller"). Built and run by tests/c/run.sh under ASan+UBSan (static library) and valgrind
 * (shared library).
 *
 *   hostile WS_URL        WS_URL: a running examples/feed_server (echo, "push N", "ping X",
 *                         "close", "drop").
 *
 * Environment:
 *   HOSTILE_QUICK=1       reduced set for valgrind: skips the timing-sensitive heartbeat
 *                         scenarios (a blocked hook vs. 200 ms heartbeats) and sends fewer
 *                         messages from the concurrent senders.
 *   HOSTILE_TIME_SCALE=N  multiplies every time bound (valgrind runs ~10-50x slower).
 *
 * Every wait is bounded. Any failed expectation prints "FAIL file:line: ..." and makes the
 * program exit 1; at the end it prints "hostile: N checks passed".
 *
 * Scenarios also start tiny servers of their own on 127.0.0.1:0: one that accepts TCP but never
 * answers the WebSocket upgrade, and one that completes the upgrade but never answers a close
 * (it reads and discards everything).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kharbranth.h"

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                       */

static atomic_int g_checks;
static atomic_int g_failures;
static int g_quick;
static int g_scale = 1;
static const char *g_url;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    atomic_fetch_add(&g_checks, 1);                                             \
    if (!(cond)) {                                                              \
      atomic_fetch_add(&g_failures, 1);                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                      \
      fprintf(stderr, __VA_ARGS__);                                             \
      fprintf(stderr, "   [%s]\n", #cond);                                      \
      fflush(stderr);                                                           \
    }                                                                           \
  } while (0)

/* The last error of this thread as a string (thread-local buffer). */
static const char *last_err(void) {
  static _Thread_local char buf[1024];
  buf[0] = 0;
  kh_last_error(buf, sizeof buf);
  return buf;
}

static const char *rname(kh_result r) { return kh_result_str((uint32_t)r); }

/* Expects `got == want`; for a failure code also a non-empty kh_last_error on this thread. */
static void expect_rc_at(const char *file, int line, const char *what, kh_result got,
                         kh_result want) {
  atomic_fetch_add(&g_checks, 1);
  if (got != want) {
    atomic_fetch_add(&g_failures, 1);
    fprintf(stderr, "FAIL %s:%d: %s: got %s, want %s (last error: %s)\n", file, line, what,
            rname(got), rname(want), last_err());
    fflush(stderr);
    return;
  }
  if (want != KH_OK) {
    atomic_fetch_add(&g_checks, 1);
    if (kh_last_error(NULL, 0) == 0 || last_err()[0] == 0) {
      atomic_fetch_add(&g_failures, 1);
      fprintf(stderr, "FAIL %s:%d: %s: %s but kh_last_error is empty\n", file, line, what,
              rname(got));
    }
  }
}
#define EXPECT_RC(call, want) expect_rc_at(__FILE__, __LINE__, #call, (call), (want))

/* Like EXPECT_RC but accepts either of two codes. */
#define EXPECT_RC2(call, w1, w2)                                                            \
  do {                                                                                      \
    kh_result r_ = (call);                                                                  \
    CHECK(r_ == (w1) || r_ == (w2), "%s: got %s, want %s or %s (last error: %s)", #call,    \
          rname(r_), rname(w1), rname(w2), last_err());                                     \
  } while (0)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Polls `cond` every 10 ms for up to `ms` (scaled); evaluates to whether it became true. */
#define WAIT_FOR(cond, ms)                                                 \
  ({                                                                       \
    int64_t deadline_ = now_ms() + (int64_t)(ms) * g_scale;                \
    int ok_ = 0;                                                           \
    for (;;) {                                                             \
      if (cond) { ok_ = 1; break; }                                        \
      if (now_ms() > deadline_) break;                                     \
      sleep_ms(10);                                                        \
    }                                                                      \
    ok_;                                                                   \
  })

/* ------------------------------------------------------------------------------------------ */
/* Hook context: counts every callback and checks the lifetime rules                           */

enum hook_kind { H_NONE = 0, H_OPEN, H_TEXT, H_BINARY, H_PING, H_PONG, H_CLOSE, H_FRAME,
                 H_ERROR, H_COUNT };
static const char *kind_name[H_COUNT] = {"none", "on_open", "on_text", "on_binary", "on_ping",
                                         "on_pong", "on_close", "on_frame", "on_error"};

enum mode { M_PLAIN = 0, M_REENTER, M_BLOCK, M_FREE_IN_HOOK, M_AFTER_FREE, M_BURST, M_SLOW };

typedef struct ctx {
  char name[64];
  kh_manager *mgr;
  int mode;
  int kind; /* for M_REENTER: which hook does the calls */
  atomic_int opens, texts, binaries, pings, pongs, closes, frames, errors, drops;
  atomic_int err_by_code[32];
  atomic_int gone;       /* set once close/free returned or on_drop ran: no callback may follow */
  atomic_int late;       /* callbacks seen while `gone` was set */
  atomic_int in_hook;    /* the callbacks of one connection must never run concurrently */
  atomic_int concurrent;
  atomic_int reentered;  /* M_REENTER: invocations of the chosen hook that did calls */
  atomic_int closed_in_hook;
  atomic_int wait_open_refused;
  atomic_int block_ms;   /* M_BLOCK: how long on_text blocks for a "block" message */
  struct ctx *poke;      /* M_BLOCK: connection to send to before blocking (LIFO-slot case) */
  /* M_BURST: echo accounting for the concurrent senders */
  atomic_int burst_echoed;
  atomic_int burst_order_errors;
  int burst_last[8];
  pthread_mutex_t mu;
} ctx;

static void ctx_init(ctx *c, const char *name, kh_manager *mgr, int mode) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", name);
  c->mgr = mgr;
  c->mode = mode;
  for (int i = 0; i < 8; i++) c->burst_last[i] = -1;
  pthread_mutex_init(&c->mu, NULL);
}

static void ctx_destroy(ctx *c) { pthread_mutex_destroy(&c->mu); }

static void enter(ctx *c, const char *conn) {
  if (atomic_load(&c->gone)) atomic_fetch_add(&c->late, 1);
  if (atomic_exchange(&c->in_hook, 1) != 0) atomic_fetch_add(&c->concurrent, 1);
  if (conn && strcmp(conn, c->name) != 0) {
    CHECK(0, "callback for %s got conn=%s", c->name, conn);
  }
}
static void leave(ctx *c) { atomic_store(&c->in_hook, 0); }

/* Checks that nothing broke the lifetime rules of one connection. */
static void check_ctx(ctx *c, int want_drops) {
  CHECK(atomic_load(&c->drops) == want_drops, "%s: on_drop ran %d times, want %d", c->name,
        atomic_load(&c->drops), want_drops);
  CHECK(atomic_load(&c->late) == 0, "%s: %d callback(s) after close/free returned or on_drop",
        c->name, atomic_load(&c->late));
  CHECK(atomic_load(&c->concurrent) == 0, "%s: callbacks of one connection ran concurrently",
        c->name);
}

static void hook_calls(ctx *c, int kind);
static _Atomic(kh_manager *) g_free_target; /* M_FREE_IN_HOOK */
static atomic_int g_freed_in_hook;
static atomic_int g_after_free_calls;

static void on_open(void *ud, const char *conn) {
  ctx *c = ud;
  enter(c, conn);
  atomic_fetch_add(&c->opens, 1);
  hook_calls(c, H_OPEN);
  leave(c);
}

static void after_free_calls(ctx *c) {
  /* Another connection's callback still running after kh_manager_free was called from a hook:
   * its calls are refused with KH_SHUTTING_DOWN (the manager is still alive meanwhile). */
  if (c->mode != M_AFTER_FREE || !atomic_load(&g_freed_in_hook)) return;
  if (atomic_fetch_add(&g_after_free_calls, 1) >= 5) return;
  EXPECT_RC(kh_manager_send_text(c->mgr, c->name, "x", 1), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_restart(c->mgr, c->name), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_rotate(c->mgr, c->name), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_close(c->mgr, c->name, 1000, NULL), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_restart_all(c->mgr), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_send_text(c->mgr, "never-existed", "x", 1), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_wait_open(c->mgr, c->name, 10), KH_INVALID_ARGUMENT); /* in a hook */
  /* state and stats: the header says "other calls ... return KH_SHUTTING_DOWN" */
  kh_conn_state st;
  kh_conn_stats ss;
  EXPECT_RC(kh_manager_state(c->mgr, c->name, &st), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_stats(c->mgr, c->name, &ss), KH_SHUTTING_DOWN);
  kh_conn_stats_ex sx = KH_CONN_STATS_EX_INIT;
  EXPECT_RC(kh_manager_stats_ex(c->mgr, c->name, &sx), KH_SHUTTING_DOWN);
  size_t subs;
  EXPECT_RC(kh_manager_subscribe_text(c->mgr, c->name, "k", "x", 1), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_unsubscribe(c->mgr, c->name, "k", NULL, 0), KH_SHUTTING_DOWN);
  EXPECT_RC(kh_manager_subscription_count(c->mgr, c->name, &subs), KH_SHUTTING_DOWN);
  kh_config *late = NULL;
  EXPECT_RC(kh_config_new(g_url, &late), KH_OK);
  EXPECT_RC(kh_manager_add_polled_ex(c->mgr, "late", late, KH_POLL_STATE_EVENTS),
            KH_SHUTTING_DOWN);
  kh_config_free(late);
}

static void on_text(void *ud, const char *conn, const char *data, size_t len) {
  ctx *c = ud;
  enter(c, conn);
  CHECK(data != NULL, "on_text data NULL");
  atomic_fetch_add(&c->texts, 1);
  if (c->mode == M_BLOCK && len == 5 && memcmp(data, "block", 5) == 0) {
    if (c->poke) {
      /* Wakes the other connection's task from this worker, then blocks it (tokio puts a task
       * woken from a worker into that worker's LIFO slot, which other workers cannot steal). */
      kh_result r = kh_manager_send_text(c->mgr, c->poke->name, "poke", 4);
      CHECK(r == KH_OK || r == KH_QUEUE_FULL, "poke: %s", rname(r));
    }
    sleep_ms(atomic_load(&c->block_ms));
  }
  if (c->mode == M_FREE_IN_HOOK && len == 6 && memcmp(data, "freeme", 6) == 0) {
    kh_manager *m = atomic_exchange(&g_free_target, NULL);
    if (m) {
      int64_t t0 = now_ms();
      kh_manager_free(m); /* hands the shutdown to a helper thread and returns at once */
      int64_t dt = now_ms() - t0;
      atomic_store(&g_freed_in_hook, 1);
      CHECK(dt < 500 * g_scale, "kh_manager_free inside a hook took %lld ms", (long long)dt);
      /* The hook keeps running after the call; the shutdown must wait for it. */
      sleep_ms(200);
    }
  }
  after_free_calls(c);
  if (c->mode == M_AFTER_FREE || c->mode == M_SLOW) sleep_ms(1); /* a slow consumer: still busy after the free */
  if (c->mode == M_BURST && len > 1 && data[0] == 't') {
    int th = -1, seq = -1;
    char tmp[64];
    size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
    memcpy(tmp, data, n);
    tmp[n] = 0;
    if (sscanf(tmp, "t%d-%d", &th, &seq) == 2 && th >= 0 && th < 8) {
      pthread_mutex_lock(&c->mu);
      if (seq <= c->burst_last[th]) atomic_fetch_add(&c->burst_order_errors, 1);
      c->burst_last[th] = seq;
      pthread_mutex_unlock(&c->mu);
      atomic_fetch_add(&c->burst_echoed, 1);
    }
  }
  hook_calls(c, H_TEXT);
  leave(c);
}

static void on_binary(void *ud, const char *conn, const uint8_t *data, size_t len) {
  ctx *c = ud;
  (void)len;
  enter(c, conn);
  CHECK(data != NULL, "on_binary data NULL");
  atomic_fetch_add(&c->binaries, 1);
  hook_calls(c, H_BINARY);
  leave(c);
}

static void on_ping(void *ud, const char *conn, const uint8_t *data, size_t len) {
  ctx *c = ud;
  (void)len;
  enter(c, conn);
  CHECK(data != NULL, "on_ping data NULL");
  atomic_fetch_add(&c->pings, 1);
  hook_calls(c, H_PING);
  leave(c);
}

static void on_pong(void *ud, const char *conn, const uint8_t *data, size_t len) {
  ctx *c = ud;
  (void)len;
  enter(c, conn);
  CHECK(data != NULL, "on_pong data NULL");
  atomic_fetch_add(&c->pongs, 1);
  hook_calls(c, H_PONG);
  leave(c);
}

static void on_close(void *ud, const char *conn, uint16_t code, const char *reason, size_t len) {
  ctx *c = ud;
  (void)code;
  (void)len;
  enter(c, conn);
  CHECK(reason != NULL, "on_close reason NULL");
  atomic_fetch_add(&c->closes, 1);
  hook_calls(c, H_CLOSE);
  leave(c);
}

static void on_frame(void *ud, const char *conn, uint8_t op, const uint8_t *data, size_t len) {
  ctx *c = ud;
  (void)len;
  /* on_frame runs right before the type-specific callback, not concurrently with it */
  enter(c, conn);
  CHECK(op == 1 || op == 2 || op == 8 || op == 9 || op == 10, "on_frame opcode %u", op);
  CHECK(data != NULL, "on_frame data NULL");
  atomic_fetch_add(&c->frames, 1);
  hook_calls(c, H_FRAME);
  leave(c);
}

static void on_error(void *ud, const char *conn, kh_result code, const char *message) {
  ctx *c = ud;
  enter(c, conn);
  CHECK(message != NULL && message[0] != 0, "%s: on_error %s without a message", c->name,
        rname(code));
  atomic_fetch_add(&c->errors, 1);
  atomic_fetch_add(&c->err_by_code[code < 32 ? code : 31], 1);
  hook_calls(c, H_ERROR);
  leave(c);
}

static void on_drop(void *ud) {
  ctx *c = ud;
  enter(c, NULL);
  atomic_fetch_add(&c->drops, 1);
  leave(c);
  atomic_store(&c->gone, 1); /* no callback of this connection may follow */
}

static kh_hooks hooks_for(ctx *c) {
  kh_hooks h = {c, on_open, on_text, on_binary, on_ping, on_pong, on_close, on_frame, on_error,
                on_drop};
  return h;
}

/* Every manager call a callback may make, from inside callback `kind` of a M_REENTER
 * connection: the first time it restarts its own connection, the second time it closes it. */
static void hook_calls(ctx *c, int kind) {
  if (c->mode != M_REENTER || c->kind != kind) return;
  int n = atomic_fetch_add(&c->reentered, 1);
  if (n >= 2) return;
  kh_manager *m = c->mgr;
  const char *k = kind_name[kind];
  kh_conn_state st = 99;
  kh_conn_stats ss;
  kh_result r = kh_manager_state(m, c->name, &st);
  CHECK(r == KH_OK && st <= KH_STATE_CLOSED, "%s: state in %s: %s", c->name, k, rname(r));
  r = kh_manager_stats(m, c->name, &ss);
  CHECK(r == KH_OK, "%s: stats in %s: %s", c->name, k, rname(r));
  r = kh_manager_send_text(m, c->name, "in-hook", 7);
  CHECK(r == KH_OK || r == KH_CONNECTION_DROPPED, "%s: send_text in %s: %s", c->name, k,
        rname(r));
  r = kh_manager_send_binary(m, c->name, (const uint8_t *)"\x01\x02", 2);
  CHECK(r == KH_OK || r == KH_CONNECTION_DROPPED, "%s: send_binary in %s: %s", c->name, k,
        rname(r));
  r = kh_manager_send_ping(m, c->name, (const uint8_t *)"hp", 2);
  CHECK(r == KH_OK || r == KH_CONNECTION_DROPPED, "%s: send_ping in %s: %s", c->name, k,
        rname(r));
  /* Subscriptions from a hook: never blocks; a second add of the key is refused. */
  r = kh_manager_subscribe_text(m, c->name, k, "in-hook", 7);
  CHECK(r == KH_OK || r == KH_SUBSCRIPTION_EXISTS || r == KH_QUEUE_FULL ||
            r == KH_CONNECTION_DROPPED,
        "%s: subscribe in %s: %s", c->name, k, rname(r));
  if (r == KH_OK) {
    EXPECT_RC(kh_manager_subscribe_text(m, c->name, k, "in-hook", 7), KH_SUBSCRIPTION_EXISTS);
    r = kh_manager_unsubscribe(m, c->name, k, "un", 2);
    CHECK(r == KH_OK || r == KH_QUEUE_FULL || r == KH_CONNECTION_DROPPED,
          "%s: unsubscribe in %s: %s", c->name, k, rname(r));
  }
  /* Blocking in a hook is refused. */
  r = kh_manager_wait_open(m, c->name, 1000);
  EXPECT_RC(r, KH_INVALID_ARGUMENT);
  if (r == KH_INVALID_ARGUMENT) atomic_fetch_add(&c->wait_open_refused, 1);
  /* Misuse from inside a hook is refused like anywhere else. */
  EXPECT_RC(kh_manager_send_text(m, "never-existed", "x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_text(m, c->name, "\xff\xfe", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_close(m, c->name, 999, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_state(m, c->name, NULL), KH_INVALID_ARGUMENT);
  if (n == 0) {
    /* A rotation from a hook only posts a request; the restart after it replaces it. */
    r = kh_manager_rotate(m, c->name);
    CHECK(r == KH_OK || r == KH_CONNECTION_DROPPED, "%s: rotate in %s: %s", c->name, k,
          rname(r));
    EXPECT_RC(kh_manager_rotate(m, "never-existed"), KH_CONNECTION_NOT_FOUND);
    r = kh_manager_restart(m, c->name);
    /* Inside on_close/on_error the connection is already on its way down. */
    CHECK(r == KH_OK || r == KH_CONNECTION_DROPPED, "%s: restart in %s: %s", c->name, k,
          rname(r));
  } else {
    int64_t t0 = now_ms();
    r = kh_manager_close(m, c->name, 1000, "closed by its own hook");
    int64_t dt = now_ms() - t0;
    CHECK(r == KH_OK, "%s: close of own connection in %s: %s (%s)", c->name, k, rname(r),
          last_err());
    CHECK(dt < 200 * g_scale, "%s: close inside %s blocked for %lld ms", c->name, k,
          (long long)dt);
    if (r == KH_OK) atomic_store(&c->closed_in_hook, 1);
    /* The name is forgotten at once: a second close finds nothing. */
    EXPECT_RC(kh_manager_close(m, c->name, 1000, NULL), KH_CONNECTION_NOT_FOUND);
    EXPECT_RC(kh_manager_send_text(m, c->name, "x", 1), KH_CONNECTION_NOT_FOUND);
    EXPECT_RC(kh_manager_state(m, c->name, &st), KH_CONNECTION_NOT_FOUND);
    /* Rotation during the close: the name is gone. */
    EXPECT_RC(kh_manager_rotate(m, c->name), KH_CONNECTION_NOT_FOUND);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Tiny servers: silent TCP, and WebSocket that never answers a close                          */

/* SHA-1 (RFC 3174), just enough for Sec-WebSocket-Accept. */
typedef struct { uint32_t h[5]; uint64_t len; uint8_t buf[64]; size_t n; } sha1;
static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
static void sha1_block(sha1 *s, const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
    else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
    else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
    else { f = b ^ c ^ d; k = 0xCA62C1D6; }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d; d = c; c = rol(b, 30); b = a; a = t;
  }
  s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}
static void sha1_do(const uint8_t *p, size_t len, uint8_t out[20]) {
  sha1 s = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
  uint64_t bits = (uint64_t)len * 8;
  while (len >= 64) { sha1_block(&s, p); p += 64; len -= 64; }
  uint8_t last[128] = {0};
  memcpy(last, p, len);
  last[len] = 0x80;
  size_t total = len + 1 + 8 <= 64 ? 64 : 128;
  for (int i = 0; i < 8; i++) last[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  sha1_block(&s, last);
  if (total == 128) sha1_block(&s, last + 64);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(s.h[i] >> 24); out[4 * i + 1] = (uint8_t)(s.h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s.h[i] >> 8); out[4 * i + 3] = (uint8_t)s.h[i];
  }
}
static void base64(const uint8_t *p, size_t n, char *out) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    out[o++] = t[(v >> 18) & 63];
    out[o++] = t[(v >> 12) & 63];
    out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? t[v & 63] : '=';
  }
  out[o] = 0;
}

/* SRV_SILENT: accepts TCP, never answers the upgrade. SRV_WS_NO_CLOSE: completes the upgrade,
 * then reads and discards (never a close reply). SRV_WS_FLOOD: like SRV_WS_NO_CLOSE, and sends
 * small text frames as fast as the client reads them, forever. */
enum srv_mode { SRV_SILENT, SRV_WS_NO_CLOSE, SRV_WS_FLOOD };
#define SRV_MAX 32
typedef struct srv {
  int lfd, port, mode;
  atomic_int stop;
  atomic_int accepted, upgraded;
  pthread_t th;
  pthread_t hth[SRV_MAX];
  int nh;
} srv;
typedef struct { srv *s; int fd; } srv_conn;

/* Waits up to 100 ms for fd to be readable; 1 readable, 0 not yet, -1 stop requested. */
static int srv_wait(srv *s, int fd) {
  if (atomic_load(&s->stop)) return -1;
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, 100);
  return r > 0 ? 1 : 0;
}

static void *srv_conn_main(void *arg) {
  srv_conn sc = *(srv_conn *)arg;
  free(arg);
  srv *s = sc.s;
  char req[4096];
  size_t n = 0;
  int handshaken = s->mode == SRV_SILENT; /* silent: never answers anything */
  static const uint8_t frames[] = {0x81, 5, 'f', 'l', 'o', 'o', 'd', 0x81, 5, 'f', 'l', 'o',
                                   'o', 'd', 0x81, 5, 'f', 'l', 'o', 'o', 'd', 0x81, 5, 'f', 'l',
                                   'o', 'o', 'd'};
  for (;;) {
    if (handshaken && s->mode == SRV_WS_FLOOD) {
      if (atomic_load(&s->stop)) break;
      struct pollfd p = {sc.fd, POLLIN | POLLOUT, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      if (p.revents & POLLOUT) {
        if (send(sc.fd, frames, sizeof frames, MSG_NOSIGNAL) < 0) break;
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char tmp[2048];
        ssize_t r = recv(sc.fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) break;
      }
      continue;
    }
    int w = srv_wait(s, sc.fd);
    if (w < 0) break;
    if (w == 0) continue;
    char tmp[2048];
    ssize_t r = read(sc.fd, tmp, sizeof tmp);
    if (r <= 0) break;
    if (handshaken) continue; /* read and discard: never a close reply */
    size_t take = (size_t)r < sizeof req - 1 - n ? (size_t)r : sizeof req - 1 - n;
    memcpy(req + n, tmp, take);
    n += take;
    req[n] = 0;
    if (!strstr(req, "\r\n\r\n")) continue;
    char *k = strcasestr(req, "Sec-WebSocket-Key:");
    if (!k) break;
    k += strlen("Sec-WebSocket-Key:");
    while (*k == ' ') k++;
    char key[128];
    size_t kl = strcspn(k, "\r\n");
    if (kl > 60) break;
    snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)kl, k);
    uint8_t dig[20];
    char acc[64], resp[256];
    sha1_do((const uint8_t *)key, strlen(key), dig);
    base64(dig, 20, acc);
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      acc);
    if (write(sc.fd, resp, (size_t)rl) != rl) break;
    handshaken = 1;
    atomic_fetch_add(&s->upgraded, 1);
  }
  close(sc.fd);
  return NULL;
}

static void *srv_main(void *arg) {
  srv *s = arg;
  for (;;) {
    int w = srv_wait(s, s->lfd);
    if (w < 0) break;
    if (w == 0) continue;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) continue;
    if (s->nh >= SRV_MAX) { close(fd); continue; }
    atomic_fetch_add(&s->accepted, 1);
    srv_conn *sc = malloc(sizeof *sc);
    sc->s = s;
    sc->fd = fd;
    if (pthread_create(&s->hth[s->nh], NULL, srv_conn_main, sc) != 0) {
      free(sc);
      close(fd);
      continue;
    }
    s->nh++;
  }
  return NULL;
}

static int listen_local(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t al = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static int srv_start(srv *s, int mode) {
  memset(s, 0, sizeof *s);
  s->mode = mode;
  s->lfd = listen_local(&s->port);
  if (s->lfd < 0) return -1;
  return pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(srv *s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->th, NULL);
  for (int i = 0; i < s->nh; i++) pthread_join(s->hth[i], NULL);
  close(s->lfd);
}

/* A port on which nothing listens (bound, then closed). */
static int dead_port(void) {
  int port = 0;
  int fd = listen_local(&port);
  if (fd >= 0) close(fd);
  return port;
}

/* ------------------------------------------------------------------------------------------ */
/* Watchdog: a call that overruns its bound by far fails the whole run at once (the library call
 * cannot be cancelled, and waiting minutes for it helps nobody).                              */

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv = PTHREAD_COND_INITIALIZER;
static int wd_armed;
static int64_t wd_deadline;
static const char *wd_what;

static void *wd_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&wd_mu);
  for (;;) {
    if (wd_armed && now_ms() > wd_deadline) {
      fprintf(stderr, "FAIL watchdog: %s did not return within twice its bound; giving up\n",
              wd_what);
      fprintf(stderr, "hostile: FAILED (watchdog)\n");
      fflush(stderr);
      _exit(1);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&wd_cv, &wd_mu, &ts);
  }
  return NULL;
}

static void watchdog_arm(int64_t ms, const char *what) {
  pthread_mutex_lock(&wd_mu);
  wd_armed = 1;
  wd_deadline = now_ms() + ms;
  wd_what = what;
  pthread_mutex_unlock(&wd_mu);
}

static void watchdog_disarm(void) {
  pthread_mutex_lock(&wd_mu);
  wd_armed = 0;
  pthread_mutex_unlock(&wd_mu);
}

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                      */

static kh_config *new_config(const char *url) {
  kh_config *cfg = NULL;
  kh_result r = kh_config_new(url, &cfg);
  CHECK(r == KH_OK && cfg, "kh_config_new(%s): %s (%s)", url, rname(r), last_err());
  if (!cfg) {
    fprintf(stderr, "cannot continue without a configuration\n");
    exit(1);
  }
  return cfg;
}

static kh_manager *new_manager(uint32_t workers) {
  kh_manager *m = NULL;
  kh_result r = kh_manager_new_with_threads(workers, &m);
  CHECK(r == KH_OK && m, "kh_manager_new_with_threads(%u): %s", workers, rname(r));
  if (!m) exit(1);
  return m;
}

static kh_result add(kh_manager *m, ctx *c, const kh_config *cfg) {
  kh_hooks h = hooks_for(c);
  return kh_manager_add(m, c->name, cfg, &h);
}

/* Frees a manager and marks its connections gone; returns the time free took. */
static int64_t free_manager(kh_manager *m, ctx **cs, int n) {
  int64_t t0 = now_ms();
  kh_manager_free(m);
  int64_t dt = now_ms() - t0;
  for (int i = 0; i < n; i++) atomic_store(&cs[i]->gone, 1);
  return dt;
}

/* ------------------------------------------------------------------------------------------ */
/* Scenarios                                                                                    */

static void *fresh_thread_last_error(void *arg) {
  size_t *out = arg;
  *out = kh_last_error(NULL, 0);
  return NULL;
}

static void test_static_functions(void) {
  /* kh_result_str: every code, and anything out of range */
  static const char *names[] = {
      "KH_OK", "KH_PING_FAILED", "KH_PONG_RECEIVE_TIMEOUT", "KH_READ_ERROR", "KH_WRITE_ERROR",
      "KH_CONNECTION_DROPPED", "KH_CONNECTION_NOT_FOUND", "KH_CONNECT_FAILED",
      "KH_INVALID_ARGUMENT", "KH_ALREADY_EXISTS", "KH_QUEUE_FULL", "KH_SHUTTING_DOWN",
      "KH_TIMEOUT", "KH_PANIC", "KH_RETRIES_EXHAUSTED", "KH_MESSAGE_TOO_LARGE",
      "KH_SYSTEM_ERROR", "KH_IDLE_TIMEOUT", "KH_INFLATE_FAILED", "KH_SUBSCRIPTION_NOT_FOUND",
      "KH_SUBSCRIPTION_EXISTS"};
  for (uint32_t i = 0; i < 21; i++) {
    const char *s = kh_result_str(i);
    CHECK(s != NULL && strncmp(s, names[i], strlen(names[i])) == 0, "kh_result_str(%u) = %s", i,
          s ? s : "(null)");
    CHECK(s && (s[strlen(names[i])] == ':' || s[strlen(names[i])] == 0),
          "kh_result_str(%u) = %s is not the code's name", i, s ? s : "(null)");
  }
  uint32_t bad[] = {21, 100, 255, 256, 0x7fffffffu, 0x80000000u, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *s = kh_result_str(bad[i]);
    CHECK(s && strcmp(s, "KH_UNKNOWN") == 0, "kh_result_str(%u) = %s", bad[i], s ? s : "(null)");
  }
  CHECK(strcmp(kh_version(), KH_VERSION_STRING) == 0, "kh_version %s", kh_version());

  /* kh_last_error: 0 on a thread where nothing failed */
  pthread_t t;
  size_t fresh = 12345;
  pthread_create(&t, NULL, fresh_thread_last_error, &fresh);
  pthread_join(t, NULL);
  CHECK(fresh == 0, "kh_last_error on a fresh thread = %zu", fresh);

  /* snprintf semantics */
  kh_config *out = (kh_config *)(uintptr_t)0x1;
  EXPECT_RC(kh_config_new("http://example.com/", &out), KH_INVALID_ARGUMENT);
  CHECK(out == (kh_config *)(uintptr_t)0x1, "out written on failure");
  size_t n = kh_last_error(NULL, 0);
  CHECK(n > 4, "kh_last_error(NULL, 0) = %zu", n);
  CHECK(kh_last_error(NULL, 50) == n, "kh_last_error(NULL, 50) must only report the length");
  char *full = malloc(n + 1 + 8);
  memset(full, 'X', n + 1 + 8);
  CHECK(kh_last_error(full, n + 1) == n, "return value with room");
  CHECK(strlen(full) == n && full[n + 1] == 'X', "full copy: strlen %zu, guard %c", strlen(full),
        full[n + 1]);
  char small[16];
  memset(small, 'X', sizeof small);
  CHECK(kh_last_error(small, 5) == n, "return value when truncated");
  CHECK(small[4] == 0 && strlen(small) == 4 && memcmp(small, full, 4) == 0 && small[5] == 'X',
        "truncation to 5 bytes: '%.5s' guard %c", small, small[5]);
  memset(small, 'X', sizeof small);
  CHECK(kh_last_error(small, 1) == n && small[0] == 0 && small[1] == 'X', "len 1 gives \"\"");
  memset(small, 'X', sizeof small);
  CHECK(kh_last_error(small, 0) == n && small[0] == 'X', "len 0 writes nothing");
  /* Exact fit: len == n gives n-1 characters + NUL. */
  memset(full, 'X', n + 1 + 8);
  CHECK(kh_last_error(full, n) == n && strlen(full) == n - 1 && full[n] == 'X', "len == n");
  free(full);

  /* Logging: invalid UTF-8 refused; then only errors (keeps the output readable). */
  EXPECT_RC(kh_log_init("\xff\xfe"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_log_init("error"), KH_OK);
  EXPECT_RC(kh_log_init("trace"), KH_OK); /* a second call changes nothing */
}

static void test_null_arguments(void) {
  kh_config *cfg = new_config(g_url);
  kh_manager *m = new_manager(2);
  kh_config *cout = (kh_config *)(uintptr_t)0x1;
  kh_manager *mout = (kh_manager *)(uintptr_t)0x1;
  const uint8_t b[4] = {1, 2, 3, 4};
  kh_conn_state st = (kh_conn_state)77;
  kh_conn_stats ss;
  memset(&ss, 0xAB, sizeof ss);

  /* config */
  EXPECT_RC(kh_config_new(NULL, &cout), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_new(g_url, NULL), KH_INVALID_ARGUMENT);
  CHECK(cout == (kh_config *)(uintptr_t)0x1, "kh_config_new wrote *out on failure");
  kh_config_free(NULL);
  EXPECT_RC(kh_config_set_ping_interval_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_pong_timeout_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_connect_timeout_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_close_timeout_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_max_connection_age_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(NULL, 10, 100), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_max_reconnect_attempts(NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_idle_timeout_ms(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_inflate(NULL, KH_INFLATE_GZIP), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(NULL, "X-A", "b"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, NULL, "b"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X-A", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_subprotocol(NULL, "chat"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_subprotocol(cfg, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_text(NULL, "hi", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_text(cfg, NULL, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_binary(NULL, b, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_binary(cfg, NULL, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_ping_text(NULL, "p", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_ping_text(cfg, NULL, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_ping_text(cfg, NULL, 0), KH_INVALID_ARGUMENT); /* empty */
  EXPECT_RC(kh_config_set_max_message_size(NULL, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_queue_capacity(NULL, 10), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_read_buffer_size(NULL, 4096), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(NULL, 5, 1000, 5), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_rate_limit_pings(NULL, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_receive_timestamps(NULL, 1), KH_INVALID_ARGUMENT);
  {
    /* Outside a callback: KH_OK with 0 for "no time"; NULL pointers are refused, writing
     * nothing. */
    uint64_t mono = 5, wall = 6;
    EXPECT_RC(kh_receive_time(&mono, &wall), KH_OK);
    CHECK(mono == 0 && wall == 0, "a receive time outside a callback: %llu %llu",
          (unsigned long long)mono, (unsigned long long)wall);
    mono = 5;
    EXPECT_RC(kh_receive_time(NULL, &wall), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_receive_time(&mono, NULL), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_receive_time(NULL, NULL), KH_INVALID_ARGUMENT);
    CHECK(mono == 5, "a refused kh_receive_time wrote *mono_ns");
  }
  EXPECT_RC(kh_config_add_ca_file(NULL, "/etc/ssl/certs/ca-certificates.crt"),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_ca_file(cfg, NULL), KH_INVALID_ARGUMENT);

  /* manager */
  EXPECT_RC(kh_manager_new(NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_new_with_threads(2, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_new_with_threads(1025, &mout), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_new_with_threads(UINT32_MAX, &mout), KH_INVALID_ARGUMENT);
  CHECK(mout == (kh_manager *)(uintptr_t)0x1, "kh_manager_new wrote *out on failure");
  kh_manager_free(NULL);

  ctx c;
  ctx_init(&c, "nullconn", m, M_PLAIN);
  kh_hooks h = hooks_for(&c);
  EXPECT_RC(kh_manager_add(NULL, "nullconn", cfg, &h), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add(m, NULL, cfg, &h), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add(m, "nullconn", NULL, &h), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_text(NULL, "nullconn", "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_text(m, NULL, "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_binary(NULL, "nullconn", b, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_binary(m, NULL, b, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_ping(NULL, "nullconn", b, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_ping(m, NULL, b, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_restart(NULL, "nullconn"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_restart(m, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_rotate(NULL, "nullconn"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_rotate(m, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_restart_all(NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(NULL, 5, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(NULL, 0, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_close(NULL, "nullconn", 1000, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_close(m, NULL, 1000, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_state(NULL, "nullconn", &st), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_state(m, NULL, &st), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats(NULL, "nullconn", &ss), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats(m, NULL, &ss), KH_INVALID_ARGUMENT);
  size_t ep = 77;
  EXPECT_RC(kh_manager_endpoint(NULL, "nullconn", &ep), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_endpoint(m, NULL, &ep), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_endpoint(m, "no-such-connection", &ep), KH_CONNECTION_NOT_FOUND);
  CHECK(ep == 77, "endpoint written on failure");
  EXPECT_RC(kh_manager_wait_open(NULL, "nullconn", 10), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_wait_open(m, NULL, 10), KH_INVALID_ARGUMENT);

  /* Now with a live, open connection: NULL data and NULL out-parameters. */
  EXPECT_RC(add(m, &c, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "nullconn", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "nullconn", NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_binary(m, "nullconn", NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_ping(m, "nullconn", NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_state(m, "nullconn", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats(m, "nullconn", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_endpoint(m, "nullconn", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_endpoint(m, "nullconn", &ep), KH_OK);
  CHECK(ep == 0, "the main URL is endpoint 0");
  CHECK(st == (kh_conn_state)77, "state written on failure");
  /* NULL with length 0 is an empty payload. */
  EXPECT_RC(kh_manager_send_text(m, "nullconn", NULL, 0), KH_OK);
  EXPECT_RC(kh_manager_send_binary(m, "nullconn", NULL, 0), KH_OK);
  EXPECT_RC(kh_manager_send_ping(m, "nullconn", NULL, 0), KH_OK);
  /* hooks may be NULL: no callbacks at all */
  EXPECT_RC(kh_manager_add(m, "nohooks", cfg, NULL), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "nohooks", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "nohooks", "push 3", 6), KH_OK);
  /* hooks with every member NULL */
  kh_hooks empty;
  memset(&empty, 0, sizeof empty);
  EXPECT_RC(kh_manager_add(m, "emptyhooks", cfg, &empty), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "emptyhooks", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "emptyhooks", "push 3", 6), KH_OK);
  EXPECT_RC(kh_manager_close(m, "emptyhooks", 1000, NULL), KH_OK);
  EXPECT_RC(kh_manager_state(m, "nullconn", &st), KH_OK);
  CHECK(st == KH_STATE_OPEN, "nullconn state %u", st);

  ctx *cs[] = {&c};
  free_manager(m, cs, 1);
  check_ctx(&c, 1);
  ctx_destroy(&c);
  kh_config_free(cfg);
}

static void test_bad_values(void) {
  kh_config *cfg = new_config(g_url);
  kh_config *out = (kh_config *)(uintptr_t)0x1;

  /* URLs */
  const char *bad_urls[] = {"http://127.0.0.1:1/", "https://127.0.0.1/", "ftp://x/",
                            "ws://", "ws:///path", "wss://", "ws://:80/", "", "not a url",
                            "127.0.0.1:80", "ws://user:secretpw@127.0.0.1:1/",
                            "ws://user@127.0.0.1:1/", "wss://a:b@example.com/",
                            "ws://exa mple.com/", "ws://\xff\xfe/", "\xff\xfe"};
  for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
    kh_result r = kh_config_new(bad_urls[i], &out);
    CHECK(r == KH_INVALID_ARGUMENT, "kh_config_new(\"%s\") = %s", bad_urls[i], rname(r));
    CHECK(kh_last_error(NULL, 0) > 0, "no message for a bad URL");
    CHECK(strstr(last_err(), "secretpw") == NULL, "the error message leaks the password: %s",
          last_err());
  }
  CHECK(out == (kh_config *)(uintptr_t)0x1, "kh_config_new wrote *out on failure");

  /* headers: CR/LF/bad names/reserved names */
  EXPECT_RC(kh_config_add_header(cfg, "X-Key", "abc\r\nInjected: yes"), KH_INVALID_ARGUMENT);
  CHECK(strstr(last_err(), "Injected") == NULL, "error message echoes the header value: %s",
        last_err());
  EXPECT_RC(kh_config_add_header(cfg, "X-Key", "abc\ndef"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X-Key", "abc\rdef"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X-Key\r\nEvil", "v"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X Key", "v"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X:Key", "v"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "", "v"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "\xff\xfe", "v"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X-Key", "\xff\xfe"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "Host", "evil.example"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "connection", "close"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "Upgrade", "h2c"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "Sec-WebSocket-Key", "x"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "sec-websocket-version", "8"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_header(cfg, "X-Api-Key", "s3cret"), KH_OK);
  EXPECT_RC(kh_config_add_subprotocol(cfg, "a b"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_subprotocol(cfg, ""), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_subprotocol(cfg, "a\r\nb"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_subprotocol(cfg, "\xff\xfe"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_ca_file(cfg, "/nonexistent/ca.pem"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_ca_file(cfg, "/dev/null"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_ca_file(cfg, ""), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_ca_file(cfg, "\xff\xfe"), KH_INVALID_ARGUMENT);
  /* Client certificates: NULLs, unreadable files, garbage PEM; each refused, nothing kept. */
  EXPECT_RC(kh_config_set_client_cert_files(NULL, "/nonexistent/c.pem", "/nonexistent/k.pem"),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_files(cfg, NULL, "/nonexistent/k.pem"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_files(cfg, "/nonexistent/c.pem", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_files(cfg, "/nonexistent/c.pem", "/nonexistent/k.pem"),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_files(cfg, "/dev/null", "/dev/null"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_pem(cfg, NULL, 10, (const uint8_t *)"k", 1),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_pem(cfg, (const uint8_t *)"c", 1, NULL, 10),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_pem(cfg, (const uint8_t *)"junk", 4, (const uint8_t *)"junk",
                                          4),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_client_cert_pem(cfg, NULL, 0, NULL, 0), KH_INVALID_ARGUMENT);
  /* Proxies: NULLs and bad URLs refused; a URL with credentials accepted. */
  EXPECT_RC(kh_config_set_proxy(NULL, "http://127.0.0.1:3128"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, ""), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, "ftp://127.0.0.1:21"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, "http://127.0.0.1"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, "socks5://u:p@127.0.0.1:0"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_proxy(cfg, "\xff\xfe"), KH_INVALID_ARGUMENT);
  {
    /* On a config of its own: this one must still connect directly below. */
    kh_config *pc = NULL;
    EXPECT_RC(kh_config_new("ws://127.0.0.1:1/", &pc), KH_OK);
    EXPECT_RC(kh_config_set_proxy(pc, "socks5://u:p%40ss@127.0.0.1:1080"), KH_OK);
    kh_config_free(pc);
  }
  /* Fallback URLs: checked like the main URL. */
  EXPECT_RC(kh_config_add_fallback_url(NULL, "ws://127.0.0.1:1/"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_fallback_url(cfg, NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_fallback_url(cfg, "http://127.0.0.1:1/"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_fallback_url(cfg, "ws://user:pw@127.0.0.1:1/"), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_fallback_url(cfg, "ws://127.0.0.1:0/"), KH_INVALID_ARGUMENT);

  /* out-of-range values */
  EXPECT_RC(kh_config_set_ping_interval_ms(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_pong_timeout_ms(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_connect_timeout_ms(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 0), KH_INVALID_ARGUMENT);
  /* 0 is "off", not out of range; above one year is */
  EXPECT_RC(kh_config_set_max_connection_age_ms(cfg, 0), KH_OK);
  EXPECT_RC(kh_config_set_max_connection_age_ms(cfg, UINT64_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 0, 100), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 100, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 200, 100), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_max_message_size(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_queue_capacity(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_queue_capacity(cfg, (1u << 24) + 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_queue_capacity(cfg, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(cfg, 0, 1000, 5), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(cfg, 5, 0, 5), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(cfg, 5, 1000, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(cfg, 5, UINT64_MAX, 5), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_send_rate_limit(cfg, UINT32_MAX, 1, 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_rate_limit_pings(cfg, 7), KH_OK);
  EXPECT_RC(kh_config_set_rate_limit_pings(cfg, 0), KH_OK);
  EXPECT_RC(kh_config_set_read_buffer_size(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_read_buffer_size(cfg, 255), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_read_buffer_size(cfg, (64u << 20) + 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_read_buffer_size(cfg, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_read_buffer_size(cfg, 256), KH_OK);
  EXPECT_RC(kh_config_set_idle_timeout_ms(cfg, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_idle_timeout_ms(cfg, UINT64_MAX), KH_INVALID_ARGUMENT);
  /* kh_inflate: every value is accepted, anything else is refused */
  for (uint32_t v = KH_INFLATE_NONE; v <= KH_INFLATE_AUTO; v++)
    EXPECT_RC(kh_config_set_inflate(cfg, v), KH_OK);
  EXPECT_RC(kh_config_set_inflate(cfg, KH_INFLATE_AUTO + 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_inflate(cfg, 0x80000000u), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_inflate(cfg, UINT32_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_inflate(cfg, KH_INFLATE_NONE), KH_OK);

  /* huge lengths with a valid (short) pointer: refused without reading */
  const char two[2] = {'h', 'i'};
  EXPECT_RC(kh_config_add_init_text(cfg, two, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_text(cfg, two, (SIZE_MAX >> 1) + 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_binary(cfg, (const uint8_t *)two, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_ping_text(cfg, two, SIZE_MAX), KH_INVALID_ARGUMENT);
  /* non-UTF-8 text */
  EXPECT_RC(kh_config_add_init_text(cfg, "\xff\xfe", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_add_init_text(cfg, "a\xc3", 2), KH_INVALID_ARGUMENT); /* cut sequence */
  EXPECT_RC(kh_config_set_ping_text(cfg, "\xff\xfe", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_ping_text(cfg, "", 0), KH_INVALID_ARGUMENT);

  /* The configuration still works after all the refused calls. */
  kh_manager *m = new_manager(2);
  /* connect-attempt limit: out of range refused, 0 removes it */
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, 5, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, 5, UINT64_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, 1000001, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, UINT32_MAX, 1000), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, 1000, 1), KH_OK);
  EXPECT_RC(kh_manager_set_connect_rate_limit(m, 0, UINT64_MAX), KH_OK);
  ctx c;
  ctx_init(&c, "afterbad", m, M_PLAIN);
  EXPECT_RC(kh_config_set_max_message_size(cfg, 16), KH_OK);
  EXPECT_RC(add(m, &c, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "afterbad", 5000 * g_scale), KH_OK);
  /* message size: 16 accepted, 17 refused */
  EXPECT_RC(kh_manager_send_text(m, "afterbad", "0123456789abcdef", 16), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "afterbad", "0123456789abcdefg", 17), KH_MESSAGE_TOO_LARGE);
  EXPECT_RC(kh_manager_send_binary(m, "afterbad", (const uint8_t *)"0123456789abcdefg", 17),
            KH_MESSAGE_TOO_LARGE);
  /* huge lengths on send */
  EXPECT_RC(kh_manager_send_text(m, "afterbad", two, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_text(m, "afterbad", two, (SIZE_MAX >> 1) + 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_binary(m, "afterbad", (const uint8_t *)two, SIZE_MAX),
            KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_ping(m, "afterbad", (const uint8_t *)two, SIZE_MAX),
            KH_INVALID_ARGUMENT);
  uint8_t p126[126] = {0};
  EXPECT_RC(kh_manager_send_ping(m, "afterbad", p126, 126), KH_INVALID_ARGUMENT);
  /* 125 bytes is a legal ping, but above this connection's 16-byte maximum message size */
  EXPECT_RC2(kh_manager_send_ping(m, "afterbad", p126, 125), KH_OK, KH_MESSAGE_TOO_LARGE);
  EXPECT_RC(kh_manager_send_ping(m, "afterbad", p126, 16), KH_OK);
  /* zero lengths */
  EXPECT_RC(kh_manager_send_text(m, "afterbad", two, 0), KH_OK);
  EXPECT_RC(kh_manager_send_binary(m, "afterbad", (const uint8_t *)two, 0), KH_OK);
  EXPECT_RC(kh_manager_send_ping(m, "afterbad", (const uint8_t *)two, 0), KH_OK);
  /* invalid UTF-8 text */
  EXPECT_RC(kh_manager_send_text(m, "afterbad", "\xff\xfe", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_send_text(m, "afterbad", "\xed\xa0\x80", 3), KH_INVALID_ARGUMENT);
  /* close codes and reasons */
  int bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
    kh_result r = kh_manager_close(m, "afterbad", (uint16_t)bad_codes[i], NULL);
    CHECK(r == KH_INVALID_ARGUMENT, "close code %d: %s", bad_codes[i], rname(r));
  }
  char reason[200];
  memset(reason, 'r', sizeof reason);
  reason[124] = 0;
  EXPECT_RC(kh_manager_close(m, "afterbad", 1000, reason), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_close(m, "afterbad", 1000, "\xff\xfe"), KH_INVALID_ARGUMENT);
  kh_conn_state st;
  EXPECT_RC(kh_manager_state(m, "afterbad", &st), KH_OK);
  CHECK(st == KH_STATE_OPEN, "refused closes changed the state to %u", st);
  /* the echoes of what was accepted arrive (16-byte text, empty text, ...) */
  CHECK(WAIT_FOR(atomic_load(&c.texts) >= 2, 5000), "echoes: %d texts", atomic_load(&c.texts));
  CHECK(atomic_load(&c.errors) == 0, "afterbad saw %d errors", atomic_load(&c.errors));
  reason[123] = 0; /* 123 bytes: the maximum */
  EXPECT_RC(kh_manager_close(m, "afterbad", 4999, reason), KH_OK);
  atomic_store(&c.gone, 1);
  check_ctx(&c, 1);
  ctx *cs[] = {&c};
  free_manager(m, cs, 1);
  check_ctx(&c, 1);
  ctx_destroy(&c);
  kh_config_free(cfg);
}

/* Extreme durations: refused (by the setter or by kh_manager_add, with no on_drop), or accepted
 * and then harmless (no Instant overflow panic in a connection task). The largest accepted value
 * (one year) must work. */
static void extreme_case(kh_manager *m, const char *name, const char *url,
                         void (*setup)(kh_config *), int want_open) {
  kh_config *cfg = new_config(url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 500), KH_OK);
  setup(cfg);
  ctx c;
  ctx_init(&c, name, m, M_PLAIN);
  kh_result r = add(m, &c, cfg);
  CHECK(r == KH_OK || r == KH_INVALID_ARGUMENT, "%s: add: %s", name, rname(r));
  if (r == KH_OK) {
    if (want_open) {
      EXPECT_RC(kh_manager_wait_open(m, name, 5000 * g_scale), KH_OK);
      EXPECT_RC(kh_manager_send_text(m, name, "hello", 5), KH_OK);
      CHECK(WAIT_FOR(atomic_load(&c.texts) >= 1, 5000), "%s: no echo", name);
    } else {
      sleep_ms(300);
    }
    kh_conn_state st;
    EXPECT_RC(kh_manager_state(m, name, &st), KH_OK);
    CHECK(atomic_load(&c.drops) == 0, "%s: the connection task ended early (panic?)", name);
    CHECK(atomic_load(&c.errors) == 0 || !want_open, "%s: %d errors", name,
          atomic_load(&c.errors));
    EXPECT_RC(kh_manager_close(m, name, 1000, NULL), KH_OK);
    atomic_store(&c.gone, 1);
  }
  printf("extreme durations, %s: kh_manager_add %s\n", name, rname(r));
  check_ctx(&c, r == KH_OK ? 1 : 0);
  ctx_destroy(&c);
  kh_config_free(cfg);
}
static void set_max_timeouts(kh_config *cfg) {
  EXPECT_RC2(kh_config_set_ping_interval_ms(cfg, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_config_set_pong_timeout_ms(cfg, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_config_set_connect_timeout_ms(cfg, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_config_set_idle_timeout_ms(cfg, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
}
static void set_year_timeouts(kh_config *cfg) {
  const uint64_t year = 31536000ull * 1000;
  EXPECT_RC(kh_config_set_ping_interval_ms(cfg, year), KH_OK);
  EXPECT_RC(kh_config_set_pong_timeout_ms(cfg, year), KH_OK);
  EXPECT_RC(kh_config_set_connect_timeout_ms(cfg, year), KH_OK);
  EXPECT_RC(kh_config_set_idle_timeout_ms(cfg, year), KH_OK);
}
static void set_max_backoff(kh_config *cfg) {
  EXPECT_RC2(kh_config_set_reconnect_backoff_ms(cfg, 1, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_config_set_max_reconnect_attempts(cfg, UINT32_MAX), KH_OK);
}
static void set_year_backoff(kh_config *cfg) {
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 1, 31536000ull * 1000), KH_OK);
  EXPECT_RC(kh_config_set_max_reconnect_attempts(cfg, UINT32_MAX), KH_OK);
}
static void set_max_close(kh_config *cfg) {
  EXPECT_RC2(kh_config_set_close_timeout_ms(cfg, UINT64_MAX), KH_OK, KH_INVALID_ARGUMENT);
}

static void test_extreme_durations(void) {
  kh_manager *m = new_manager(2);
  char dead[64];
  snprintf(dead, sizeof dead, "ws://127.0.0.1:%d/", dead_port());
  extreme_case(m, "max-timeouts", g_url, set_max_timeouts, 1);
  extreme_case(m, "year-timeouts", g_url, set_year_timeouts, 1);
  extreme_case(m, "max-backoff", dead, set_max_backoff, 0);
  extreme_case(m, "year-backoff", dead, set_year_backoff, 0);
  extreme_case(m, "max-close-timeout", g_url, set_max_close, 1);
  int64_t dt = free_manager(m, NULL, 0);
  CHECK(dt < 3000 * g_scale, "free took %lld ms", (long long)dt);
}

static void test_names_and_lifecycle(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  /* Every socket gets data of its own: the first message a rotation's new socket waits for. */
  EXPECT_RC(kh_config_add_init_text(cfg, "push 3", 6), KH_OK);
  ctx bad, empty, a, dup, c2;
  ctx_init(&bad, "\xff\xfe", m, M_PLAIN);
  ctx_init(&empty, "", m, M_PLAIN);
  ctx_init(&a, "life", m, M_PLAIN);
  ctx_init(&dup, "life", m, M_PLAIN);
  ctx_init(&c2, "life2", m, M_PLAIN);
  kh_conn_state st = (kh_conn_state)77;
  kh_conn_stats ss;

  /* non-UTF-8 and empty names: refused, on_drop never runs */
  EXPECT_RC(add(m, &bad, cfg), KH_INVALID_ARGUMENT);
  EXPECT_RC(add(m, &empty, cfg), KH_INVALID_ARGUMENT);
  const char *badnames[] = {"\xff\xfe", "\xc3", "\xed\xa0\x80"};
  for (size_t i = 0; i < 3; i++) {
    const char *n = badnames[i];
    EXPECT_RC(kh_manager_send_text(m, n, "x", 1), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_send_binary(m, n, (const uint8_t *)"x", 1), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_send_ping(m, n, (const uint8_t *)"x", 1), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_restart(m, n), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_close(m, n, 1000, NULL), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_state(m, n, &st), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_stats(m, n, &ss), KH_INVALID_ARGUMENT);
    EXPECT_RC(kh_manager_wait_open(m, n, 10), KH_INVALID_ARGUMENT);
  }
  /* the empty name cannot exist: not found (or refused) */
  EXPECT_RC2(kh_manager_send_text(m, "", "x", 1), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_manager_restart(m, ""), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_manager_rotate(m, ""), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_manager_close(m, "", 1000, NULL), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_manager_state(m, "", &st), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);
  EXPECT_RC2(kh_manager_wait_open(m, "", 10), KH_CONNECTION_NOT_FOUND, KH_INVALID_ARGUMENT);

  /* a name that never existed */
  const char *n = "never-existed";
  EXPECT_RC(kh_manager_send_text(m, n, "x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_binary(m, n, (const uint8_t *)"x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_ping(m, n, (const uint8_t *)"x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_restart(m, n), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_rotate(m, n), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_close(m, n, 1000, NULL), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_state(m, n, &st), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_stats(m, n, &ss), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_wait_open(m, n, 10), KH_CONNECTION_NOT_FOUND);
  CHECK(st == (kh_conn_state)77, "state written on failure");
  EXPECT_RC(kh_manager_restart_all(m), KH_OK); /* no connections: nothing to do */

  /* duplicate add: refused, the existing connection unaffected, on_drop of the refused hooks
   * never runs */
  EXPECT_RC(add(m, &a, cfg), KH_OK);
  EXPECT_RC(add(m, &dup, cfg), KH_ALREADY_EXISTS);
  EXPECT_RC(add(m, &a, cfg), KH_ALREADY_EXISTS);
  EXPECT_RC(kh_manager_wait_open(m, "life", 5000 * g_scale), KH_OK);
  EXPECT_RC(add(m, &c2, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "life2", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "life", "push 5", 6), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&a.texts) >= 5, 5000), "life got %d texts", atomic_load(&a.texts));
  EXPECT_RC(kh_manager_stats(m, "life", &ss), KH_OK);
  CHECK(ss.messages_in >= 5 && ss.messages_out >= 1, "stats in %llu out %llu",
        (unsigned long long)ss.messages_in, (unsigned long long)ss.messages_out);
  EXPECT_RC(kh_manager_restart(m, "life"), KH_OK);
  EXPECT_RC(kh_manager_restart_all(m), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&a.opens) >= 2, 5000), "life reopened %d times",
        atomic_load(&a.opens));
  EXPECT_RC(kh_manager_wait_open(m, "life", 5000 * g_scale), KH_OK);
  /* A rotation: a second socket to the feed, then the switch; messages keep coming. */
  int texts_before = atomic_load(&a.texts);
  EXPECT_RC(kh_manager_rotate(m, "life"), KH_OK);
  EXPECT_RC(kh_manager_rotate(m, "life"), KH_OK); /* while one is pending: ignored */
  /* the new socket's "push 3" answer: its first message, then the switch */
  CHECK(WAIT_FOR(atomic_load(&a.texts) >= texts_before + 3, 5000), "life got %d texts after rotate",
        atomic_load(&a.texts) - texts_before);

  /* close, then close again and everything else after close */
  int64_t t0 = now_ms();
  EXPECT_RC(kh_manager_close(m, "life", 1000, "done"), KH_OK);
  int64_t dt = now_ms() - t0;
  atomic_store(&a.gone, 1);
  CHECK(atomic_load(&a.drops) == 1, "on_drop not run when kh_manager_close returned");
  CHECK(dt < 2000 * g_scale, "close against the echo server took %lld ms", (long long)dt);
  EXPECT_RC(kh_manager_close(m, "life", 1000, "again"), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_text(m, "life", "x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_binary(m, "life", (const uint8_t *)"x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_send_ping(m, "life", (const uint8_t *)"x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_restart(m, "life"), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_rotate(m, "life"), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_state(m, "life", &st), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_stats(m, "life", &ss), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_wait_open(m, "life", 10), KH_CONNECTION_NOT_FOUND);
  /* the name may be reused after close; its new hooks are a different connection */
  EXPECT_RC(add(m, &dup, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "life", 5000 * g_scale), KH_OK);
  /* wait_open with a zero timeout on an open connection */
  EXPECT_RC2(kh_manager_wait_open(m, "life", 0), KH_OK, KH_TIMEOUT);

  ctx *cs[] = {&dup, &c2};
  dt = free_manager(m, cs, 2);
  CHECK(dt < 3000 * g_scale, "free took %lld ms", (long long)dt);
  sleep_ms(100);
  check_ctx(&bad, 0);
  check_ctx(&empty, 0);
  check_ctx(&a, 1);
  check_ctx(&dup, 1);
  check_ctx(&c2, 1);
  ctx_destroy(&bad);
  ctx_destroy(&empty);
  ctx_destroy(&a);
  ctx_destroy(&dup);
  ctx_destroy(&c2);
  kh_config_free(cfg);
}

/* Every manager call from inside each hook; the hook then closes its own connection. */
static void test_reentrancy(void) {
  kh_manager *m = new_manager(4);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 10, 50), KH_OK);
  ctx cs[H_COUNT];
  ctx *all[H_COUNT];
  int n = 0;
  for (int k = H_OPEN; k < H_COUNT; k++) {
    char name[64];
    snprintf(name, sizeof name, "re-%s", kind_name[k]);
    ctx_init(&cs[n], name, m, M_REENTER);
    cs[n].kind = k;
    all[n] = &cs[n];
    EXPECT_RC(add(m, &cs[n], cfg), KH_OK);
    n++;
  }
  int64_t deadline = now_ms() + 15000 * g_scale;
  for (;;) {
    int done = 1;
    for (int i = 0; i < n; i++) {
      ctx *c = &cs[i];
      if (atomic_load(&c->drops)) continue;
      done = 0;
      switch (c->kind) {
        case H_OPEN: break; /* the hook restarts its connection itself */
        case H_TEXT: case H_FRAME: kh_manager_send_text(m, c->name, "x", 1); break;
        case H_BINARY: kh_manager_send_binary(m, c->name, (const uint8_t *)"b", 1); break;
        case H_PING: kh_manager_send_text(m, c->name, "ping P", 6); break;
        case H_PONG: kh_manager_send_ping(m, c->name, (const uint8_t *)"q", 1); break;
        case H_CLOSE: kh_manager_send_text(m, c->name, "close", 5); break;
        case H_ERROR: kh_manager_send_text(m, c->name, "drop", 4); break;
      }
    }
    if (done || now_ms() > deadline) break;
    sleep_ms(100);
  }
  for (int i = 0; i < n; i++) {
    ctx *c = &cs[i];
    CHECK(atomic_load(&c->closed_in_hook) == 1, "%s: the hook never closed its connection",
          c->name);
    CHECK(atomic_load(&c->wait_open_refused) >= 1, "%s: wait_open was not refused", c->name);
    CHECK(atomic_load(&c->drops) == 1, "%s: on_drop %d times after close in hook", c->name,
          atomic_load(&c->drops));
    kh_conn_state st;
    EXPECT_RC(kh_manager_state(m, c->name, &st), KH_CONNECTION_NOT_FOUND);
  }
  sleep_ms(200);
  int64_t dt = free_manager(m, all, n);
  CHECK(dt < 3000 * g_scale, "free took %lld ms", (long long)dt);
  for (int i = 0; i < n; i++) {
    check_ctx(&cs[i], 1);
    ctx_destroy(&cs[i]);
  }
  kh_config_free(cfg);
}

/* kh_manager_free from inside a hook. */
static void test_free_in_hook(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  ctx f, o, p;
  ctx_init(&f, "freer", m, M_FREE_IN_HOOK);
  ctx_init(&o, "other", m, M_AFTER_FREE);
  ctx_init(&p, "plain", m, M_PLAIN);
  atomic_store(&g_free_target, m);
  atomic_store(&g_freed_in_hook, 0);
  EXPECT_RC(add(m, &f, cfg), KH_OK);
  EXPECT_RC(add(m, &o, cfg), KH_OK);
  EXPECT_RC(add(m, &p, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "freer", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "other", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "plain", 5000 * g_scale), KH_OK);
  /* keep "other" busy receiving while the manager goes away */
  EXPECT_RC(kh_manager_send_text(m, "other", "push 5000", 9), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "freer", "freeme", 6), KH_OK);
  /* From here on m belongs to the helper thread: the main thread never touches it again. */
  CHECK(WAIT_FOR(atomic_load(&g_freed_in_hook), 5000), "the hook never freed the manager");
  kh_manager *unfreed = atomic_exchange(&g_free_target, NULL);
  if (unfreed) { /* the test failed already; do not leave callbacks running on dead frames */
    ctx *cs[] = {&f, &o, &p};
    free_manager(unfreed, cs, 3);
  }
  int64_t t_free = now_ms();
  int ok = WAIT_FOR(atomic_load(&f.drops) && atomic_load(&o.drops) && atomic_load(&p.drops),
                    10000);
  int64_t dt_drops = now_ms() - t_free;
  printf("free in hook: every on_drop ran %lld ms after the free\n", (long long)dt_drops);
  /* close timeout 1 s (+1 s join bound, +slack). KNOWN BUG (flood): "other" is still delivering
   * 5000 pushed messages through its 1 ms hook, and the close timeout is not enforced then. */
  CHECK(getenv("HOSTILE_SKIP_FLOOD") || dt_drops < 4000 * g_scale,
        "on_drop after kh_manager_free in a hook took %lld ms (close timeout 1000 ms)",
        (long long)dt_drops);
  CHECK(ok, "on_drop after free in hook: freer %d other %d plain %d", atomic_load(&f.drops),
        atomic_load(&o.drops), atomic_load(&p.drops));
  printf("free in hook: %d call(s) from another connection's hook after the free\n",
         atomic_load(&g_after_free_calls));
  /* The helper thread finishes stopping the runtime; give it a moment before checking. */
  sleep_ms(500);
  check_ctx(&f, 1);
  check_ctx(&o, 1);
  check_ctx(&p, 1);
  ctx_destroy(&f);
  ctx_destroy(&o);
  ctx_destroy(&p);
  kh_config_free(cfg);
}

/* A hook that blocks for a second must not make other connections' heartbeats time out when
 * the manager has more than one worker thread. With `poke` set, the blocking hook first sends
 * to the heartbeat connection (waking its task from the blocked worker). */
static int blocking_hook_run(uint32_t workers, int poke, int *timeouts_out, int *min_pongs_out) {
  kh_manager *m = new_manager(workers);
  kh_config *slow_cfg = new_config(g_url);
  kh_config *hb_cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_ping_interval_ms(hb_cfg, 200), KH_OK);
  EXPECT_RC(kh_config_set_pong_timeout_ms(hb_cfg, 600), KH_OK);
  EXPECT_RC(kh_config_set_close_timeout_ms(hb_cfg, 500), KH_OK);
  EXPECT_RC(kh_config_set_close_timeout_ms(slow_cfg, 500), KH_OK);
  enum { NHB = 3 };
  ctx slow, hb[NHB];
  ctx *all[NHB + 1];
  ctx_init(&slow, "slow", m, M_BLOCK);
  atomic_store(&slow.block_ms, 1000);
  all[0] = &slow;
  for (int i = 0; i < NHB; i++) {
    char name[32];
    snprintf(name, sizeof name, "hb%d", i);
    ctx_init(&hb[i], name, m, M_PLAIN);
    all[i + 1] = &hb[i];
    EXPECT_RC(add(m, &hb[i], hb_cfg), KH_OK);
  }
  if (poke) slow.poke = &hb[0];
  EXPECT_RC(add(m, &slow, slow_cfg), KH_OK);
  for (int i = 0; i < NHB; i++) EXPECT_RC(kh_manager_wait_open(m, hb[i].name, 5000), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "slow", 5000), KH_OK);
  sleep_ms(500); /* heartbeats running */
  int pongs0[NHB];
  for (int i = 0; i < NHB; i++) pongs0[i] = atomic_load(&hb[i].pongs);
  /* three messages: the hook blocks 3 x 1 s in a row */
  for (int i = 0; i < 3; i++) EXPECT_RC(kh_manager_send_text(m, "slow", "block", 5), KH_OK);
  sleep_ms(3000);
  /* heartbeats answered while the hook was blocked (~15 expected at 200 ms) */
  int min_pongs = 1 << 30;
  for (int i = 0; i < NHB; i++) {
    int d = atomic_load(&hb[i].pongs) - pongs0[i];
    if (d < min_pongs) min_pongs = d;
  }
  *min_pongs_out = min_pongs;
  if (getenv("HOSTILE_DEBUG")) for (int i = 0; i < NHB; i++) printf("hb%d pongs %d frames %d texts %d errors %d\n", i, atomic_load(&hb[i].pongs), atomic_load(&hb[i].frames), atomic_load(&hb[i].texts), atomic_load(&hb[i].errors));
  sleep_ms(500);
  int timeouts = 0;
  for (int i = 0; i < NHB; i++) timeouts += atomic_load(&hb[i].err_by_code[KH_PONG_RECEIVE_TIMEOUT]);
  kh_conn_stats ss;
  EXPECT_RC(kh_manager_stats(m, "hb1", &ss), KH_OK);
  CHECK(ss.last_rtt_us > 0, "heartbeat connection never measured an rtt");
  CHECK(atomic_load(&slow.texts) == 3, "slow got %d of 3 echoes", atomic_load(&slow.texts));
  int64_t dt = free_manager(m, all, NHB + 1);
  CHECK(dt < 3000, "free took %lld ms", (long long)dt);
  for (int i = 0; i < NHB + 1; i++) {
    check_ctx(all[i], 1);
    ctx_destroy(all[i]);
  }
  kh_config_free(slow_cfg);
  kh_config_free(hb_cfg);
  *timeouts_out = timeouts;
  return timeouts;
}

static void test_blocking_hook(void) {
  int t, p;
  blocking_hook_run(4, 0, &t, &p);
  CHECK(t == 0, "4 workers, a hook blocking 3 x 1 s: %d pong timeout(s) on other connections", t);
  CHECK(getenv("HOSTILE_SKIP_LIFO") || p >= 8, "4 workers: other connections got only %d pongs in 3 s while a hook blocked", p);
  printf("blocking hook, 4 workers: %d pong timeouts, >= %d pongs per other connection during "
         "the 3 s of blocking\n", t, p);
  blocking_hook_run(2, 0, &t, &p);
  CHECK(t == 0, "2 workers, a hook blocking 3 x 1 s: %d pong timeout(s) on other connections", t);
  CHECK(getenv("HOSTILE_SKIP_LIFO") || p >= 8, "2 workers: other connections got only %d pongs in 3 s while a hook blocked", p);
  printf("blocking hook, 2 workers: %d pong timeouts, >= %d pongs per other connection\n", t, p);
  if (getenv("HOSTILE_SKIP_LIFO") == NULL) {
    /* KNOWN BUG (tests/c/repro_bugs.c lifo): the blocked hook first sends to a heartbeat
     * connection; tokio places the woken task in the blocked worker's LIFO slot, which no other
     * worker can steal, so that connection stalls for as long as the hook blocks.
     * HOSTILE_SKIP_LIFO=1 skips this and the progress checks above. */
    blocking_hook_run(4, 1, &t, &p);
    CHECK(t == 0,
          "4 workers, hook sends to hb0 then blocks 3 x 1 s: %d pong timeout(s) "
          "(task stuck in the blocked worker's LIFO slot?)",
          t);
    CHECK(p >= 8, "4 workers, poke: other connections got only %d pongs in 3 s", p);
    printf("blocking hook that first sends to another connection, 4 workers: %d pong timeouts, "
           ">= %d pongs per other connection\n", t, p);
  }
  /* One worker: documented to delay every connection; reported, not asserted. */
  blocking_hook_run(1, 0, &t, &p);
  printf("blocking hook, 1 worker (documented to delay every connection): %d pong timeouts, "
         "%d pongs per other connection during the 3 s of blocking\n", t, p);
}

/* free/close while connecting, and while the peer never answers the close */
static void test_free_bounds(void) {
  srv silent, noclose;
  CHECK(srv_start(&silent, SRV_SILENT) == 0, "silent server");
  CHECK(srv_start(&noclose, SRV_WS_NO_CLOSE) == 0, "no-close server");
  char u_dead[64], u_silent[64], u_noclose[64];
  snprintf(u_dead, sizeof u_dead, "ws://127.0.0.1:%d/", dead_port());
  snprintf(u_silent, sizeof u_silent, "ws://127.0.0.1:%d/", silent.port);
  snprintf(u_noclose, sizeof u_noclose, "ws://127.0.0.1:%d/", noclose.port);
  const uint64_t close_ms = 1000;
  kh_config *cd = new_config(u_dead), *cs = new_config(u_silent), *cn = new_config(u_noclose);
  kh_config *cfgs[] = {cd, cs, cn};
  for (int i = 0; i < 3; i++) {
    EXPECT_RC(kh_config_set_close_timeout_ms(cfgs[i], close_ms), KH_OK);
    EXPECT_RC(kh_config_set_connect_timeout_ms(cfgs[i], 60000), KH_OK);
    EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfgs[i], 20, 100), KH_OK);
  }
  const int64_t bound = (int64_t)(close_ms + 3000) * g_scale;

  /* 1. close each kind of stuck connection on its own */
  {
    kh_manager *m = new_manager(2);
    ctx a, b, c;
    ctx_init(&a, "dead", m, M_PLAIN);
    ctx_init(&b, "silent", m, M_PLAIN);
    ctx_init(&c, "noclose", m, M_PLAIN);
    EXPECT_RC(add(m, &a, cd), KH_OK);
    EXPECT_RC(add(m, &b, cs), KH_OK);
    EXPECT_RC(add(m, &c, cn), KH_OK);
    EXPECT_RC(kh_manager_wait_open(m, "noclose", 5000 * g_scale), KH_OK);
    CHECK(WAIT_FOR(atomic_load(&silent.accepted) >= 1, 5000), "silent server saw no connect");
    EXPECT_RC(kh_manager_wait_open(m, "silent", 200), KH_TIMEOUT);
    sleep_ms(200); /* a few refused attempts on "dead" */
    kh_conn_state st;
    EXPECT_RC(kh_manager_state(m, "silent", &st), KH_OK);
    CHECK(st == KH_STATE_CONNECTING, "silent: state %u", st);
    EXPECT_RC(kh_manager_send_text(m, "silent", "x", 1), KH_CONNECTION_DROPPED);
    EXPECT_RC(kh_manager_send_text(m, "dead", "x", 1), KH_CONNECTION_DROPPED);
    const char *names[] = {"dead", "silent", "noclose"};
    ctx *cx[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
      int64_t t0 = now_ms();
      EXPECT_RC(kh_manager_close(m, names[i], 1000, NULL), KH_OK);
      int64_t dt = now_ms() - t0;
      atomic_store(&cx[i]->gone, 1);
      printf("close while %s: %lld ms (close timeout %llu ms)\n",
             i == 0 ? "reconnecting to a dead port" : i == 1 ? "the upgrade is unanswered"
                                                              : "the peer never answers the close",
             (long long)dt, (unsigned long long)close_ms);
      CHECK(dt < bound, "close of %s took %lld ms (bound %lld)", names[i], (long long)dt,
            (long long)bound);
      CHECK(atomic_load(&cx[i]->drops) == 1, "%s: on_drop not run when close returned",
            names[i]);
    }
    int64_t dt = free_manager(m, cx, 0);
    CHECK(dt < bound, "free of an empty manager took %lld ms", (long long)dt);
    for (int i = 0; i < 3; i++) {
      check_ctx(cx[i], 1);
      ctx_destroy(cx[i]);
    }
  }

  /* 2. free with all three stuck at once (plus an open echo connection) */
  {
    kh_manager *m = new_manager(2);
    ctx a, b, c, d;
    ctx_init(&a, "dead", m, M_PLAIN);
    ctx_init(&b, "silent", m, M_PLAIN);
    ctx_init(&c, "noclose", m, M_PLAIN);
    ctx_init(&d, "echo", m, M_PLAIN);
    kh_config *ce = new_config(g_url);
    int acc = atomic_load(&silent.accepted);
    EXPECT_RC(add(m, &a, cd), KH_OK);
    EXPECT_RC(add(m, &b, cs), KH_OK);
    EXPECT_RC(add(m, &c, cn), KH_OK);
    EXPECT_RC(add(m, &d, ce), KH_OK);
    EXPECT_RC(kh_manager_wait_open(m, "noclose", 5000 * g_scale), KH_OK);
    EXPECT_RC(kh_manager_wait_open(m, "echo", 5000 * g_scale), KH_OK);
    CHECK(WAIT_FOR(atomic_load(&silent.accepted) > acc, 5000), "silent server saw no connect");
    ctx *cx[] = {&a, &b, &c, &d};
    int64_t dt = free_manager(m, cx, 4);
    printf("free with connections connecting/unanswered/never closing: %lld ms (bound %lld)\n",
           (long long)dt, (long long)bound);
    CHECK(dt < bound, "free took %lld ms (bound %lld)", (long long)dt, (long long)bound);
    for (int i = 0; i < 4; i++) {
      check_ctx(cx[i], 1);
      ctx_destroy(cx[i]);
    }
    kh_config_free(ce);
  }


  /* 3. free right after add, before anything connected (no wait at all) */
  {
    kh_manager *m = new_manager(2);
    ctx a, b, c;
    ctx_init(&a, "dead", m, M_PLAIN);
    ctx_init(&b, "silent", m, M_PLAIN);
    ctx_init(&c, "noclose", m, M_PLAIN);
    EXPECT_RC(add(m, &a, cd), KH_OK);
    EXPECT_RC(add(m, &b, cs), KH_OK);
    EXPECT_RC(add(m, &c, cn), KH_OK);
    ctx *cx[] = {&a, &b, &c};
    int64_t dt = free_manager(m, cx, 3);
    printf("free immediately after add: %lld ms\n", (long long)dt);
    CHECK(dt < bound, "free took %lld ms (bound %lld)", (long long)dt, (long long)bound);
    for (int i = 0; i < 3; i++) {
      check_ctx(cx[i], 1);
      ctx_destroy(cx[i]);
    }
  }
  for (int i = 0; i < 3; i++) kh_config_free(cfgs[i]);
  srv_stop(&silent);
  srv_stop(&noclose);
}

/* A peer that floods messages and never answers the close, with a plain hook and with a hook
 * that takes 1 ms per message: close and free must still be bounded by the close timeout
 * (+ slack). Runs last: while the bug is open, a watchdog ends the run here. */
static void test_flood_bounds(void) {
  const uint64_t close_ms = 1000;
  const int64_t bound = (int64_t)(close_ms + 3000) * g_scale;
  {
    if (getenv("HOSTILE_SKIP_FLOOD")) {
      printf("SKIPPED (HOSTILE_SKIP_FLOOD): close/free against a peer that floods and never "
             "answers the close\n");
      return;
    }
    srv flood;
    CHECK(srv_start(&flood, SRV_WS_FLOOD) == 0, "flood server");
    char u_flood[64];
    snprintf(u_flood, sizeof u_flood, "ws://127.0.0.1:%d/", flood.port);
    kh_config *cf = new_config(u_flood);
    EXPECT_RC(kh_config_set_close_timeout_ms(cf, close_ms), KH_OK);
    /* rounds: close / free with a plain hook, then close / free with a 1 ms hook */
    for (int round = 0; round < 4; round++) {
      kh_manager *m = new_manager(2);
      ctx a;
      ctx_init(&a, "flood", m, round < 2 ? M_PLAIN : M_SLOW);
      EXPECT_RC(add(m, &a, cf), KH_OK);
      EXPECT_RC(kh_manager_wait_open(m, "flood", 5000 * g_scale), KH_OK);
      CHECK(WAIT_FOR(atomic_load(&a.texts) > 50, 5000), "no flood received");
      ctx *cx[] = {&a};
      int64_t t0 = now_ms(), dt;
      /* KNOWN BUG (reported to the lead): both take minutes, not close_timeout + 1 s. The
       * watchdog fails the run fast instead of waiting; HOSTILE_SKIP_FLOOD=1 skips it. */
      watchdog_arm(bound * 2, round % 2 == 0 ? "kh_manager_close vs a flooding peer"
                                             : "kh_manager_free vs a flooding peer");
      if (round % 2 == 0) {
        EXPECT_RC(kh_manager_close(m, "flood", 1000, NULL), KH_OK);
        dt = now_ms() - t0;
        atomic_store(&a.gone, 1);
        kh_manager_free(m);
      } else {
        dt = free_manager(m, cx, 1);
      }
      watchdog_disarm();
      printf("%s while the peer floods and never answers the close (%s hook): "
             "%lld ms (bound %lld)\n", round % 2 == 0 ? "close" : "free",
             round < 2 ? "fast" : "1 ms/message", (long long)dt, (long long)bound);
      CHECK(dt < bound, "%s against a flooding peer took %lld ms (bound %lld)",
            round % 2 == 0 ? "close" : "free", (long long)dt, (long long)bound);
      check_ctx(&a, 1);
      ctx_destroy(&a);
    }
    kh_config_free(cf);
    srv_stop(&flood);
  }
}

/* 8 threads sending to one connection at once */
typedef struct {
  kh_manager *m;
  int id, count;
  int ok, full, other;
  kh_result other_rc;
} sender;

static void *sender_main(void *arg) {
  sender *s = arg;
  char msg[64];
  for (int j = 0; j < s->count; j++) {
    int n = snprintf(msg, sizeof msg, "t%d-%d", s->id, j);
    kh_result r = kh_manager_send_text(s->m, "burst", msg, (size_t)n);
    if (r == KH_OK) s->ok++;
    else if (r == KH_QUEUE_FULL) { s->full++; usleep(200); }
    else { s->other++; s->other_rc = r; }
    if (j % 64 == 0) {
      kh_conn_state st;
      kh_manager_state(s->m, "burst", &st);
    }
  }
  return NULL;
}

static void test_concurrent_send(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_send_queue_capacity(cfg, 64), KH_OK);
  ctx c;
  ctx_init(&c, "burst", m, M_BURST);
  EXPECT_RC(add(m, &c, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "burst", 5000 * g_scale), KH_OK);
  enum { NT = 8 };
  int per = g_quick ? 150 : 3000;
  sender s[NT];
  pthread_t th[NT];
  for (int i = 0; i < NT; i++) {
    memset(&s[i], 0, sizeof s[i]);
    s[i].m = m;
    s[i].id = i;
    s[i].count = per;
    pthread_create(&th[i], NULL, sender_main, &s[i]);
  }
  int ok = 0, full = 0;
  for (int i = 0; i < NT; i++) {
    pthread_join(th[i], NULL);
    ok += s[i].ok;
    full += s[i].full;
    CHECK(s[i].other == 0, "sender %d: %d sends returned %s", i, s[i].other,
          rname(s[i].other_rc));
  }
  CHECK(ok > 0, "no send accepted");
  int echoed_ok = WAIT_FOR(atomic_load(&c.burst_echoed) >= ok, 30000);
  printf("concurrent send: %d threads x %d: %d accepted, %d KH_QUEUE_FULL, %d echoed back\n", NT,
         per, ok, full, atomic_load(&c.burst_echoed));
  CHECK(echoed_ok && atomic_load(&c.burst_echoed) == ok, "accepted %d, echoed %d", ok,
        atomic_load(&c.burst_echoed));
  CHECK(atomic_load(&c.burst_order_errors) == 0, "%d echoes out of per-thread order",
        atomic_load(&c.burst_order_errors));
  CHECK(atomic_load(&c.errors) == 0, "burst saw %d errors (write error %d)",
        atomic_load(&c.errors), atomic_load(&c.err_by_code[KH_WRITE_ERROR]));
  ctx *cs[] = {&c};
  free_manager(m, cs, 1);
  check_ctx(&c, 1);
  ctx_destroy(&c);
  kh_config_free(cfg);
}

/* Many threads closing/sending/restarting the same connection while it is closed. */
typedef struct { kh_manager *m; atomic_int *closes_ok; } racer;
static void *racer_main(void *arg) {
  racer *r = arg;
  for (int i = 0; i < 20; i++) {
    kh_manager_send_text(r->m, "race", "x", 1);
    kh_manager_restart(r->m, "race");
    kh_conn_stats ss;
    kh_manager_stats(r->m, "race", &ss);
  }
  kh_result rc = kh_manager_close(r->m, "race", 1000, NULL);
  if (rc == KH_OK) atomic_fetch_add(r->closes_ok, 1);
  else CHECK(rc == KH_CONNECTION_NOT_FOUND, "racing close: %s", rname(rc));
  return NULL;
}

static void test_close_race(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  ctx c;
  ctx_init(&c, "race", m, M_PLAIN);
  EXPECT_RC(add(m, &c, cfg), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "race", 5000 * g_scale), KH_OK);
  atomic_int closes_ok = 0;
  racer r = {m, &closes_ok};
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, racer_main, &r);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  atomic_store(&c.gone, 1);
  CHECK(atomic_load(&closes_ok) == 1, "%d of 4 racing closes succeeded", atomic_load(&closes_ok));
  CHECK(atomic_load(&c.drops) == 1, "on_drop %d after racing closes", atomic_load(&c.drops));
  ctx *cs[] = {&c};
  free_manager(m, cs, 1);
  check_ctx(&c, 1);
  ctx_destroy(&c);
  kh_config_free(cfg);
}

/* ------------------------------------------------------------------------------------------ */
/* The event queue: kh_manager_add_polled, kh_manager_poll, the event descriptor, the wake-up   */

static int fd_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

static atomic_int g_poll_in_hook_rc = -1;
static void poll_in_hook_on_open(void *ud, const char *conn) {
  kh_manager *m = ud;
  kh_event ev[2];
  size_t n = 99;
  (void)conn;
  atomic_store(&g_poll_in_hook_rc, (int)kh_manager_poll(m, ev, 2, 1000, &n));
  CHECK(n == 99, "a refused poll wrote n_out (%zu)", n);
}

static void *wakeup_main(void *arg) {
  sleep_ms(100);
  kh_manager_wakeup(arg);
  return NULL;
}

static void test_poll_bad_input(void) {
  kh_manager *m = new_manager(2);
  kh_event ev[4];
  size_t n = 77;
  EXPECT_RC(kh_manager_poll(NULL, ev, 4, 0, &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_poll(m, NULL, 4, 0, &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_poll(m, ev, 0, 0, &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_poll(m, NULL, 0, 0, &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_poll(m, ev, 4, 0, NULL), KH_INVALID_ARGUMENT);
  CHECK(n == 77, "a refused poll wrote n_out (%zu)", n);
  int fd = -7;
  EXPECT_RC(kh_manager_event_fd(NULL, &fd), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_event_fd(m, NULL), KH_INVALID_ARGUMENT);
  CHECK(fd == -7, "a refused kh_manager_event_fd wrote fd_out");
  EXPECT_RC(kh_manager_wakeup(NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_capacity(NULL, 10), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_capacity(m, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_capacity(m, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_capacity(m, 1000), KH_OK);
  EXPECT_RC(kh_manager_set_event_byte_capacity(NULL, 4096), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_byte_capacity(m, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_byte_capacity(m, SIZE_MAX), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_set_event_byte_capacity(m, 1 << 20), KH_OK);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_manager_add_polled(NULL, "p", cfg), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled(m, NULL, cfg), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled(m, "p", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled(m, "", cfg), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled_ex(NULL, "p", cfg, KH_POLL_STATE_EVENTS), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled_ex(m, NULL, cfg, KH_POLL_STATE_EVENTS), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled_ex(m, "p", NULL, KH_POLL_STATE_EVENTS), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled_ex(m, "", cfg, 0), KH_INVALID_ARGUMENT);
  /* Flags this library does not know are refused, and nothing is added. */
  EXPECT_RC(kh_manager_add_polled_ex(m, "p", cfg, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_polled_ex(m, "p", cfg, 0x80000000u | KH_POLL_STATE_EVENTS),
            KH_INVALID_ARGUMENT);
  kh_conn_state pst;
  EXPECT_RC(kh_manager_state(m, "p", &pst), KH_CONNECTION_NOT_FOUND);

  /* No polled connection: the poll waits its timeout and returns no event. */
  EXPECT_RC(kh_manager_event_fd(m, &fd), KH_OK);
  CHECK(fd >= 0, "event fd %d", fd);
  int fd2 = -1;
  EXPECT_RC(kh_manager_event_fd(m, &fd2), KH_OK);
  CHECK(fd2 == fd, "a second kh_manager_event_fd gave %d, the first %d", fd2, fd);
  CHECK(!fd_readable(fd, 0), "the event fd is readable with no event queued");
  watchdog_arm(5000 * g_scale, "kh_manager_poll(timeout 100)");
  int64_t t0 = now_ms();
  EXPECT_RC(kh_manager_poll(m, ev, 4, 100, &n), KH_OK);
  int64_t dt = now_ms() - t0;
  watchdog_disarm();
  CHECK(n == 0, "%zu events without a polled connection", n);
  CHECK(dt >= 90 && dt < 1000 * g_scale, "a poll with timeout 100 took %lld ms", (long long)dt);
  t0 = now_ms();
  EXPECT_RC(kh_manager_poll(m, ev, 4, 0, &n), KH_OK);
  CHECK(n == 0 && now_ms() - t0 < 500 * g_scale, "timeout 0 waited or returned events");

  /* A wake-up makes the next poll return at once, and a blocked one (timeout -1) return. */
  EXPECT_RC(kh_manager_wakeup(m), KH_OK);
  watchdog_arm(5000 * g_scale, "kh_manager_poll after kh_manager_wakeup");
  t0 = now_ms();
  EXPECT_RC(kh_manager_poll(m, ev, 4, -1, &n), KH_OK);
  CHECK(n == 0 && now_ms() - t0 < 1000 * g_scale, "a pending wake-up did not end the poll");
  pthread_t th;
  pthread_create(&th, NULL, wakeup_main, m);
  t0 = now_ms();
  EXPECT_RC(kh_manager_poll(m, ev, 4, -1, &n), KH_OK);
  dt = now_ms() - t0;
  pthread_join(th, NULL);
  watchdog_disarm();
  CHECK(n == 0 && dt < 3000 * g_scale, "a wake-up from a thread: %zu events, %lld ms", n,
        (long long)dt);

  /* A poll from inside a callback is refused (it could wait for events its own thread
   * delivers). */
  kh_hooks h = {0};
  h.user_data = m;
  h.on_open = poll_in_hook_on_open;
  EXPECT_RC(kh_manager_add(m, "hooked", cfg, &h), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&g_poll_in_hook_rc) != -1, 5000), "on_open did not run");
  CHECK(atomic_load(&g_poll_in_hook_rc) == KH_INVALID_ARGUMENT, "poll in a hook gave %s",
        rname((kh_result)atomic_load(&g_poll_in_hook_rc)));
  kh_config_free(cfg);
  watchdog_arm(15000 * g_scale, "kh_manager_free");
  kh_manager_free(m);
  watchdog_disarm();
}

/* An event of interest, copied out of the library's memory. */
typedef struct {
  kh_event ev;
  char conn[64];
  char data[256];
} got_event;

/* The rest of the last batch poll_until looked at: still valid until the next poll. */
static kh_event g_batch[8];
static size_t g_batch_n, g_batch_i;

/* Whether the connection polled by poll_until has receive timestamps on. */
static int g_poll_stamped;

/* Takes events until one of `kind` comes (copied to *out) or `ms` (scaled) pass; checks the
 * pointers and reserved members of every event on the way. */
static int poll_until(kh_manager *m, int kind, got_event *out, int64_t ms) {
  int64_t deadline = now_ms() + ms * g_scale;
  for (;;) {
    while (g_batch_i < g_batch_n) {
      kh_event *e = &g_batch[g_batch_i++];
      CHECK(e->conn && e->data, "event %u with a NULL pointer", (unsigned)e->kind);
      CHECK(e->kind == KH_EVENT_STATE || (e->state == 0 && e->attempts == 0 && e->down_for_ns == 0),
            "event %u carries state members", (unsigned)e->kind);
      CHECK(g_poll_stamped || e->kind == KH_EVENT_STATE ||
                (e->recv_mono_ns == 0 && e->recv_wall_ns == 0),
            "event %u of a connection without receive timestamps has a time", (unsigned)e->kind);
      if ((int)e->kind == kind) {
        out->ev = *e;
        snprintf(out->conn, sizeof out->conn, "%s", e->conn);
        size_t len = e->len < sizeof out->data - 1 ? e->len : sizeof out->data - 1;
        memcpy(out->data, e->data, len);
        out->data[len] = 0;
        return 1;
      }
    }
    if (now_ms() >= deadline) return 0;
    g_batch_n = g_batch_i = 0;
    kh_result r = kh_manager_poll(m, g_batch, 8, 100, &g_batch_n);
    if (r != KH_OK) {
      CHECK(0, "kh_manager_poll: %s (%s)", rname(r), last_err());
      return 0;
    }
  }
}

static void test_poll_numbered_feed(void) {
  const int total = g_quick ? 2000 : 50000;
  g_batch_n = g_batch_i = 0;
  kh_manager *m = new_manager(2);
  /* A small queue and a slow poller: the connection must wait for room, not drop. */
  EXPECT_RC(kh_manager_set_event_capacity(m, 16), KH_OK);
  int fd = -1;
  EXPECT_RC(kh_manager_event_fd(m, &fd), KH_OK);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_manager_add_polled(m, "feed", cfg), KH_OK);
  EXPECT_RC(kh_manager_add_polled(m, "feed", cfg), KH_ALREADY_EXISTS);
  kh_config_free(cfg);
  got_event g;
  CHECK(poll_until(m, KH_EVENT_OPEN, &g, 5000), "no open event");
  CHECK(strcmp(g.conn, "feed") == 0, "open event for '%s'", g.conn);
  char cmd[32];
  int cl = snprintf(cmd, sizeof cmd, "push %d", total);
  EXPECT_RC(kh_manager_send_text(m, "feed", cmd, (size_t)cl), KH_OK);
  CHECK(g_batch_i == g_batch_n, "events after the open event");

  /* Driven by the event descriptor, as an event loop would: wait for it, then poll with
   * timeout 0, a few events at a time. */
  int next = 1, polls = 0, readable_but_empty = 0;
  int64_t deadline = now_ms() + 60000 * g_scale;
  watchdog_arm(120000 * g_scale, "the numbered feed");
  while (next <= total && now_ms() < deadline) {
    if (!fd_readable(fd, 1000)) continue;
    kh_event ev[5];
    size_t n = 0;
    EXPECT_RC(kh_manager_poll(m, ev, 5, 0, &n), KH_OK);
    if (n == 0) readable_but_empty++;
    for (size_t i = 0; i < n; i++) {
      if (ev[i].kind == KH_EVENT_PONG || ev[i].kind == KH_EVENT_PING) continue;
      char want[32];
      int wl = snprintf(want, sizeof want, "msg %d", next);
      if (ev[i].kind != KH_EVENT_TEXT || ev[i].len != (size_t)wl ||
          memcmp(ev[i].data, want, (size_t)wl) != 0 || strcmp(ev[i].conn, "feed") != 0) {
        CHECK(0, "event %u '%.*s' on '%s' where '%s' was due", (unsigned)ev[i].kind,
              (int)(ev[i].len < 40 ? ev[i].len : 40), (const char *)ev[i].data, ev[i].conn,
              want);
        next = total + 1;
        break;
      }
      next++;
    }
    /* The slow part of the poller. */
    if (++polls % 500 == 0) sleep_ms(5);
  }
  watchdog_disarm();
  CHECK(next == total + 1, "only %d of %d numbered messages arrived", next - 1, total);
  CHECK(readable_but_empty == 0, "the event fd was readable %d times with nothing queued",
        readable_but_empty);
  kh_conn_stats st;
  EXPECT_RC(kh_manager_stats(m, "feed", &st), KH_OK);
  CHECK(st.reconnects == 0, "the stalled connection reconnected %llu times",
        (unsigned long long)st.reconnects);

  /* A close from the peer: code and reason; then the reconnect opens it again. */
  EXPECT_RC(kh_manager_send_text(m, "feed", "close", 5), KH_OK);
  CHECK(poll_until(m, KH_EVENT_CLOSE, &g, 5000), "no close event");
  CHECK(g.ev.close_code == 1000 && strcmp(g.data, "bye") == 0, "close %u '%s'",
        (unsigned)g.ev.close_code, g.data);
  CHECK(poll_until(m, KH_EVENT_OPEN, &g, 5000), "no open event after the reconnect");
  /* A dropped socket: an error event with its code and a NUL-terminated message. */
  EXPECT_RC(kh_manager_send_text(m, "feed", "drop", 4), KH_OK);
  CHECK(poll_until(m, KH_EVENT_ERROR, &g, 5000), "no error event");
  CHECK(g.ev.error == KH_CONNECTION_DROPPED, "error event %s", rname(g.ev.error));
  CHECK(g.ev.len > 0 && strlen(g.data) == g.ev.len, "error message '%s' (len %zu)", g.data,
        g.ev.len);

  /* After the last connection closed: polls return no events, within their timeout. */
  watchdog_arm(15000 * g_scale, "kh_manager_close of a polled connection");
  EXPECT_RC(kh_manager_close(m, "feed", 1000, "done"), KH_OK);
  watchdog_disarm();
  kh_event ev[8];
  size_t n = 0;
  int64_t t0 = now_ms();
  for (int i = 0; i < 100; i++) {
    EXPECT_RC(kh_manager_poll(m, ev, 8, 50, &n), KH_OK);
    if (n == 0) break;
  }
  CHECK(n == 0, "events keep coming after the close");
  CHECK(now_ms() - t0 < 5000 * g_scale, "polls after the close took %lld ms",
        (long long)(now_ms() - t0));
  watchdog_arm(15000 * g_scale, "kh_manager_free");
  kh_manager_free(m);
  watchdog_disarm();
}

static void test_poll_free_with_unpolled_events(void) {
  kh_manager *m = new_manager(2);
  EXPECT_RC(kh_manager_set_event_capacity(m, 8), KH_OK);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  EXPECT_RC(kh_manager_add_polled(m, "a", cfg), KH_OK);
  EXPECT_RC(kh_manager_add_polled(m, "b", cfg), KH_OK);
  kh_config_free(cfg);
  EXPECT_RC(kh_manager_wait_open(m, "a", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "b", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "a", "push 100000", 11), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "b", "push 100000", 11), KH_OK);
  int fd = -1;
  EXPECT_RC(kh_manager_event_fd(m, &fd), KH_OK);
  CHECK(fd_readable(fd, 5000 * g_scale), "the event fd did not become readable");
  /* Nobody polls: both connections fill the queue and stop reading; free must still be
   * bounded (by the close timeout) and free every queued event (LeakSanitizer, valgrind). */
  sleep_ms(200);
  watchdog_arm(10000 * g_scale, "kh_manager_free with unpolled events");
  int64_t t0 = now_ms();
  kh_manager_free(m);
  int64_t dt = now_ms() - t0;
  watchdog_disarm();
  CHECK(dt < 5000 * g_scale, "kh_manager_free with unpolled events took %lld ms",
        (long long)dt);
}

static uint64_t mono_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* State events of a polled connection (KH_POLL_STATE_EVENTS): connecting, open (before the
 * open event), reconnecting with the drop's code and message, the re-open with its gap, and
 * closing/closed after kh_manager_close. */
static void test_poll_state_events(void) {
  g_batch_n = g_batch_i = 0;
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_manager_add_polled_ex(m, "st", cfg, KH_POLL_STATE_EVENTS), KH_OK);
  EXPECT_RC(kh_manager_add_polled_ex(m, "st", cfg, KH_POLL_STATE_EVENTS), KH_ALREADY_EXISTS);
  kh_config_free(cfg);
  got_event g;
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000), "no state event");
  CHECK(g.ev.state == KH_STATE_CONNECTING && g.ev.error == KH_OK && g.ev.len == 0 &&
            strcmp(g.conn, "st") == 0,
        "first state event: state %u error %s len %zu on '%s'", (unsigned)g.ev.state,
        rname(g.ev.error), g.ev.len, g.conn);
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000), "no open state event");
  CHECK(g.ev.state == KH_STATE_OPEN && g.ev.attempts == 0 && g.ev.down_for_ns == 0,
        "first open: state %u attempts %u down %llu", (unsigned)g.ev.state,
        (unsigned)g.ev.attempts, (unsigned long long)g.ev.down_for_ns);
  CHECK(g_batch_i < g_batch_n ? g_batch[g_batch_i].kind == KH_EVENT_OPEN : 1,
        "the open event does not follow the open state event");
  CHECK(poll_until(m, KH_EVENT_OPEN, &g, 5000), "no open event");
  /* One data message, then the drop: the re-open says when that message came. */
  uint64_t before_msg = wall_now_ns();
  EXPECT_RC(kh_manager_send_text(m, "st", "last", 4), KH_OK);
  CHECK(poll_until(m, KH_EVENT_TEXT, &g, 5000), "no echo");
  uint64_t after_msg = wall_now_ns();
  EXPECT_RC(kh_manager_send_text(m, "st", "drop", 4), KH_OK);
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000), "no reconnecting state event");
  CHECK(g.ev.state == KH_STATE_RECONNECTING && g.ev.error != KH_OK && g.ev.len > 0 &&
            strlen(g.data) == g.ev.len,
        "reconnecting: state %u error %s message '%s' (len %zu)", (unsigned)g.ev.state,
        rname(g.ev.error), g.data, g.ev.len);
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000), "no re-open state event");
  CHECK(g.ev.state == KH_STATE_OPEN && g.ev.attempts >= 1 && g.ev.down_for_ns > 0 &&
            g.ev.error == KH_OK,
        "re-open: state %u attempts %u down %llu", (unsigned)g.ev.state,
        (unsigned)g.ev.attempts, (unsigned long long)g.ev.down_for_ns);
  CHECK(g.ev.recv_wall_ns >= before_msg && g.ev.recv_wall_ns <= after_msg,
        "the last message before the drop came at %llu, not within %llu .. %llu",
        (unsigned long long)g.ev.recv_wall_ns, (unsigned long long)before_msg,
        (unsigned long long)after_msg);
  watchdog_arm(15000 * g_scale, "kh_manager_close of a polled connection with state events");
  EXPECT_RC(kh_manager_close(m, "st", 1000, "done"), KH_OK);
  watchdog_disarm();
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000) && g.ev.state == KH_STATE_CLOSING,
        "no closing state event");
  CHECK(poll_until(m, KH_EVENT_STATE, &g, 5000) && g.ev.state == KH_STATE_CLOSED,
        "no closed state event");
  watchdog_arm(15000 * g_scale, "kh_manager_free");
  kh_manager_free(m);
  watchdog_disarm();
}

typedef struct {
  atomic_int texts, bad, opens;
  atomic_ullong last_mono;
} rt_ctx;

static void rt_text(void *ud, const char *conn, const char *data, size_t len) {
  rt_ctx *c = ud;
  uint64_t mono = 0, wall = 0;
  (void)conn, (void)data, (void)len;
  uint64_t after_mono = mono_now_ns(), after_wall = wall_now_ns();
  if (kh_receive_time(&mono, &wall) != KH_OK || mono == 0 || wall == 0 || mono > after_mono ||
      wall > after_wall || mono < atomic_load(&c->last_mono))
    atomic_fetch_add(&c->bad, 1);
  atomic_store(&c->last_mono, mono);
  atomic_fetch_add(&c->texts, 1);
}

static void rt_open(void *ud, const char *conn) {
  rt_ctx *c = ud;
  uint64_t mono = 7, wall = 7;
  (void)conn;
  /* Not a data callback: no time. */
  if (kh_receive_time(&mono, &wall) != KH_OK || mono != 0 || wall != 0)
    atomic_fetch_add(&c->bad, 1);
  atomic_fetch_add(&c->opens, 1);
}

/* Receive timestamps (kh_config_set_receive_timestamps): read in data callbacks with
 * kh_receive_time, on CLOCK_MONOTONIC and CLOCK_REALTIME, between the test's readings before
 * the push and in the callback, never going back; polled events carry them in
 * recv_mono_ns/recv_wall_ns, lifecycle events not. */
static void test_receive_timestamps(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_receive_timestamps(cfg, 1), KH_OK);
  rt_ctx c;
  memset(&c, 0, sizeof c);
  kh_hooks h = {0};
  h.user_data = &c;
  h.on_text = rt_text;
  h.on_open = rt_open;
  EXPECT_RC(kh_manager_add(m, "rt", cfg, &h), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "rt", 5000 * g_scale), KH_OK);
  uint64_t before = mono_now_ns();
  EXPECT_RC(kh_manager_send_text(m, "rt", "push 500", 8), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&c.texts) == 500, 10000), "%d of 500 pushed messages arrived",
        atomic_load(&c.texts));
  CHECK(atomic_load(&c.bad) == 0, "%d callbacks saw a wrong receive time", atomic_load(&c.bad));
  CHECK(atomic_load(&c.last_mono) >= before, "a receive time before the push");

  /* Polled, with timestamps: every frame has a time, the open event none. */
  g_batch_n = g_batch_i = 0;
  g_poll_stamped = 1;
  EXPECT_RC(kh_manager_add_polled(m, "rtp", cfg), KH_OK);
  got_event g;
  CHECK(poll_until(m, KH_EVENT_OPEN, &g, 5000), "no open event");
  CHECK(g.ev.recv_mono_ns == 0 && g.ev.recv_wall_ns == 0, "the open event has a time");
  before = mono_now_ns();
  uint64_t wall_before = wall_now_ns();
  EXPECT_RC(kh_manager_send_text(m, "rtp", "stamped", 7), KH_OK);
  CHECK(poll_until(m, KH_EVENT_TEXT, &g, 5000), "no echo");
  uint64_t after = mono_now_ns(), wall_after = wall_now_ns();
  CHECK(g.ev.recv_mono_ns >= before && g.ev.recv_mono_ns <= after,
        "polled receive time %llu not within %llu .. %llu", (unsigned long long)g.ev.recv_mono_ns,
        (unsigned long long)before, (unsigned long long)after);
  CHECK(g.ev.recv_wall_ns >= wall_before && g.ev.recv_wall_ns <= wall_after,
        "polled wall receive time %llu not within %llu .. %llu",
        (unsigned long long)g.ev.recv_wall_ns, (unsigned long long)wall_before,
        (unsigned long long)wall_after);
  g_poll_stamped = 0;
  kh_config_free(cfg);
  watchdog_arm(15000 * g_scale, "kh_manager_free");
  kh_manager_free(m);
  watchdog_disarm();
}

/* ------------------------------------------------------------------------------------------ */
/* Growable structs (issue 11 item 7): kh_hooks_ex and kh_conn_stats_ex                        */

/* kh_hooks_ex as a program built against its first version declares it: the members up to
 * on_drop, nothing after. The library must read only these. */
typedef struct {
  size_t struct_size;
  void *user_data;
  void (*on_open)(void *, const char *);
  void (*on_text)(void *, const char *, const char *, size_t);
  void (*on_binary)(void *, const char *, const uint8_t *, size_t);
  void (*on_ping)(void *, const char *, const uint8_t *, size_t);
  void (*on_pong)(void *, const char *, const uint8_t *, size_t);
  void (*on_close)(void *, const char *, uint16_t, const char *, size_t);
  void (*on_frame)(void *, const char *, uint8_t, const uint8_t *, size_t);
  void (*on_error)(void *, const char *, kh_result, const char *);
  void (*on_drop)(void *);
} hooks_ex_v1;

typedef struct {
  atomic_int opens, texts, drops, states, closed, rotated;
  atomic_int seen[5];         /* state changes by kh_conn_state */
  atomic_uint reopen_attempts; /* attempts of the last KH_STATE_OPEN with a gap */
  atomic_ullong reopen_down_ns;
  atomic_int bad; /* a change that broke the header's promises */
} gx_ctx;

static void gx_open(void *ud, const char *conn) {
  (void)conn;
  atomic_fetch_add(&((gx_ctx *)ud)->opens, 1);
}
static void gx_text(void *ud, const char *conn, const char *data, size_t len) {
  (void)conn, (void)data, (void)len;
  atomic_fetch_add(&((gx_ctx *)ud)->texts, 1);
}
static void gx_drop(void *ud) { atomic_fetch_add(&((gx_ctx *)ud)->drops, 1); }
static void gx_rotated(void *ud, const char *conn) {
  gx_ctx *g = ud;
  if (!conn || strcmp(conn, "gx-rot") != 0) atomic_fetch_add(&g->bad, 1);
  atomic_fetch_add(&g->rotated, 1);
}
static void gx_state(void *ud, const char *conn, const kh_state_change *ch) {
  gx_ctx *g = ud;
  if (!conn || !ch || !ch->reason_message || (unsigned)ch->state > 4) {
    atomic_fetch_add(&g->bad, 1);
    return;
  }
  /* A reason has a message; no reason, an empty one. */
  if ((ch->reason == KH_OK) != (ch->reason_message[0] == 0)) atomic_fetch_add(&g->bad, 1);
  atomic_fetch_add(&g->seen[ch->state], 1);
  if (ch->state == KH_STATE_OPEN && ch->attempts > 0) {
    if (ch->down_for_ns == 0) atomic_fetch_add(&g->bad, 1);
    atomic_store(&g->reopen_attempts, ch->attempts);
    atomic_store(&g->reopen_down_ns, ch->down_for_ns);
  }
  atomic_fetch_add(&g->states, 1);
}

static int wait_int(atomic_int *v, int want, int ms) {
  int64_t end = now_ms() + (int64_t)ms * g_scale;
  while (atomic_load(v) < want && now_ms() < end) sleep_ms(5);
  return atomic_load(v) >= want;
}

static uint64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_growable_structs(void) {
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_reconnect_backoff_ms(cfg, 20, 200), KH_OK);
  kh_manager *m = new_manager(2);
  gx_ctx g;
  memset(&g, 0, sizeof g);

  /* NULL arguments and struct sizes out of range: refused, nothing added, no on_drop. */
  kh_hooks_ex h = KH_HOOKS_EX_INIT;
  CHECK(h.struct_size == sizeof(kh_hooks_ex) && h.on_state == NULL, "KH_HOOKS_EX_INIT");
  h.user_data = &g;
  h.on_drop = gx_drop;
  EXPECT_RC(kh_manager_add_ex(NULL, "gx", cfg, &h), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_ex(m, NULL, cfg, &h), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_add_ex(m, "gx", NULL, &h), KH_INVALID_ARGUMENT);
  size_t bad_sizes[] = {0, 1, sizeof(size_t), KH_HOOKS_EX_MIN_SIZE - 1, 4097, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    h.struct_size = bad_sizes[i];
    EXPECT_RC(kh_manager_add_ex(m, "gx", cfg, &h), KH_INVALID_ARGUMENT);
    CHECK(strstr(last_err(), "struct_size") != NULL, "error names struct_size: %s", last_err());
  }
  kh_conn_state st;
  EXPECT_RC(kh_manager_state(m, "gx", &st), KH_CONNECTION_NOT_FOUND);
  CHECK(atomic_load(&g.drops) == 0, "on_drop ran for a refused add");
  /* NULL hooks: no callbacks, like kh_manager_add. */
  EXPECT_RC(kh_manager_add_ex(m, "gx-none", cfg, NULL), KH_OK);
  EXPECT_RC(kh_manager_add_ex(m, "gx-none", cfg, NULL), KH_ALREADY_EXISTS);
  EXPECT_RC(kh_manager_close(m, "gx-none", 1000, NULL), KH_OK);

  /* A first-version struct (smaller struct_size): works, the missing members count as NULL.
   * The bytes after it are poisoned: reading them would call garbage. */
  struct {
    hooks_ex_v1 v1;
    unsigned char poison[64];
  } old;
  memset(&old, 0xA5, sizeof old);
  memset(&old.v1, 0, sizeof old.v1);
  old.v1.struct_size = sizeof old.v1;
  old.v1.user_data = &g;
  old.v1.on_open = gx_open;
  old.v1.on_text = gx_text;
  old.v1.on_drop = gx_drop;
  CHECK(sizeof old.v1 == KH_HOOKS_EX_MIN_SIZE, "v1 size %zu", sizeof old.v1);
  EXPECT_RC(kh_manager_add_ex(m, "gx-v1", cfg, (const kh_hooks_ex *)&old.v1), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "gx-v1", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "gx-v1", "push 3", 6), KH_OK);
  CHECK(wait_int(&g.texts, 3, 5000), "v1 hooks got %d texts", atomic_load(&g.texts));
  EXPECT_RC(kh_manager_close(m, "gx-v1", 1000, NULL), KH_OK);
  CHECK(atomic_load(&g.drops) == 1, "v1 on_drop ran %d times", atomic_load(&g.drops));
  CHECK(atomic_load(&g.states) == 0, "a v1 struct got state changes");

  /* The current struct with on_state: connect, a drop by the server, the re-open's gap. */
  memset(&g, 0, sizeof g);
  kh_hooks_ex full = KH_HOOKS_EX_INIT;
  full.user_data = &g;
  full.on_open = gx_open;
  full.on_drop = gx_drop;
  full.on_state = gx_state;
  uint64_t wall0 = realtime_ns();
  EXPECT_RC(kh_manager_add_ex(m, "gx-full", cfg, &full), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "gx-full", 5000 * g_scale), KH_OK);
  CHECK(wait_int(&g.seen[KH_STATE_OPEN], 1, 5000), "first KH_STATE_OPEN");
  CHECK(atomic_load(&g.seen[KH_STATE_CONNECTING]) == 1, "one KH_STATE_CONNECTING");
  EXPECT_RC(kh_manager_send_text(m, "gx-full", "drop", 4), KH_OK);
  CHECK(wait_int(&g.seen[KH_STATE_OPEN], 2, 5000), "the re-open");
  CHECK(wait_int(&g.opens, 2, 5000), "two on_open");
  CHECK(atomic_load(&g.seen[KH_STATE_RECONNECTING]) == 1, "one KH_STATE_RECONNECTING, got %d",
        atomic_load(&g.seen[KH_STATE_RECONNECTING]));
  CHECK(atomic_load(&g.reopen_attempts) >= 1, "re-open attempts %u",
        atomic_load(&g.reopen_attempts));
  CHECK(atomic_load(&g.reopen_down_ns) > 0, "re-open down time");

  /* kh_conn_stats_ex: bad input writes nothing. */
  kh_conn_stats_ex sx;
  memset(&sx, 0xCD, sizeof sx);
  sx.struct_size = sizeof sx;
  EXPECT_RC(kh_manager_stats_ex(NULL, "gx-full", &sx), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats_ex(m, NULL, &sx), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats_ex(m, "gx-full", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_stats_ex(m, "no-such-connection", &sx), KH_CONNECTION_NOT_FOUND);
  sx.struct_size = KH_CONN_STATS_EX_MIN_SIZE - 1;
  EXPECT_RC(kh_manager_stats_ex(m, "gx-full", &sx), KH_INVALID_ARGUMENT);
  sx.struct_size = 4097;
  EXPECT_RC(kh_manager_stats_ex(m, "gx-full", &sx), KH_INVALID_ARGUMENT);
  CHECK(sx.messages_in == 0xCDCDCDCDCDCDCDCDull, "stats_ex wrote on failure");
  /* The first-version size: only the kh_conn_stats members are written. */
  sx.struct_size = KH_CONN_STATS_EX_MIN_SIZE;
  EXPECT_RC(kh_manager_stats_ex(m, "gx-full", &sx), KH_OK);
  CHECK(sx.struct_size == KH_CONN_STATS_EX_MIN_SIZE, "struct_size changed");
  CHECK(sx.reconnects == 1, "reconnects %llu", (unsigned long long)sx.reconnects);
  CHECK(sx.endpoint == 0xCDCDCDCDCDCDCDCDull && sx.last_disconnect_message[0] == (char)0xCD,
        "stats_ex wrote past struct_size");
  /* The current size: every member. */
  kh_conn_stats_ex full_sx = KH_CONN_STATS_EX_INIT;
  EXPECT_RC(kh_manager_stats_ex(m, "gx-full", &full_sx), KH_OK);
  uint64_t wall1 = realtime_ns();
  CHECK(full_sx.reconnects == 1 && full_sx.endpoint == 0 && full_sx.rotations == 0,
        "stats_ex counters");
  CHECK(full_sx.connected_since_ns >= wall0 && full_sx.connected_since_ns <= wall1,
        "connected_since %llu not in [%llu, %llu]",
        (unsigned long long)full_sx.connected_since_ns, (unsigned long long)wall0,
        (unsigned long long)wall1);
  CHECK(full_sx.down_time_ns == atomic_load(&g.reopen_down_ns), "down time %llu vs %llu",
        (unsigned long long)full_sx.down_time_ns,
        (unsigned long long)atomic_load(&g.reopen_down_ns));
  CHECK(full_sx.last_disconnect != KH_OK && full_sx.last_disconnect_message[0] != 0 &&
            memchr(full_sx.last_disconnect_message, 0, sizeof full_sx.last_disconnect_message),
        "last disconnect %s", rname(full_sx.last_disconnect));

  EXPECT_RC(kh_manager_close(m, "gx-full", 1000, NULL), KH_OK);
  CHECK(atomic_load(&g.seen[KH_STATE_CLOSING]) == 1 && atomic_load(&g.seen[KH_STATE_CLOSED]) == 1,
        "closing %d closed %d", atomic_load(&g.seen[KH_STATE_CLOSING]),
        atomic_load(&g.seen[KH_STATE_CLOSED]));
  CHECK(atomic_load(&g.drops) == 1, "on_drop once");
  CHECK(atomic_load(&g.bad) == 0, "%d state changes broke the header", atomic_load(&g.bad));

  /* on_rotated: once per switch, and the stats count it. The new socket switches on its first
   * data message: the init message asks the feed server for some. */
  memset(&g, 0, sizeof g);
  kh_config *rcfg = new_config(g_url);
  EXPECT_RC(kh_config_add_init_text(rcfg, "push 3", 6), KH_OK);
  kh_hooks_ex rot = KH_HOOKS_EX_INIT;
  rot.user_data = &g;
  rot.on_text = gx_text;
  rot.on_rotated = gx_rotated;
  EXPECT_RC(kh_manager_add_ex(m, "gx-rot", rcfg, &rot), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "gx-rot", 5000 * g_scale), KH_OK);
  CHECK(wait_int(&g.texts, 3, 5000), "gx-rot texts %d", atomic_load(&g.texts));
  EXPECT_RC(kh_manager_rotate(m, "gx-rot"), KH_OK);
  CHECK(wait_int(&g.rotated, 1, 5000), "on_rotated ran %d times", atomic_load(&g.rotated));
  CHECK(wait_int(&g.texts, 6, 5000), "gx-rot texts after the rotation %d",
        atomic_load(&g.texts));
  kh_conn_stats_ex rsx = KH_CONN_STATS_EX_INIT;
  EXPECT_RC(kh_manager_stats_ex(m, "gx-rot", &rsx), KH_OK);
  CHECK(rsx.rotations == 1 && rsx.reconnects == 0, "rotations %llu reconnects %llu",
        (unsigned long long)rsx.rotations, (unsigned long long)rsx.reconnects);
  EXPECT_RC(kh_manager_close(m, "gx-rot", 1000, NULL), KH_OK);
  CHECK(atomic_load(&g.rotated) == 1 && atomic_load(&g.bad) == 0, "rotated %d bad %d",
        atomic_load(&g.rotated), atomic_load(&g.bad));
  kh_config_free(rcfg);
  kh_manager_free(m);
  kh_config_free(cfg);
}

/* Live subscriptions: NULL and bad arguments, duplicate and unknown keys, oversize, the replay
 * after a restart (the feed server answers the subscribe message "push 1" with one text), and
 * calls after the connection is closed. */
static void test_subscriptions(void) {
  kh_manager *m = new_manager(2);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_max_message_size(cfg, 16), KH_OK);
  const uint8_t b[2] = {1, 2};
  size_t n = 77;
  CHECK(strncmp(kh_result_str(KH_SUBSCRIPTION_NOT_FOUND), "KH_SUBSCRIPTION_NOT_FOUND:", 26) == 0 &&
            strncmp(kh_result_str(KH_SUBSCRIPTION_EXISTS), "KH_SUBSCRIPTION_EXISTS:", 23) == 0 &&
            KH_SUBSCRIPTION_NOT_FOUND == 19 && KH_SUBSCRIPTION_EXISTS == 20,
        "subscription codes: %s, %s", kh_result_str(KH_SUBSCRIPTION_NOT_FOUND),
        kh_result_str(KH_SUBSCRIPTION_EXISTS));
  EXPECT_RC(kh_manager_subscribe_text(NULL, "subs", "k", "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, NULL, "k", "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", NULL, "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_binary(NULL, "subs", "k", b, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_binary(m, "subs", NULL, b, 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe(NULL, "subs", "k", NULL, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe(m, NULL, "k", NULL, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", NULL, NULL, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe_binary(NULL, "subs", "k", NULL, 0), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscription_count(NULL, "subs", &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscription_count(m, NULL, &n), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "k", "x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "k", NULL, 0), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_subscription_count(m, "subs", &n), KH_CONNECTION_NOT_FOUND);
  CHECK(n == 77, "subscription count written on failure");

  ctx c;
  ctx_init(&c, "subs", m, M_PLAIN);
  EXPECT_RC(add(m, &c, cfg), KH_OK);
  /* Added while connecting: sent once when the connection opens. */
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "one", "push 1", 6), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "subs", 5000 * g_scale), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&c.texts) >= 1, 5000), "subs got %d texts", atomic_load(&c.texts));
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "one", "push 2", 6), KH_SUBSCRIPTION_EXISTS);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "big", "push 1 ..........", 17),
            KH_MESSAGE_TOO_LARGE);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "bad", "\xff\xfe", 2), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "\xff", "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "", "x", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "nul", NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_binary(m, "subs", "bin", NULL, 3), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscribe_binary(m, "subs", "bin", b, 2), KH_OK);
  EXPECT_RC(kh_manager_subscription_count(m, "subs", NULL), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_subscription_count(m, "subs", &n), KH_OK);
  CHECK(n == 2, "%zu subscriptions, not 2", n);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "zz", NULL, 0), KH_SUBSCRIPTION_NOT_FOUND);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "bin", "\xff", 1), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "bin", NULL, 4), KH_INVALID_ARGUMENT);
  EXPECT_RC(kh_manager_unsubscribe_binary(m, "subs", "bin", NULL, 0), KH_OK);
  EXPECT_RC(kh_manager_unsubscribe_binary(m, "subs", "bin", NULL, 0), KH_SUBSCRIPTION_NOT_FOUND);
  EXPECT_RC(kh_manager_subscription_count(m, "subs", &n), KH_OK);
  CHECK(n == 1, "%zu subscriptions, not 1", n);
  /* The restart replays "push 1": one more text. */
  int before = atomic_load(&c.texts);
  EXPECT_RC(kh_manager_restart(m, "subs"), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&c.texts) >= before + 1, 5000), "no replay after the restart");
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "one", "push 1", 6), KH_OK);
  CHECK(WAIT_FOR(atomic_load(&c.texts) >= before + 2, 5000), "unsubscribe message not sent");
  EXPECT_RC(kh_manager_close(m, "subs", 1000, NULL), KH_OK);
  atomic_store(&c.gone, 1);
  EXPECT_RC(kh_manager_subscribe_text(m, "subs", "k", "x", 1), KH_CONNECTION_NOT_FOUND);
  EXPECT_RC(kh_manager_unsubscribe(m, "subs", "one", NULL, 0), KH_CONNECTION_NOT_FOUND);
  ctx *cs[] = {&c};
  free_manager(m, cs, 1);
  check_ctx(&c, 1);
  ctx_destroy(&c);
  kh_config_free(cfg);
}

/* A driven manager (kh_manager_new_driven): no thread of its own; its connections run inside
 * kh_manager_poll and the other calls that wait. A numbered feed through a slow poller with a
 * small queue, then a hook that frees the manager inside a poll while a second connection has
 * thousands of events queued: the poll returns KH_SHUTTING_DOWN with no events, the manager
 * and every queued event are freed (LeakSanitizer, valgrind), on_drop runs for both. */
static _Atomic int g_driven_drops;
static void driven_free_in_hook(void *ud, const char *conn, const char *data, size_t len) {
  (void)conn;
  if (len == 6 && memcmp(data, "freeme", 6) == 0) kh_manager_free((kh_manager *)ud);
}
static void driven_drop(void *ud) {
  (void)ud;
  atomic_fetch_add(&g_driven_drops, 1);
}

static void test_driven(void) {
  EXPECT_RC(kh_manager_new_driven(NULL), KH_INVALID_ARGUMENT);
  kh_manager *m = NULL;
  EXPECT_RC(kh_manager_new_driven(&m), KH_OK);
  int fd = -1;
  EXPECT_RC(kh_manager_event_fd(m, &fd), KH_INVALID_ARGUMENT);
  CHECK(fd == -1, "a refused kh_manager_event_fd wrote %d", fd);
  EXPECT_RC(kh_manager_set_event_capacity(m, 16), KH_OK);
  kh_config *cfg = new_config(g_url);
  EXPECT_RC(kh_config_set_close_timeout_ms(cfg, 1000), KH_OK);
  EXPECT_RC(kh_manager_add_polled(m, "feed", cfg), KH_OK);
  kh_hooks h;
  memset(&h, 0, sizeof h);
  h.user_data = m;
  h.on_text = driven_free_in_hook;
  h.on_drop = driven_drop;
  atomic_store(&g_driven_drops, 0);
  EXPECT_RC(kh_manager_add(m, "hooked", cfg, &h), KH_OK);
  kh_config_free(cfg);
  watchdog_arm(60000 * g_scale, "the driven manager");
  EXPECT_RC(kh_manager_wait_open(m, "feed", 5000 * g_scale), KH_OK);
  EXPECT_RC(kh_manager_wait_open(m, "hooked", 5000 * g_scale), KH_OK);

  const int total = g_quick ? 2000 : 30000;
  char cmd[32];
  int cl = snprintf(cmd, sizeof cmd, "push %d", total);
  EXPECT_RC(kh_manager_send_text(m, "feed", cmd, (size_t)cl), KH_OK);
  int next = 1, polls = 0;
  int64_t deadline = now_ms() + 30000 * g_scale;
  while (next <= total && now_ms() < deadline) {
    kh_event ev[7];
    size_t n = 0;
    EXPECT_RC(kh_manager_poll(m, ev, 7, 100, &n), KH_OK);
    for (size_t i = 0; i < n; i++) {
      if (ev[i].kind != KH_EVENT_TEXT) continue;
      char want[32];
      int wl = snprintf(want, sizeof want, "msg %d", next);
      if (ev[i].len != (size_t)wl || memcmp(ev[i].data, want, (size_t)wl) != 0) {
        CHECK(0, "'%.*s' where '%s' was due", (int)(ev[i].len < 40 ? ev[i].len : 40),
              (const char *)ev[i].data, want);
        next = total + 1;
        break;
      }
      next++;
    }
    if (++polls % 300 == 0) sleep_ms(2); /* the slow part of the poller */
  }
  CHECK(next == total + 1, "driven: only %d of %d numbered messages arrived", next - 1, total);

  /* Thousands of events left queued, then the hook frees the manager inside the poll. */
  EXPECT_RC(kh_manager_send_text(m, "feed", "push 5000", 9), KH_OK);
  /* Twice: the second free, from a callback still running, must be ignored. */
  EXPECT_RC(kh_manager_send_text(m, "hooked", "freeme", 6), KH_OK);
  EXPECT_RC(kh_manager_send_text(m, "hooked", "freeme", 6), KH_OK);
  kh_result rc = KH_OK;
  size_t n = 0;
  int64_t free_deadline = now_ms() + 10000 * g_scale;
  while (rc == KH_OK && now_ms() < free_deadline) {
    kh_event ev[4];
    n = 0;
    rc = kh_manager_poll(m, ev, 4, 100, &n);
  }
  /* From here on m belongs to the helper thread. */
  CHECK(rc == KH_SHUTTING_DOWN && n == 0, "the poll whose hook freed the manager: %s, %zu events",
        rname(rc), n);
  CHECK(WAIT_FOR(atomic_load(&g_driven_drops) == 1, 10000), "on_drop after the free: %d",
        atomic_load(&g_driven_drops));
  watchdog_disarm();
  sleep_ms(200); /* the helper thread returns from its last free */
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  g_url = argc > 1 ? argv[1] : getenv("KH_URL");
  if (!g_url) {
    fprintf(stderr, "usage: hostile ws://127.0.0.1:PORT/ (a running examples/feed_server)\n");
    return 2;
  }
  g_quick = getenv("HOSTILE_QUICK") && atoi(getenv("HOSTILE_QUICK")) > 0;
  if (getenv("HOSTILE_TIME_SCALE")) g_scale = atoi(getenv("HOSTILE_TIME_SCALE"));
  if (g_scale < 1) g_scale = 1;
  pthread_t wd;
  pthread_create(&wd, NULL, wd_main, NULL);
  pthread_detach(wd);
  printf("hostile: url %s, quick %d, time scale %d\n", g_url, g_quick, g_scale);

  struct { const char *name; void (*fn)(void); int in_quick; } tests[] = {
      {"static functions and kh_last_error", test_static_functions, 1},
      {"NULL arguments", test_null_arguments, 1},
      {"bad values", test_bad_values, 1},
      {"extreme durations", test_extreme_durations, 1},
      {"names and lifecycle", test_names_and_lifecycle, 1},
      {"calls from inside every hook", test_reentrancy, 1},
      {"kh_manager_free inside a hook", test_free_in_hook, 1},
      {"free/close bounds", test_free_bounds, 1},
      {"concurrent send", test_concurrent_send, 1},
      {"racing close", test_close_race, 1},
      {"blocking hook vs heartbeats", test_blocking_hook, 0},
      {"close/free vs a flooding peer", test_flood_bounds, 1},
      {"event queue: bad input, timeouts, wake-up, poll in a hook", test_poll_bad_input, 1},
      {"event queue: a numbered feed through a slow poller", test_poll_numbered_feed, 1},
      {"event queue: free with unpolled events", test_poll_free_with_unpolled_events, 1},
      {"event queue: state events (KH_POLL_STATE_EVENTS)", test_poll_state_events, 1},
      {"receive timestamps: kh_receive_time in callbacks, kh_event times", test_receive_timestamps, 1},
      {"growable structs: kh_hooks_ex, kh_conn_stats_ex", test_growable_structs, 1},
      {"live subscriptions", test_subscriptions, 1},
      {"driven manager: numbered feed, free inside a poll", test_driven, 1},
  };
  const char *only = getenv("HOSTILE_ONLY");
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (g_quick && !tests[i].in_quick) {
      printf("-- %s: skipped in the quick (valgrind) run\n", tests[i].name);
      continue;
    }
    if (only && !strstr(tests[i].name, only)) continue;
    int f0 = atomic_load(&g_failures);
    int64_t t0 = now_ms();
    printf("-- %s\n", tests[i].name);
    tests[i].fn();
    printf("   %s (%lld ms)\n", atomic_load(&g_failures) == f0 ? "ok" : "FAILED",
           (long long)(now_ms() - t0));
  }
  int failures = atomic_load(&g_failures);
  if (failures) {
    printf("hostile: %d of %d checks FAILED\n", failures, atomic_load(&g_checks));
    return 1;
  }
  printf("hostile: %d checks passed\n", atomic_load(&g_checks));
  return 0;
}
