// The virtual board: the Verilated lifpga_system with its UART pins bridged to a TCP socket.
//
// Built by sim/board.py (verilator --cc --exe --build, no VPI, no cocotb); see that module's
// docstring for the time policy and the measured speed. Verilator's top is the harness
// lifpga_board that sim/board.py generates: lifpga_system with its rst and rx inputs behind a
// register each, which halves the cost of a clock cycle (see HARNESS_VERILOG there). In short:
//
//   * One TCP server on 127.0.0.1 (--port, 0 = ephemeral). It prints exactly one line,
//     "lifpga virtual board: socket://127.0.0.1:<port>", when it listens, then serves one
//     client at a time; after a disconnect it accepts the next. A client that connects while
//     another is served gets one line, kBusyLine, and end of file. The device is never reset
//     between clients, as a real board is not when a host closes its serial port.
//   * Bytes from the client are serialised onto `rx` as 8N1 frames, back to back, exactly
//     --cycles-per-bit clock cycles per bit (the Python side passes hw.uart.baud_divisor).
//   * `tx` is deserialised like a UART receiver does it: the start bit's falling edge, then a
//     sample in the middle of every bit; a stop bit of 0 is reported on stderr and the byte
//     dropped. Received bytes go to the client; with no client they are dropped, as bytes on
//     a wire nobody listens to.
//
// Time policy. Simulated time is not tied to wall time. It runs as fast as the model allows
// while there is work: bytes queued for `rx` or being shifted out, a `tx` frame in progress,
// or the device's `busy` output high. With no work the process blocks in ppoll() on its
// sockets and simulates nothing, so an idle board costs no CPU, and a frame the host writes in
// pieces arrives back to back as long as the device is idle (while it is busy, time runs on,
// and a pause longer than the idle timeout abandons the frame, as on a real UART). One thing
// would go wrong with
// a clock that simply stops: a real host that stops sending mid-frame sees the device's idle
// timeout (64 byte times) fire. So when the client has been silent for a wall-clock quiet
// period (--quiet-ms, 20 ms), the bridge advances simulated time once by --idle-byte-times
// (70) byte times, more than the timeout, and then blocks again.

#include <verilated.h>

#include "Vlifpga_board.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

// Bits per 8N1 frame on the wire: start, 8 data bits, stop. sim/board.py defines it from
// golden.protocol.BITS_PER_BYTE (hw.uart.FRAME_BITS), the one definition.
#ifndef LIFPGA_FRAME_BITS
#error "build through sim/board.py, which defines LIFPGA_FRAME_BITS"
#endif
constexpr uint64_t kFrameBits = LIFPGA_FRAME_BITS;
// Cycles simulated between two looks at the sockets while there is work: short enough that
// a response reaches the client within about a millisecond of wall time, long enough that
// the ppoll() system call costs nothing next to the simulation.
constexpr uint64_t kSliceCycles = 4096;
// Stop reading the client when this many bytes wait for `rx`: the rest stays in the kernel's
// socket buffer, so TCP flow control slows a client that writes faster than the baud rate.
constexpr size_t kRxHighWater = 1 << 16;
// Bytes for a client that does not read are kept up to this much, then dropped.
constexpr size_t kTxBufferMax = 1 << 24;

// What a second client gets while one is served (sim/board.py BUSY_LINE), then end of file.
constexpr char kBusyLine[] =
    "lifpga virtual board: busy: serving another client, one at a time; try again when it "
    "disconnects\n";

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

struct Options {
    int port = 0;
    uint64_t cycles_per_bit = 0;
    int quiet_ms = 20;
    uint64_t idle_byte_times = 70;
    uint64_t reset_cycles = 8;
};

[[noreturn]] void usage(const char* argv0, const char* error) {
    std::fprintf(stderr,
                 "%s: %s\nusage: %s --cycles-per-bit D [--port N] [--quiet-ms MS] "
                 "[--idle-byte-times B]\n",
                 argv0, error, argv0);
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string name = argv[i];
        if (i + 1 >= argc) usage(argv[0], ("missing value after " + name).c_str());
        char* end = nullptr;
        long long value = std::strtoll(argv[++i], &end, 10);
        if (end == argv[i] || *end != '\0' || value < 0)
            usage(argv[0], ("bad value for " + name).c_str());
        if (name == "--port" && value <= 65535) opt.port = static_cast<int>(value);
        else if (name == "--cycles-per-bit" && value >= 1) opt.cycles_per_bit = value;
        else if (name == "--quiet-ms" && value <= 1000000) opt.quiet_ms = static_cast<int>(value);
        else if (name == "--idle-byte-times" && value >= 1) opt.idle_byte_times = value;
        else usage(argv[0], ("unknown option or value out of range: " + name).c_str());
    }
    if (opt.cycles_per_bit == 0) usage(argv[0], "--cycles-per-bit is required");
    return opt;
}

