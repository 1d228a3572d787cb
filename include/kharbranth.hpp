/*
 * kharbranth.hpp: a header-only C++17 wrapper over kharbranth's C ABI (kharbranth.h).
 *
 *   kh::config   a connection configuration (kh_config), move-only, freed by its destructor.
 *   kh::manager  a manager (kh_manager), move-only; its destructor closes every connection and
 *                returns when no callback runs any more (kh_manager_free).
 *   kh::hooks    the callbacks of one connection as std::function (lambdas welcome).
 *   kh::error    thrown for every failed call: a std::runtime_error with code() (the
 *                kh_result) and what() (the call, kh_result_str and kh_last_error()).
 *
 * Exceptions thrown by a callback never reach the library (it is C and runs the callbacks on
 * its own threads): the trampolines catch every exception. The first one caught for a manager
 * is kept and rethrown, unchanged, by the next call on that kh::manager made by the program
 * (any member function that can throw, before it does anything else), or taken with
 * take_callback_exception(). Later ones are dropped while one is pending; on_error is not
 * involved. An exception from a log handler (set_log_handler) is dropped: there is no call to
 * rethrow it from.
 *
 * Threads: as in kharbranth.h. Callbacks run on the library's threads; those of one connection
 * never run concurrently. A callback may call the kh::manager it belongs to (send, close, ...)
 * through a pointer or reference it captured, except wait_open.
 *
 * Needs C++17 and linking with libkharbranth (pkg-config kharbranth, or CMake's
 * kharbranth::kharbranth).
 */
#ifndef KHARBRANTH_HPP
#define KHARBRANTH_HPP

#include <kharbranth.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
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

/** A failed kharbranth call: code() is its kh_result, what() names the call and the reason. */
class error : public std::runtime_error {
public:
    error(kh_result code, const std::string &what) : std::runtime_error(what), code_(code) {}
    /** The kh_result of the failed call (never KH_OK). */
    kh_result code() const noexcept { return code_; }

private:
    kh_result code_;
};

/** The library's version string, e.g. "0.1.0". */
inline const char *version() noexcept { return kh_version(); }

/** The static description of a code, e.g. "KH_QUEUE_FULL: the send queue is full". */
inline const char *result_str(kh_result code) noexcept {
    return kh_result_str(static_cast<uint32_t>(code));
}

/** The message of the last failed kh_ call on this thread ("" when none failed). */
inline std::string last_error() {
    std::string msg(kh_last_error(nullptr, 0) + 1, '\0');
    msg.resize(kh_last_error(msg.data(), msg.size()));
    return msg;
}

/** Throws kh::error for anything but KH_OK, with this thread's last error message. */
inline void check(kh_result rc, const char *call) {
    if (rc == KH_OK) return;
    throw error(rc, std::string(call) + ": " + result_str(rc) + ": " + last_error());
}

/** Sends the library's log to stderr (kh_log_init). */
inline void log_to_stderr(const char *filter = nullptr) { check(kh_log_init(filter), "kh_log_init"); }

/** Receives the library's log records (see set_log_handler). */
using log_handler = std::function<void(kh_log_level level, std::string_view target, std::string_view message)>;

namespace detail {
extern "C" inline void kharbranth_hpp_log_trampoline(void *ud, kh_log_level level, const char *target,
                                      const char *message) {
    try {
        (*static_cast<log_handler *>(ud))(level, target, message);
    } catch (...) {
        // Nothing to rethrow it from, and it must not reach the library.
    }
}
}  // namespace detail

/**
 * Sends the library's log to `handler` (kh_log_set_callback), filtered like RUST_LOG
 * (`filter`, nullptr reads RUST_LOG): once per process, throws kh::error with
 * KH_ALREADY_EXISTS when a logger is installed already. The handler is called from any library
 * thread, concurrently: it must be thread-safe. It is kept for the rest of the process. An
 * exception it throws is dropped.
 */
inline void set_log_handler(log_handler handler, const char *filter = nullptr) {
    auto owned = std::make_unique<log_handler>(std::move(handler));
    check(kh_log_set_callback(detail::kharbranth_hpp_log_trampoline, owned.get(), filter), "kh_log_set_callback");
    owned.release();  // the library keeps it for the rest of the process
}

