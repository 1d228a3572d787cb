/*
 * app.c: a program built against the *installed* library (tests/install/run.sh builds it with
 * `pkg-config --cflags --libs kharbranth`, and statically with `pkg-config --static`).
 *
 * Checks that the header and the library it runs with agree on the version, then connects to
 * the feed server, asks for 3 messages, sends one and gets its echo, and closes. Prints
 * "install_app: PASS" and exits 0, or exits 1; every wait is bounded.
 *
 *   ./app ws://127.0.0.1:PORT/
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kharbranth.h>

#define WAIT_MS 10000

static void fail(const char *what) {
    char msg[512];
    kh_last_error(msg, sizeof msg);
    fprintf(stderr, "install_app: FAIL: %s (%s)\n", what, msg);
    exit(1);
}

#define CHECK(call)                                                                           \
    do {                                                                                      \
        kh_result rc_ = (call);                                                               \
        if (rc_ != KH_OK) {                                                                   \
            fprintf(stderr, "%s -> %s\n", #call, kh_result_str(rc_));                         \
            fail(#call);                                                                      \
        }                                                                                     \
    } while (0)

struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int texts;
    int echoed;
    int dropped;
};

static void on_text(void *ud, const char *conn, const char *data, size_t len) {
    struct inbox *in = ud;
    (void)conn;
    pthread_mutex_lock(&in->lock);
    in->texts++;
    if (len == 5 && memcmp(data, "hello", 5) == 0) in->echoed = 1;
    pthread_cond_broadcast(&in->changed);
    pthread_mutex_unlock(&in->lock);
}

static void on_drop(void *ud) {
    struct inbox *in = ud;
    pthread_mutex_lock(&in->lock);
    in->dropped++;
    pthread_cond_broadcast(&in->changed);
    pthread_mutex_unlock(&in->lock);
}

/* Waits until *field >= want, at most WAIT_MS. */
static int wait_for(struct inbox *in, const int *field, int want) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&in->lock);
    int ok = 1;
    while (*field < want) {
        if (pthread_cond_timedwait(&in->changed, &in->lock, &until) != 0) {
            ok = *field >= want;
            break;
        }
    }
    pthread_mutex_unlock(&in->lock);
    return ok;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("KH_URL");
    if (url == NULL) {
        fprintf(stderr, "usage: %s ws://host:port/\n", argv[0]);
        return 2;
    }
    if (strcmp(kh_version(), KH_VERSION_STRING) != 0) {
        fprintf(stderr, "install_app: FAIL: header %s, library %s\n", KH_VERSION_STRING, kh_version());
        return 1;
    }
    struct inbox in;
    memset(&in, 0, sizeof in);
    pthread_mutex_init(&in.lock, NULL);
    pthread_cond_init(&in.changed, NULL);

    kh_config *cfg = NULL;
    kh_manager *mgr = NULL;
    kh_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.user_data = &in;
    hooks.on_text = on_text;
    hooks.on_drop = on_drop;

    CHECK(kh_config_new(url, &cfg));
    CHECK(kh_config_set_connect_timeout_ms(cfg, 5000));
    CHECK(kh_config_add_init_text(cfg, "push 3", 6));
    CHECK(kh_manager_new_with_threads(2, &mgr));
    CHECK(kh_manager_add(mgr, "feed", cfg, &hooks));
    CHECK(kh_manager_wait_open(mgr, "feed", WAIT_MS));
    if (!wait_for(&in, &in.texts, 3)) fail("3 pushed messages");
    CHECK(kh_manager_send_text(mgr, "feed", "hello", 5));
    if (!wait_for(&in, &in.echoed, 1)) fail("the echo");
    CHECK(kh_manager_close(mgr, "feed", 1000, "done"));
    if (!wait_for(&in, &in.dropped, 1)) fail("on_drop after close");
    kh_manager_free(mgr);
    kh_config_free(cfg);
    printf("install_app: %s %s PASS\n", kh_version(), url);
    return 0;
}