// Host -> device: bytes queued for the `rx` pin, shifted out one bit per `divisor` cycles.
class RxSerialiser {
  public:
    explicit RxSerialiser(uint64_t divisor) : divisor_(divisor) {}

    void push(const uint8_t* data, size_t n) { queue_.insert(queue_.end(), data, data + n); }
    // The host went away: what it had not yet put on the wire is gone (the byte on the line
    // finishes, as a UART's shift register would).
    void discard() { queue_.clear(); }
    size_t queued() const { return queue_.size(); }

    // True while a byte waits, is on the line, or has just left it: the receiver sees the
    // stop bit late (synchroniser, mid-bit sampling), so the settle time after the last stop
    // bit counts as work too and the device gets the byte before time stops.
    bool busy() const { return bit_ >= 0 || !queue_.empty() || settle_ > 0; }

    // The `rx` level for the next clock cycle; advances the serialiser by one cycle.
    int next_level() {
        if (bit_ < 0) {
            if (queue_.empty()) {
                if (settle_ > 0) --settle_;
                return 1;  // idle line
            }
            // Frame bits, first on the line in bit 0: start (0), data LSB first, stop (1).
            frame_ = (1u << 9) | (static_cast<unsigned>(queue_.front()) << 1);
            queue_.pop_front();
            bit_ = 0;
            cycle_ = 0;
        }
        int level = (frame_ >> bit_) & 1;
        if (++cycle_ == divisor_) {
            cycle_ = 0;
            if (++bit_ == static_cast<int>(kFrameBits)) {
                bit_ = -1;
                settle_ = kFrameBits * divisor_;
            }
        }
        return level;
    }

  private:
    uint64_t divisor_;
    std::deque<uint8_t> queue_;
    unsigned frame_ = 0;
    int bit_ = -1;  // bit of frame_ on the line, -1 between frames
    uint64_t cycle_ = 0;
    uint64_t settle_ = 0;
};

// Device -> host: a UART receiver on the `tx` pin, fed one sample per clock cycle.
class TxDeserialiser {
  public:
    explicit TxDeserialiser(uint64_t divisor) : divisor_(divisor) {}

    bool busy() const { return state_ == State::Frame; }
    uint64_t framing_errors() const { return framing_errors_; }

    // Takes the `tx` level of one cycle; returns a completed byte, or -1.
    int sample(int level) {
        switch (state_) {
        case State::WaitHigh:
            // After reset or a framing error: a falling edge needs the line high first.
            if (level) state_ = State::Hunt;
            return -1;
        case State::Hunt:
            if (!level) {
                state_ = State::Frame;
                t_ = 0;  // cycles since the start bit's falling edge
            }
            return -1;
        case State::Frame: {
            ++t_;
            // Sample bit n (0 = start, 9 = stop) in its middle: t = n * D + D / 2.
            if (t_ < divisor_ / 2 || (t_ - divisor_ / 2) % divisor_ != 0) return -1;
            uint64_t n = (t_ - divisor_ / 2) / divisor_;
            if (n == 0) {
                if (level) state_ = State::Hunt;  // a glitch, not a start bit
                shift_ = 0;
                return -1;
            }
            if (n <= 8) {
                shift_ |= static_cast<unsigned>(level) << (n - 1);
                return -1;
            }
            if (!level) {
                ++framing_errors_;
                std::fprintf(stderr, "vboard: tx framing error (stop bit 0), byte 0x%02x "
                             "dropped\n", shift_);
                state_ = State::WaitHigh;
                return -1;
            }
            // Hunt again from the middle of the stop bit, as hw.uart.UartRx does.
            state_ = State::Hunt;
            return static_cast<int>(shift_);
        }
        }
        return -1;
    }

