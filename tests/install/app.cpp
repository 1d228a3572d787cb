// app.cpp: the C++ wrapper (kharbranth.hpp) against the *installed* library, built by the CMake
// project next to it (find_package(kharbranth CONFIG REQUIRED)) and by tests/install/run.sh
// with ASan+UBSan against the static library.
//
// Checks: the log handler gets the library's records; lambdas receive messages; an exception
// thrown by a callback does not reach the library and is rethrown by the next call on the
// manager; a failed call throws kh::error with its code; the manager and the config are
// move-only RAII objects. Prints "install_cpp: PASS" and exits 0, or exits 1. Every wait is
// bounded.
//
//   ./app_cpp ws://127.0.0.1:PORT/
#include <kharbranth.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

static_assert(!std::is_copy_constructible_v<kh::manager>, "kh::manager is move-only");
static_assert(std::is_nothrow_move_constructible_v<kh::manager>, "kh::manager moves without throwing");
static_assert(!std::is_copy_constructible_v<kh::config>, "kh::config is move-only");
static_assert(std::is_nothrow_move_assignable_v<kh::config>, "kh::config moves without throwing");
static_assert(std::is_base_of_v<std::runtime_error, kh::error>, "kh::error is a runtime_error");

namespace {

constexpr auto kWait = std::chrono::seconds(10);

struct boom : std::runtime_error {
    boom() : std::runtime_error("thrown by on_text") {}
};

struct inbox {
    std::mutex m;
    std::condition_variable cv;
    int texts = 0;
    bool thrown = false;
    int drops = 0;

    template <class P>
    void wait(const char *what, P pred) {
        std::unique_lock<std::mutex> lock(m);
        if (!cv.wait_for(lock, kWait, [&] { return pred(*this); }))
            throw std::runtime_error(std::string("timed out waiting for ") + what);
    }
};

std::atomic<int> log_records{0};

void run(const std::string &url) {
    kh::set_log_handler(
        [](kh_log_level level, std::string_view target, std::string_view) {
            if (level >= KH_LOG_ERROR && level <= KH_LOG_TRACE && !target.empty()) log_records++;
        },
        "kharbranth=info");
    // Once per process: a second logger is refused with a defined code.
    try {
        kh::set_log_handler([](kh_log_level, std::string_view, std::string_view) {});
        throw std::runtime_error("a second log handler was accepted");
    } catch (const kh::error &e) {
        if (e.code() != KH_ALREADY_EXISTS) throw;
    }

    inbox in;
    {
        kh::manager first(2);
        kh::manager mgr(std::move(first));  // the moved-from one frees nothing
        kh::config cfg(url);
        cfg.connect_timeout(std::chrono::seconds(5)).init_text("push 2");
        kh::hooks h;
        h.on_text = [&](std::string_view, std::string_view text) {
            std::lock_guard<std::mutex> g(in.m);
            in.texts++;
            in.cv.notify_all();
            if (text == "throw") {
                in.thrown = true;
                throw boom();
            }
        };
        h.on_drop = [&] {
            std::lock_guard<std::mutex> g(in.m);
            in.drops++;
            in.cv.notify_all();
        };
        mgr.add("feed", cfg, std::move(h));
        mgr.wait_open("feed", kWait);
        in.wait("2 pushed messages", [](inbox &i) { return i.texts >= 2; });

        // The echo of "throw" makes on_text throw; the library keeps running and the next call
        // on the manager rethrows it.
        mgr.send("feed", std::string_view("throw"));
        in.wait("the echo that throws", [](inbox &i) { return i.thrown; });
        // The trampoline keeps the exception just after the lambda threw it: poll, bounded.
        for (auto deadline = std::chrono::steady_clock::now() + kWait;;) {
            try {
                (void)mgr.state("feed");
            } catch (const boom &) {
                break;
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("the callback's exception was not rethrown");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (mgr.state("feed") != KH_STATE_OPEN) throw std::runtime_error("not open after the exception");

        try {
            mgr.send("missing", std::string_view("x"));
            throw std::runtime_error("a send to an unknown name succeeded");
        } catch (const kh::error &e) {
            if (e.code() != KH_CONNECTION_NOT_FOUND) throw;
        }
        try {
            kh::config bad("http://not-a-websocket/");
            throw std::runtime_error("an http:// URL was accepted");
        } catch (const kh::error &e) {
            if (e.code() != KH_INVALID_ARGUMENT) throw;
        }
        mgr.close("feed", 1000, "done");
        if (in.drops != 1) throw std::runtime_error("on_drop did not run at close");
    }
    if (log_records.load() == 0) throw std::runtime_error("the log handler got no record");
    std::printf("install_cpp: %s, %d log records\n", kh::version(), log_records.load());
}

}  // namespace

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : std::getenv("KH_URL");
    if (url == nullptr) {
        std::fprintf(stderr, "usage: %s ws://host:port/\n", argv[0]);
        return 2;
    }
    try {
        run(url);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "install_cpp: FAIL: %s\n", e.what());
        return 1;
    }
    std::printf("install_cpp: PASS\n");
    return 0;
}
