// raii.cpp: a small C++17 RAII wrapper over kharbranth's C ABI, with lambdas as callbacks.
//
// kh::Config and kh::Manager own their C handles (move-only, freed in the destructor); errors
// become kh::Error exceptions carrying the code and kh_last_error(). Callbacks are
// std::function members of kh::Handlers; the Handlers object travels through `user_data` and
// is deleted by on_drop, which the library calls exactly once when it is done with it.
// Exits 0 with "raii: PASS", 1 on any failure; every wait is bounded.
//
//   ./raii ws://127.0.0.1:PORT/
#include <kharbranth.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kh {

class Error : public std::runtime_error {
public:
    Error(kh_result code, const std::string &what) : std::runtime_error(what), code_(code) {}
    kh_result code() const noexcept { return code_; }

private:
    kh_result code_;
};

// Throws kh::Error for anything but KH_OK, with the thread's last error message.
inline void check(kh_result rc, const char *what) {
    if (rc == KH_OK) return;
    std::string msg(kh_last_error(nullptr, 0) + 1, '\0');
    msg.resize(kh_last_error(msg.data(), msg.size()));
    throw Error(rc, std::string(what) + ": " + kh_result_str(rc) + ": " + msg);
}

class Config {
public:
    explicit Config(const std::string &url) { check(kh_config_new(url.c_str(), &cfg_), "kh_config_new"); }
    ~Config() { kh_config_free(cfg_); }
    Config(Config &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    Config &operator=(Config &&o) noexcept {
        if (this != &o) {
            kh_config_free(cfg_);
            cfg_ = std::exchange(o.cfg_, nullptr);
        }
        return *this;
    }
    Config(const Config &) = delete;
    Config &operator=(const Config &) = delete;

    Config &ping_interval(std::chrono::milliseconds d) {
        check(kh_config_set_ping_interval_ms(cfg_, static_cast<uint64_t>(d.count())), "ping_interval");
        return *this;
    }
    Config &connect_timeout(std::chrono::milliseconds d) {
        check(kh_config_set_connect_timeout_ms(cfg_, static_cast<uint64_t>(d.count())), "connect_timeout");
        return *this;
    }
    Config &backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
        check(kh_config_set_reconnect_backoff_ms(cfg_, static_cast<uint64_t>(min.count()),
                                                 static_cast<uint64_t>(max.count())),
              "backoff");
        return *this;
    }
    Config &header(const std::string &name, const std::string &value) {
        check(kh_config_add_header(cfg_, name.c_str(), value.c_str()), "header");
        return *this;
    }
    Config &init_text(std::string_view text) {
        check(kh_config_add_init_text(cfg_, text.data(), text.size()), "init_text");
        return *this;
    }
    const kh_config *get() const noexcept { return cfg_; }

private:
    kh_config *cfg_ = nullptr;
};

// Callbacks of one connection. Each one is optional.
struct Handlers {
    std::function<void(std::string_view conn)> on_open;
    std::function<void(std::string_view conn, std::string_view text)> on_text;
    std::function<void(std::string_view conn, const uint8_t *data, size_t len)> on_binary;
    std::function<void(std::string_view conn, uint16_t code, std::string_view reason)> on_close;
    std::function<void(std::string_view conn, kh_result code, std::string_view message)> on_error;
    std::function<void()> on_drop;
};

namespace detail {
// The trampolines run on the library's threads: no exception may escape into it.
template <class F>
void guarded(const char *what, F &&f) noexcept {
    try {
        f();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "kh: exception in %s callback: %s\n", what, e.what());
    } catch (...) {
        std::fprintf(stderr, "kh: exception in %s callback\n", what);
    }
}
extern "C" {
static void open_cb(void *ud, const char *conn) {
    auto *h = static_cast<Handlers *>(ud);
    if (h->on_open) guarded("on_open", [&] { h->on_open(conn); });
}
static void text_cb(void *ud, const char *conn, const char *data, size_t len) {
    auto *h = static_cast<Handlers *>(ud);
    if (h->on_text) guarded("on_text", [&] { h->on_text(conn, std::string_view(data, len)); });
}
static void binary_cb(void *ud, const char *conn, const uint8_t *data, size_t len) {
    auto *h = static_cast<Handlers *>(ud);
    if (h->on_binary) guarded("on_binary", [&] { h->on_binary(conn, data, len); });
}
static void close_cb(void *ud, const char *conn, uint16_t code, const char *reason, size_t len) {
    auto *h = static_cast<Handlers *>(ud);
    if (h->on_close) guarded("on_close", [&] { h->on_close(conn, code, std::string_view(reason, len)); });
}
static void error_cb(void *ud, const char *conn, kh_result code, const char *message) {
    auto *h = static_cast<Handlers *>(ud);
    if (h->on_error) guarded("on_error", [&] { h->on_error(conn, code, message); });
}
static void drop_cb(void *ud) {
    std::unique_ptr<Handlers> h(static_cast<Handlers *>(ud));  // deleted here, exactly once
    if (h->on_drop) guarded("on_drop", [&] { h->on_drop(); });
}
}  // extern "C"
}  // namespace detail