/** A connection configuration (kh_config). Setters return *this and throw kh::error. */
class config {
public:
    /** kh_config_new: `url` is ws:// or wss://. */
    explicit config(const std::string &url) { check(kh_config_new(url.c_str(), &cfg_), "kh_config_new"); }
    ~config() { kh_config_free(cfg_); }
    config(config &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    config &operator=(config &&o) noexcept {
        if (this != &o) {
            kh_config_free(cfg_);
            cfg_ = std::exchange(o.cfg_, nullptr);
        }
        return *this;
    }
    config(const config &) = delete;
    config &operator=(const config &) = delete;

    config &ping_interval(std::chrono::milliseconds d) {
        check(kh_config_set_ping_interval_ms(handle(), ms(d)), "kh_config_set_ping_interval_ms");
        return *this;
    }
    config &pong_timeout(std::chrono::milliseconds d) {
        check(kh_config_set_pong_timeout_ms(handle(), ms(d)), "kh_config_set_pong_timeout_ms");
        return *this;
    }
    config &connect_timeout(std::chrono::milliseconds d) {
        check(kh_config_set_connect_timeout_ms(handle(), ms(d)), "kh_config_set_connect_timeout_ms");
        return *this;
    }
    config &close_timeout(std::chrono::milliseconds d) {
        check(kh_config_set_close_timeout_ms(handle(), ms(d)), "kh_config_set_close_timeout_ms");
        return *this;
    }
    config &backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
        check(kh_config_set_reconnect_backoff_ms(handle(), ms(min), ms(max)),
              "kh_config_set_reconnect_backoff_ms");
        return *this;
    }
    config &max_reconnect_attempts(uint32_t attempts) {
        check(kh_config_set_max_reconnect_attempts(handle(), attempts),
              "kh_config_set_max_reconnect_attempts");
        return *this;
    }
    config &idle_timeout(std::chrono::milliseconds d) {
        check(kh_config_set_idle_timeout_ms(handle(), ms(d)), "kh_config_set_idle_timeout_ms");
        return *this;
    }
    config &inflate(kh_inflate mode) {
        check(kh_config_set_inflate(handle(), static_cast<uint32_t>(mode)), "kh_config_set_inflate");
        return *this;
    }
    config &header(const std::string &name, const std::string &value) {
        check(kh_config_add_header(handle(), name.c_str(), value.c_str()), "kh_config_add_header");
        return *this;
    }
    config &subprotocol(const std::string &protocol) {
        check(kh_config_add_subprotocol(handle(), protocol.c_str()), "kh_config_add_subprotocol");
        return *this;
    }
    config &init_text(std::string_view text) {
        check(kh_config_add_init_text(handle(), text.data(), text.size()), "kh_config_add_init_text");
        return *this;
    }
    config &init_binary(const std::vector<uint8_t> &data) {
        check(kh_config_add_init_binary(handle(), data.data(), data.size()), "kh_config_add_init_binary");
        return *this;
    }
    config &ping_text(std::string_view text) {
        check(kh_config_set_ping_text(handle(), text.data(), text.size()), "kh_config_set_ping_text");
        return *this;
    }
    config &max_message_size(std::size_t bytes) {
        check(kh_config_set_max_message_size(handle(), bytes), "kh_config_set_max_message_size");
        return *this;
    }
    config &send_queue_capacity(std::size_t messages) {
        check(kh_config_set_send_queue_capacity(handle(), messages), "kh_config_set_send_queue_capacity");
        return *this;
    }
    config &read_buffer_size(std::size_t bytes) {
        check(kh_config_set_read_buffer_size(handle(), bytes), "kh_config_set_read_buffer_size");
        return *this;
    }
    config &frame_buffer_size(std::size_t bytes) {
        check(kh_config_set_frame_buffer_size(handle(), bytes), "kh_config_set_frame_buffer_size");
        return *this;
    }
    config &ca_file(const std::string &path) {
        check(kh_config_add_ca_file(handle(), path.c_str()), "kh_config_add_ca_file");
        return *this;
    }

    /** The C handle (NULL after a move). */
    const kh_config *get() const noexcept { return cfg_; }

private:
    static uint64_t ms(std::chrono::milliseconds d) noexcept {
        return d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
    }
    // A moved-from config is refused by the library (KH_INVALID_ARGUMENT), not a crash.
    kh_config *handle() noexcept { return cfg_; }

    kh_config *cfg_ = nullptr;
};