  private:
    enum class State { WaitHigh, Hunt, Frame };
    uint64_t divisor_;
    State state_ = State::WaitHigh;
    uint64_t t_ = 0;
    unsigned shift_ = 0;
    uint64_t framing_errors_ = 0;
};

int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int bound_port(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

class Board {
  public:
    Board(const Options& opt, int listener)
        : opt_(opt), listener_(listener), rx_(opt.cycles_per_bit), tx_(opt.cycles_per_bit),
          idle_cycles_(opt.idle_byte_times * kFrameBits * opt.cycles_per_bit) {
        top_ = std::make_unique<Vlifpga_board>(&context_);
        // Reset with the line idle (high), so reset never looks like a start bit.
        top_->rx = 1;
        top_->rst = 1;
        for (uint64_t i = 0; i < opt.reset_cycles; ++i) tick();
        top_->rst = 0;
    }

    ~Board() {
        top_->final();
        if (client_ >= 0) close(client_);
    }

    // Runs until SIGINT or SIGTERM.
    void serve(const sigset_t* wait_mask) {
        while (!g_stop) {
            bool work = has_work();
            if (!work && quiet_pending_ && Clock::now() >= quiet_deadline_) {
                // The host went quiet: let the device see the silence (its idle timeout).
                quiet_pending_ = false;
                idle_credit_ = idle_cycles_;
                continue;
            }
            int timeout_ms = -1;  // no work, nothing pending: block until a socket wakes us
            if (work) {
                timeout_ms = 0;
            } else if (quiet_pending_) {
                auto left = std::chrono::ceil<std::chrono::milliseconds>(quiet_deadline_ -
                                                                           Clock::now());
                timeout_ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
            }
            service_sockets(timeout_ms, wait_mask);
            if (work) run_slice();
        }
        // The simulation's speed: per second of wall time while there was work, and per
        // second of CPU time (the same on an idle machine; the fair figure on a loaded one).
        double wall = std::chrono::duration<double>(work_time_).count();
        double cpu = static_cast<double>(work_cpu_) / CLOCKS_PER_SEC;
        std::fprintf(stderr, "vboard: %llu cycles simulated in %.3f s of busy wall time "
                     "(%.0f cycles/s), %.3f s of CPU time (%.0f cycles/s); %llu tx framing "
                     "errors\n", static_cast<unsigned long long>(cycles_), wall,
                     wall > 0 ? cycles_ / wall : 0.0, cpu, cpu > 0 ? cycles_ / cpu : 0.0,
                     static_cast<unsigned long long>(tx_.framing_errors()));
    }

  private:
    bool has_work() const {
        return rx_.busy() || tx_.busy() || top_->busy || idle_credit_ > 0;
    }

    void tick() {
        top_->clk = 0;
        top_->eval();
        top_->clk = 1;
        top_->eval();
        ++cycles_;
    }

    // Up to kSliceCycles clock cycles, fewer if the work runs out.
    void run_slice() {
        auto start = Clock::now();
        std::clock_t cpu_start = std::clock();
        for (uint64_t i = 0; i < kSliceCycles && has_work(); ++i) {
            // `rx` changes with the falling clock edge, away from the edge the device samples.
            top_->rx = rx_.next_level();
            tick();
            int byte = tx_.sample(top_->tx);
            if (byte >= 0 && client_ >= 0) {
                if (out_.size() - out_sent_ < kTxBufferMax) {
                    out_.push_back(static_cast<char>(byte));
                } else if (!warned_full_) {
                    warned_full_ = true;
                    std::fprintf(stderr, "vboard: client does not read; dropping tx bytes\n");
                }
            }
            if (idle_credit_ > 0) --idle_credit_;
        }
        work_time_ += Clock::now() - start;
        work_cpu_ += std::clock() - cpu_start;
    }

    void drop_client() {
        close(client_);
        client_ = -1;
        rx_.discard();  // else the next client would get answers to this one's requests
        out_.clear();
        out_sent_ = 0;
        warned_full_ = false;
        // A disconnect is silence too: a frame cut off by it must still time out.
        mark_activity();
    }

    // A second client while one is served: it gets kBusyLine and end of file, so it reads
    // at once that the board is taken rather than waiting for answers that never come. What
    // it sent already is read and dropped first, so that closing the socket sends FIN, not
    // RST (which could discard the line before the client reads it). The client being served
    // and the device notice nothing.
    static void refuse(int conn) {
        uint8_t buf[4096];
        while (recv(conn, buf, sizeof buf, 0) > 0) {
        }
        ssize_t sent = send(conn, kBusyLine, sizeof kBusyLine - 1, MSG_NOSIGNAL);
        if (sent != static_cast<ssize_t>(sizeof kBusyLine - 1))
            std::fprintf(stderr, "vboard: could not tell a second client the board is busy\n");
        shutdown(conn, SHUT_WR);
        close(conn);
    }

    void mark_activity() {
        quiet_pending_ = true;
        quiet_deadline_ = Clock::now() + std::chrono::milliseconds(opt_.quiet_ms);
    }

    // One ppoll() on the listener and, if one is connected, the client; timeout_ms < 0
    // blocks. SIGINT and SIGTERM are only unblocked inside it, so a signal can never slip in
    // between the check of g_stop and the wait.
    void service_sockets(int timeout_ms, const sigset_t* wait_mask) {
        pollfd fds[2] = {{listener_, POLLIN, 0}, {-1, 0, 0}};
        if (client_ >= 0) {
            short events = 0;
            if (rx_.queued() < kRxHighWater) events |= POLLIN;
            if (out_sent_ < out_.size()) events |= POLLOUT;
            fds[1] = {client_, events, 0};
        }
        timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
        int n = ppoll(fds, client_ >= 0 ? 2 : 1, timeout_ms < 0 ? nullptr : &ts, wait_mask);
        if (n <= 0) return;  // timeout, or EINTR from a signal (g_stop is set)
        // The client first: a host that disconnects and reconnects at once must find its
        // old connection gone, not be refused as a second client.
        if (client_ >= 0) serve_client(fds[1].revents);
        if (fds[0].revents & POLLIN) accept_client();
    }

    void accept_client() {
        int conn = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0) return;
        if (client_ >= 0 && peer_closed()) drop_client();
        if (client_ >= 0) {
            refuse(conn);
            return;
        }
        int one = 1;
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client_ = conn;
    }

    // Whether the client has closed its end with nothing unread left (its end of file is
    // next), though ppoll() did not report it yet.
    bool peer_closed() const {
        char c;
        ssize_t got = recv(client_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }

    void serve_client(short revents) {
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[65536];
            ssize_t got = recv(client_, buf, sizeof buf, 0);
            if (got > 0) {
                rx_.push(buf, static_cast<size_t>(got));
                mark_activity();
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                drop_client();
                return;
            }
        }
        if ((revents & POLLOUT) && out_sent_ < out_.size()) {
            ssize_t sent = send(client_, out_.data() + out_sent_, out_.size() - out_sent_,
                                MSG_NOSIGNAL);
            if (sent > 0) {
                out_sent_ += static_cast<size_t>(sent);
                if (out_sent_ == out_.size()) {
                    out_.clear();
                    out_sent_ = 0;
                }
            } else if (sent < 0 && errno != EAGAIN && errno != EINTR) {
                drop_client();
            }
        }
    }

    Options opt_;
    int listener_;
    int client_ = -1;
    VerilatedContext context_;
    std::unique_ptr<Vlifpga_board> top_;
    RxSerialiser rx_;
    TxDeserialiser tx_;
    std::string out_;       // bytes for the client; out_[out_sent_:] not sent yet
    size_t out_sent_ = 0;
    bool warned_full_ = false;
    uint64_t idle_cycles_;  // cycles of one idle advance
    uint64_t idle_credit_ = 0;
    bool quiet_pending_ = false;
    Clock::time_point quiet_deadline_;
    uint64_t cycles_ = 0;
    Clock::duration work_time_{};
    std::clock_t work_cpu_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse_options(argc, argv);

    // SIGINT and SIGTERM stay blocked except inside ppoll() (see Board::service_sockets).
    sigset_t block, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    struct sigaction action{};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    int listener = listen_on(opt.port);
    if (listener < 0) {
        std::fprintf(stderr, "vboard: cannot listen on 127.0.0.1:%d: %s\n", opt.port,
                     std::strerror(errno));
        return 1;
    }
    Board board(opt, listener);
    std::printf("lifpga virtual board: socket://127.0.0.1:%d\n", bound_port(listener));
    std::fflush(stdout);
    board.serve(&wait_mask);
    close(listener);
    return 0;
}