class Manager {
public:
    explicit Manager(uint32_t workers = 0) {
        check(kh_manager_new_with_threads(workers, &mgr_), "kh_manager_new_with_threads");
    }
    ~Manager() { kh_manager_free(mgr_); }  // closes every connection, runs every on_drop
    Manager(Manager &&o) noexcept : mgr_(std::exchange(o.mgr_, nullptr)) {}
    Manager &operator=(Manager &&o) noexcept {
        if (this != &o) {
            kh_manager_free(mgr_);
            mgr_ = std::exchange(o.mgr_, nullptr);
        }
        return *this;
    }
    Manager(const Manager &) = delete;
    Manager &operator=(const Manager &) = delete;

    void add(const std::string &name, const Config &cfg, Handlers handlers) {
        auto owned = std::make_unique<Handlers>(std::move(handlers));
        kh_hooks hooks{};
        hooks.user_data = owned.get();
        hooks.on_open = detail::open_cb;
        hooks.on_text = detail::text_cb;
        hooks.on_binary = detail::binary_cb;
        hooks.on_close = detail::close_cb;
        hooks.on_error = detail::error_cb;
        hooks.on_drop = detail::drop_cb;
        check(kh_manager_add(mgr_, name.c_str(), cfg.get(), &hooks), "kh_manager_add");
        owned.release();  // the library owns it now; drop_cb deletes it
    }
    void send(const std::string &name, std::string_view text) {
        check(kh_manager_send_text(mgr_, name.c_str(), text.data(), text.size()), "send_text");
    }
    void send(const std::string &name, const std::vector<uint8_t> &data) {
        check(kh_manager_send_binary(mgr_, name.c_str(), data.data(), data.size()), "send_binary");
    }
    void restart(const std::string &name) { check(kh_manager_restart(mgr_, name.c_str()), "restart"); }
    void close(const std::string &name, uint16_t code = 1000, const char *reason = nullptr) {
        check(kh_manager_close(mgr_, name.c_str(), code, reason), "close");
    }
    void wait_open(const std::string &name, std::chrono::milliseconds within) {
        check(kh_manager_wait_open(mgr_, name.c_str(), static_cast<uint32_t>(within.count())), "wait_open");
    }
    kh_conn_stats stats(const std::string &name) const {
        kh_conn_stats s{};
        check(kh_manager_stats(mgr_, name.c_str(), &s), "stats");
        return s;
    }
    kh_conn_state state(const std::string &name) const {
        kh_conn_state s{};
        check(kh_manager_state(mgr_, name.c_str(), &s), "state");
        return s;
    }

private:
    kh_manager *mgr_ = nullptr;
};

}  // namespace kh

namespace {

constexpr auto kWait = std::chrono::seconds(10);

// What the lambdas record; main waits on it with a deadline.
struct Inbox {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> texts;
    std::vector<uint8_t> binary;
    int opens = 0;
    int closes = 0;
    uint16_t close_code = 0;
    int drops = 0;