/** The callbacks of one connection; each is optional. Arguments are valid during the call. */
struct hooks {
    std::function<void(std::string_view conn)> on_open;
    std::function<void(std::string_view conn, std::string_view text)> on_text;
    std::function<void(std::string_view conn, const uint8_t *data, std::size_t len)> on_binary;
    std::function<void(std::string_view conn, const uint8_t *data, std::size_t len)> on_ping;
    std::function<void(std::string_view conn, const uint8_t *data, std::size_t len)> on_pong;
    std::function<void(std::string_view conn, uint16_t code, std::string_view reason)> on_close;
    std::function<void(std::string_view conn, kh_result code, std::string_view message)> on_error;
    /** Runs once, when the library is done with this connection (see kh_hooks.on_drop). */
    std::function<void()> on_drop;
};

namespace detail {

// The trampolines have C linkage, as the library calls them through C function pointers; the
// prefix keeps their names apart from the program's own C functions.

// What a manager and its connections' callbacks share: it outlives the manager object when an
// on_drop runs after it (kh_manager_free called from a callback).
struct shared_state {
    std::mutex m;
    std::exception_ptr pending;

    void keep(std::exception_ptr e) noexcept {
        std::lock_guard<std::mutex> g(m);
        if (!pending) pending = std::move(e);
    }
    std::exception_ptr take() noexcept {
        std::lock_guard<std::mutex> g(m);
        return std::exchange(pending, nullptr);
    }
};

struct connection {
    hooks h;
    std::shared_ptr<shared_state> state;
};

template <class F>
void guarded(void *ud, F &&f) noexcept {
    auto *c = static_cast<connection *>(ud);
    try {
        f(c->h);
    } catch (...) {
        c->state->keep(std::current_exception());
    }
}

extern "C" inline void kharbranth_hpp_open_cb(void *ud, const char *conn) {
    guarded(ud, [&](hooks &h) { if (h.on_open) h.on_open(conn); });
}
extern "C" inline void kharbranth_hpp_text_cb(void *ud, const char *conn, const char *data, size_t len) {
    guarded(ud, [&](hooks &h) { if (h.on_text) h.on_text(conn, std::string_view(data, len)); });
}
extern "C" inline void kharbranth_hpp_binary_cb(void *ud, const char *conn, const uint8_t *data, size_t len) {
    guarded(ud, [&](hooks &h) { if (h.on_binary) h.on_binary(conn, data, len); });
}
extern "C" inline void kharbranth_hpp_ping_cb(void *ud, const char *conn, const uint8_t *data, size_t len) {
    guarded(ud, [&](hooks &h) { if (h.on_ping) h.on_ping(conn, data, len); });
}
extern "C" inline void kharbranth_hpp_pong_cb(void *ud, const char *conn, const uint8_t *data, size_t len) {
    guarded(ud, [&](hooks &h) { if (h.on_pong) h.on_pong(conn, data, len); });
}
extern "C" inline void kharbranth_hpp_close_cb(void *ud, const char *conn, uint16_t code, const char *reason, size_t len) {
    guarded(ud, [&](hooks &h) { if (h.on_close) h.on_close(conn, code, std::string_view(reason, len)); });
}
extern "C" inline void kharbranth_hpp_error_cb(void *ud, const char *conn, kh_result code, const char *message) {
    guarded(ud, [&](hooks &h) { if (h.on_error) h.on_error(conn, code, message); });
}
extern "C" inline void kharbranth_hpp_drop_cb(void *ud) {
    guarded(ud, [&](hooks &h) { if (h.on_drop) h.on_drop(); });
    delete static_cast<connection *>(ud);  // exactly once: the library calls on_drop once
}

}  // namespace detail

/** A manager of named connections (kh_manager). Member functions throw kh::error. */
class manager {
public:
    /** kh_manager_new_with_threads: `workers` runtime threads, 0 for the default. */
    explicit manager(uint32_t workers = 0) : state_(std::make_shared<detail::shared_state>()) {
        check(kh_manager_new_with_threads(workers, &mgr_), "kh_manager_new_with_threads");
    }
    /** kh_manager_free: closes every connection; a pending callback exception is dropped. */
    ~manager() { kh_manager_free(mgr_); }
    manager(manager &&o) noexcept : mgr_(std::exchange(o.mgr_, nullptr)), state_(std::move(o.state_)) {}
    manager &operator=(manager &&o) noexcept {
        if (this != &o) {
            kh_manager_free(mgr_);
            mgr_ = std::exchange(o.mgr_, nullptr);
            state_ = std::move(o.state_);
        }
        return *this;
    }
    manager(const manager &) = delete;
    manager &operator=(const manager &) = delete;

