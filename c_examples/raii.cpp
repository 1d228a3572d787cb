// raii.cpp: kharbranth from C++17 through the installed wrapper header kharbranth.hpp, with
// lambdas as callbacks.
//
// kh::config and kh::manager own their C handles (move-only, freed in the destructor); errors
// are kh::error exceptions carrying the code and kh_last_error(). The callbacks are
// std::function members of kh::hooks, which the wrapper hands to the library through
// `user_data` and deletes in on_drop. An exception a callback throws is caught by the wrapper
// and rethrown by the next call on the manager. Exits 0 with "raii: PASS", 1 on any failure;
// every wait is bounded.
//
//   ./raii ws://127.0.0.1:PORT/
#include <kharbranth.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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
        kh::manager mgr(2);
        kh::hooks hooks;
        hooks.on_open = [&](std::string_view conn) {
            std::lock_guard<std::mutex> g(inbox.m);
            std::printf("[%.*s] open\n", static_cast<int>(conn.size()), conn.data());
            inbox.opens++;
            inbox.cv.notify_all();
        };
        hooks.on_text = [&](std::string_view, std::string_view text) {
            std::lock_guard<std::mutex> g(inbox.m);
            inbox.texts.emplace_back(text);
            inbox.cv.notify_all();
            // The wrapper catches this; the next call on the manager rethrows it.
            if (text == "throw") throw std::runtime_error("thrown by on_text");
        };
        hooks.on_binary = [&](std::string_view, const uint8_t *data, size_t len) {
            std::lock_guard<std::mutex> g(inbox.m);
            inbox.binary.assign(data, data + len);
            inbox.cv.notify_all();
        };
        hooks.on_close = [&](std::string_view, uint16_t code, std::string_view reason) {
            std::lock_guard<std::mutex> g(inbox.m);
            std::printf("close %u \"%.*s\"\n", code, static_cast<int>(reason.size()), reason.data());
            inbox.closes++;
            inbox.close_code = code;
            inbox.cv.notify_all();
        };
        hooks.on_error = [](std::string_view conn, kh_result code, std::string_view message) {
            std::fprintf(stderr, "[%.*s] %s: %.*s\n", static_cast<int>(conn.size()), conn.data(),
                         kh::result_str(code), static_cast<int>(message.size()), message.data());
        };
        hooks.on_drop = [&] {
            std::lock_guard<std::mutex> g(inbox.m);
            inbox.drops++;
        };
        kh::config cfg(url);
        cfg.ping_interval(std::chrono::seconds(5))
            .connect_timeout(std::chrono::seconds(5))
            .backoff(std::chrono::milliseconds(100), std::chrono::seconds(2))
            .header("X-Example", "raii")
            .init_text("push 3");
        mgr.add("echo", cfg, std::move(hooks));

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
        } catch (const kh::error &e) {
            if (e.code() != KH_CONNECTION_NOT_FOUND) throw;
            std::printf("expected error: %s\n", e.what());
        }

        // An exception thrown by a callback comes back from a later call on the manager.
        mgr.send("echo", std::string_view("throw"));
        for (auto deadline = std::chrono::steady_clock::now() + kWait;;) {
            try {
                (void)mgr.state("echo");
            } catch (const std::runtime_error &e) {
                if (std::string_view(e.what()) != "thrown by on_text") throw;
                std::printf("rethrown from the callback: %s\n", e.what());
                break;
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("the callback's exception was not rethrown");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }

        mgr.restart("echo");
        inbox.wait("the reconnect and its subscription", [](Inbox &in) {
            return in.opens >= 2 && in.texts.size() >= 8;
        });
        mgr.wait_open("echo", kWait);
        auto s = mgr.stats("echo");
        std::printf("stats: in %llu, out %llu, reconnects %llu\n",
                    static_cast<unsigned long long>(s.messages_in),
                    static_cast<unsigned long long>(s.messages_out),
                    static_cast<unsigned long long>(s.reconnects));
        if (s.reconnects != 1 || s.messages_in < 9) throw std::runtime_error("unexpected stats");

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
