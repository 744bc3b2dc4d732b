#pragma once
// One client connection through the portal, from accept to close:
//   1. negotiation (session_client.cpp): SSLRequest → 'S' + TLS, GSSENCRequest → 'N',
//      direct TLS with ALPN, CancelRequest, and the StartupMessage; plaintext is refused
//      unless allowed; any bytes sent after an SSLRequest in the same read are refused.
//   2. routing and backend connection (session_server.cpp): the route callback picks a
//      member; TCP (and optionally TLS) to it; the StartupMessage is forwarded as sent.
//   3. relay (session_relay.cpp): both directions with one large buffer each, watching
//      the server's messages only until ReadyForQuery to learn the BackendKeyData.
// A Session lives on one worker thread (its io_context runs on exactly one thread) and is
// kept alive by the handlers of its pending operations; nothing else owns it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "portal/relay/buffer.hpp"
#include "portal/relay/endpoint.hpp"
#include "portal/relay/options.hpp"
#include "portal/relay/session_registry.hpp"
#include "portal/relay/stream.hpp"
#include "portal/tls/server_context.hpp"
#include "portal/wire/backend.hpp"
#include "portal/wire/startup.hpp"

namespace tandem::portal::relay {

class RelayLoop;

// What every session of one listener shares. Owned by the listener through a shared_ptr
// that each session also holds, so it outlives them all.
struct ListenerContext {
  std::string name;  // "rw", "ro": in logs and metrics
  RelayOptions options;
  tls::ServerContextHolder* server_tls = nullptr;  // null: TLS is not offered; must outlive
  std::shared_ptr<tls::SslContext> backend_tls;    // for endpoints with tls=true
  RouteFn route;
  HoldFn hold;                          // empty: never hold
  SessionRegistry* registry = nullptr;  // must outlive the listener
  RelayCounters counters;
  std::atomic<bool> stopping{false};              // set by the listener's stop(): new sessions close at once
  std::atomic<bool> warned_cert_mismatch{false};  // logged once: see Session::check_channel_binding
  // Relay threads for sessions that are plain TCP on both sides (owned by the server;
  // empty: every session relays on its asio worker).
  std::vector<RelayLoop*> loops;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using tcp = boost::asio::ip::tcp;

  Session(tcp::socket socket, std::shared_ptr<ListenerContext> ctx);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Registers the session and starts negotiating. Call once, on the session's thread.
  void start();
  // Closes both sides at once; later calls do nothing. On the session's thread.
  void close(const std::string& reason);

 private:
  enum class State { negotiating, connecting, relaying, finished };
  using Clock = std::chrono::steady_clock;

  // session_client.cpp
  void read_startup(std::size_t at_least = 1);
  void on_startup_bytes();
  void on_ssl_request(std::size_t packet_length);
  void on_gssenc_request(std::size_t packet_length);
  void on_direct_tls();
  void on_client_handshake(const boost::system::error_code& ec, bool direct);
  void on_startup_message(const wire::StartupPacket& packet);
  void on_cancel_request(const wire::CancelKey& key);
  void send_byte(std::uint8_t byte, std::function<void()> next);
  // Sends a FATAL ErrorResponse to the client, then closes.
  void reject(std::string_view sqlstate, const std::string& message, std::string_view hint = {},
              std::string_view detail = {});

  // session_server.cpp
  void route_and_connect(int attempt);
  // No route: wait and retry while the listener holds, else refuse (57P03).
  void hold_or_refuse(int attempt);
  void connect_backend(std::function<void()> on_ready);
  void on_backend_connected(std::function<void()> on_ready);
  void start_backend_tls(std::function<void()> on_ready);
  void backend_failed(const std::string& why);
  void check_channel_binding();
  void forward_startup();

  // session_relay.cpp
  friend class RelayLoop;  // runs the relay of plaintext sessions (relay_loop.cpp)
  void start_relay();
  // Gives both sockets (and a TLS client's SSL object) to a RelayLoop, which relays from
  // then on. Only for a plaintext member side.
  void hand_to_loop();
  bool client_tls_is_drained();
  // Called by the RelayLoop, on its thread, when it closed the session's sockets.
  void end_on_loop(const std::string& reason);
  void pump_to_server();
  void pump_to_client();
  void scan_server_bytes(std::span<const std::uint8_t> bytes);
  void arm_timer(Clock::time_point at);
  void on_timer();
  bool done() const { return state_ == State::finished || rejecting_; }
  std::string describe_end(const boost::system::error_code& ec, const char* side) const;

  std::shared_ptr<ListenerContext> ctx_;
  boost::asio::any_io_executor executor_;
  SessionId id_ = 0;
  std::string peer_;  // "127.0.0.1:41234"
  State state_ = State::negotiating;
  bool rejecting_ = false;  // an ErrorResponse is on its way; ignore everything else
  bool reported_ = false;   // the reason was already logged (by reject())

  Stream client_;
  std::optional<Stream> backend_;
  std::optional<tcp::resolver> resolver_;
  boost::asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;
  Clock::time_point last_activity_;
  // Set (on this session's worker) when the sockets went to a loop; from then on the loop
  // owns the session, and close() only forwards the request to it.
  RelayLoop* loop_ = nullptr;

  // Negotiation reads into startup_, which grows only as far as the packet needs (a few
  // hundred bytes, at most ~10 KB), so a connection that never gets past start-up costs
  // little. The relay buffers are allocated once the member has the StartupMessage.
  std::vector<std::uint8_t> startup_;
  std::size_t have_ = 0;  // bytes received in startup_
  std::unique_ptr<RelayBuffer> to_server_;
  std::unique_ptr<RelayBuffer> to_client_;
  wire::StartupPhase phase_ = wire::StartupPhase::initial;
  bool ssl_refused_ = false;

  Endpoint endpoint_;
  std::optional<Clock::time_point> hold_until_;  // set while the session waits for a route
  std::optional<wire::CancelKey> cancel_to_forward_;
  wire::BackendScanner scanner_;
  bool cancel_key_registered_ = false;
  std::string user_;
  std::string database_;
  std::uint8_t byte_ = 0;            // single-byte replies ('S', 'N') and the member's answer
  std::vector<std::uint8_t> reply_;  // an ErrorResponse or CancelRequest being written
};

}  // namespace tandem::portal::relay