    /** kh_manager_add: starts connecting `name` in the background. */
    void add(const std::string &name, const config &cfg, hooks h = {}) {
        rethrow_callback_exception();
        auto owned = std::make_unique<detail::connection>(detail::connection{std::move(h), state_});
        kh_hooks c{};
        c.user_data = owned.get();
        c.on_open = detail::kharbranth_hpp_open_cb;
        c.on_text = detail::kharbranth_hpp_text_cb;
        c.on_binary = detail::kharbranth_hpp_binary_cb;
        c.on_ping = detail::kharbranth_hpp_ping_cb;
        c.on_pong = detail::kharbranth_hpp_pong_cb;
        c.on_close = detail::kharbranth_hpp_close_cb;
        c.on_error = detail::kharbranth_hpp_error_cb;
        c.on_drop = detail::kharbranth_hpp_drop_cb;
        check(kh_manager_add(mgr_, name.c_str(), cfg.get(), &c), "kh_manager_add");
        owned.release();  // the library owns it now; kharbranth_hpp_drop_cb deletes it
    }
    void send(const std::string &name, std::string_view text) {
        rethrow_callback_exception();
        check(kh_manager_send_text(mgr_, name.c_str(), text.data(), text.size()), "kh_manager_send_text");
    }
    void send(const std::string &name, const std::vector<uint8_t> &data) {
        rethrow_callback_exception();
        check(kh_manager_send_binary(mgr_, name.c_str(), data.data(), data.size()), "kh_manager_send_binary");
    }
    void send_ping(const std::string &name, const std::vector<uint8_t> &data = {}) {
        rethrow_callback_exception();
        check(kh_manager_send_ping(mgr_, name.c_str(), data.data(), data.size()), "kh_manager_send_ping");
    }
    void restart(const std::string &name) {
        rethrow_callback_exception();
        check(kh_manager_restart(mgr_, name.c_str()), "kh_manager_restart");
    }
    void restart_all() {
        rethrow_callback_exception();
        check(kh_manager_restart_all(mgr_), "kh_manager_restart_all");
    }
    /** kh_manager_close: `reason` may be nullptr. */
    void close(const std::string &name, uint16_t code = 1000, const char *reason = nullptr) {
        rethrow_callback_exception();
        check(kh_manager_close(mgr_, name.c_str(), code, reason), "kh_manager_close");
    }
    /** kh_manager_wait_open: throws kh::error with KH_TIMEOUT when it is not open in time. */
    void wait_open(const std::string &name, std::chrono::milliseconds within) {
        rethrow_callback_exception();
        auto ms = within.count() < 0 ? 0 : within.count();
        auto bounded = ms > 0xFFFFFFFF ? 0xFFFFFFFFu : static_cast<uint32_t>(ms);
        check(kh_manager_wait_open(mgr_, name.c_str(), bounded), "kh_manager_wait_open");
    }
    kh_conn_stats stats(const std::string &name) const {
        rethrow_callback_exception();
        kh_conn_stats s{};
        check(kh_manager_stats(mgr_, name.c_str(), &s), "kh_manager_stats");
        return s;
    }
    kh_conn_state state(const std::string &name) const {
        rethrow_callback_exception();
        kh_conn_state s{};
        check(kh_manager_state(mgr_, name.c_str(), &s), "kh_manager_state");
        return s;
    }

    /** Rethrows, once, the first exception a callback of this manager threw, if any. */
    void rethrow_callback_exception() const {
        if (!state_) return;
        if (auto e = state_->take()) std::rethrow_exception(e);
    }
    /** Takes the first exception a callback threw (null when none), without throwing it. */
    std::exception_ptr take_callback_exception() noexcept { return state_ ? state_->take() : nullptr; }

    /** The C handle (NULL after a move), for calls the wrapper does not cover. */
    kh_manager *get() const noexcept { return mgr_; }

private:
    kh_manager *mgr_ = nullptr;
    std::shared_ptr<detail::shared_state> state_;
};

}  // namespace kh

#endif /* KHARBRANTH_HPP */