    template <class Pred>
    void wait(const char *what, Pred pred) {
        std::unique_lock<std::mutex> lock(m);
        if (!cv.wait_for(lock, kWait, [&] { return pred(*this); }))
            throw std::runtime_error(std::string("timed out waiting for ") + what);
    }
};

void run(const std::string &url) {
    Inbox inbox;
    {
        kh::Manager mgr(2);
        mgr.add("echo",
                kh::Config(url)
                    .ping_interval(std::chrono::seconds(5))
                    .connect_timeout(std::chrono::seconds(5))
                    .backoff(std::chrono::milliseconds(100), std::chrono::seconds(2))
                    .header("X-Example", "raii")
                    .init_text("push 3"),
                kh::Handlers{
                    [&](std::string_view conn) {
                        std::lock_guard<std::mutex> g(inbox.m);
                        std::printf("[%.*s] open\n", static_cast<int>(conn.size()), conn.data());
                        inbox.opens++;
                        inbox.cv.notify_all();
                    },
                    [&](std::string_view, std::string_view text) {
                        std::lock_guard<std::mutex> g(inbox.m);
                        inbox.texts.emplace_back(text);
                        inbox.cv.notify_all();
                    },
                    [&](std::string_view, const uint8_t *data, size_t len) {
                        std::lock_guard<std::mutex> g(inbox.m);
                        inbox.binary.assign(data, data + len);
                        inbox.cv.notify_all();
                    },
                    [&](std::string_view, uint16_t code, std::string_view reason) {
                        std::lock_guard<std::mutex> g(inbox.m);
                        std::printf("close %u \"%.*s\"\n", code, static_cast<int>(reason.size()),
                                    reason.data());
                        inbox.closes++;
                        inbox.close_code = code;
                        inbox.cv.notify_all();
                    },
                    [](std::string_view conn, kh_result code, std::string_view message) {
                        std::fprintf(stderr, "[%.*s] %s: %.*s\n", static_cast<int>(conn.size()),
                                     conn.data(), kh_result_str(code),
                                     static_cast<int>(message.size()), message.data());
                    },
                    [&] {
                        std::lock_guard<std::mutex> g(inbox.m);
                        inbox.drops++;
                    },
                });

        mgr.wait_open("echo", kWait);
        inbox.wait("the subscription's 3 messages", [](Inbox &in) { return in.texts.size() >= 3; });
        mgr.send("echo", std::string_view("hello from C++"));
        mgr.send("echo", std::vector<uint8_t>{1, 2, 3});
        inbox.wait("the echoes", [](Inbox &in) {
            return in.texts.size() >= 4 && in.binary.size() == 3;
        });
        {
            std::lock_guard<std::mutex> g(inbox.m);
            const std::vector<std::string> want{"msg 1", "msg 2", "msg 3", "hello from C++"};
            if (!std::equal(want.begin(), want.end(), inbox.texts.begin()))
                throw std::runtime_error("unexpected messages");
        }

        // Errors are exceptions with the code.
        try {
            mgr.send("missing", std::string_view("x"));
            throw std::runtime_error("send to an unknown name succeeded");
        } catch (const kh::Error &e) {
            if (e.code() != KH_CONNECTION_NOT_FOUND) throw;
            std::printf("expected error: %s\n", e.what());
        }

        mgr.restart("echo");
        inbox.wait("the reconnect and its subscription", [](Inbox &in) {
            return in.opens >= 2 && in.texts.size() >= 7;
        });
        mgr.wait_open("echo", kWait);
        auto s = mgr.stats("echo");
        std::printf("stats: in %llu, out %llu, reconnects %llu\n",
                    static_cast<unsigned long long>(s.messages_in),
                    static_cast<unsigned long long>(s.messages_out),
                    static_cast<unsigned long long>(s.reconnects));
        if (s.reconnects != 1 || s.messages_in < 8) throw std::runtime_error("unexpected stats");

        mgr.close("echo", 1000, "done");
        {
            std::lock_guard<std::mutex> g(inbox.m);
            if (inbox.drops != 1) throw std::runtime_error("on_drop did not run at close");
        }
        // ~Manager frees the manager here.
    }
    if (inbox.drops != 1) throw std::runtime_error("on_drop ran more than once");
}

}  // namespace

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : std::getenv("KH_URL");
    if (url == nullptr) {
        std::fprintf(stderr, "usage: %s ws://host:port/path\n", argv[0]);
        return 2;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep stdout and stderr in order when redirected
    try {
        run(url);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "raii: FAIL: %s\n", e.what());
        return 1;
    }
    std::printf("raii: PASS\n");
    return 0;
}
