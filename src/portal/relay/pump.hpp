#pragma once
// One direction of a relayed plaintext connection: bytes from a source socket to a
// destination socket, both non-blocking. Two modes:
//  - copy: one recv() into a RelayBuffer, then send(); the caller may look at the chunk in
//    between (the portal scans the member's start-up messages for BackendKeyData);
//  - splice: splice(2) from the source into a pipe and from the pipe into the destination,
//    so the payload never passes through user space.
// In copy mode either side may be TLS (an SSL object on the socket's descriptor): reads
// then go through SSL_read and writes through SSL_write.
// At most one chunk is in flight: fill() is only called when nothing is pending, so the
// pump never buffers more than one read. Owned by a RelayLoop connection; one thread.
#include <cstddef>
#include <cstdint>
#include <span>

#include <openssl/ssl.h>

#include "portal/relay/buffer.hpp"

namespace tandem::portal::relay {

// A pipe for splice(2): both ends non-blocking and close-on-exec. Move-only.
class Pipe {
 public:
  Pipe() = default;
  ~Pipe() { reset(); }
  Pipe(Pipe&& other) noexcept : read_(other.read_), write_(other.write_) { other.read_ = other.write_ = -1; }
  Pipe& operator=(Pipe&& other) noexcept;
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  // A new pipe, or an invalid one (errno set) when the process is out of descriptors.
  static Pipe open();
  bool valid() const { return read_ >= 0; }
  int read_end() const { return read_; }
  int write_end() const { return write_; }
  void reset();

 private:
  int read_ = -1;
  int write_ = -1;
};

class Pump {
 public:
  enum class Mode { copy, splice };
  // What fill() found at the source.
  enum class Read { data, eof, would_block, error };
  // What flush() could do with the pending bytes.
  enum class Write { done, blocked, error };

  Pump(int src, int dst) : src_(src), dst_(dst) {}

  // Copy mode with `buffer` (not owned; must stay valid until the mode changes).
  void use_buffer(RelayBuffer* buffer);
  // TLS on the source (SSL_read) or the destination (SSL_write); copy mode only. The SSL
  // objects are not owned and must read from / write to the pump's descriptors.
  void use_tls(SSL* src_ssl, SSL* dst_ssl);
  // True when the TLS layer of the source holds bytes already read from the socket: the
  // caller must fill() again, as the socket will not signal them.
  bool source_has_buffered() const { return src_ssl_ != nullptr && SSL_has_pending(src_ssl_) == 1; }
  // Splice mode through `pipe`. Only while nothing is pending.
  void use_pipe(Pipe pipe);
  // Gives the pipe back (for reuse) if it is empty; otherwise an invalid pipe.
  Pipe take_pipe();
  RelayBuffer* buffer() const { return buffer_; }
  Mode mode() const { return mode_; }

  // Reads once from the source, as much as one buffer (or pipe) holds. Call only when
  // pending() is 0. After Read::data, last_read() bytes are pending.
  Read fill();
  // Writes pending bytes to the destination until done or it would block.
  Write flush();

  std::size_t pending() const { return pending_; }
  std::size_t last_read() const { return last_read_; }
  // The bytes of the last fill() in copy mode (empty in splice mode); valid until the next fill().
  std::span<const std::uint8_t> last_chunk() const;
  // errno of the last Read::error or Write::error (EPROTO for a TLS protocol error).
  int error() const { return error_; }

 private:
  int src_;
  int dst_;
  Mode mode_ = Mode::copy;
  RelayBuffer* buffer_ = nullptr;
  SSL* src_ssl_ = nullptr;
  SSL* dst_ssl_ = nullptr;
  Pipe pipe_;
  std::size_t offset_ = 0;   // copy mode: first pending byte in the buffer
  std::size_t pending_ = 0;  // bytes read but not yet written
  std::size_t last_read_ = 0;
  int error_ = 0;
};

// Bytes one splice(2) asks to move: the default pipe capacity (16 pages).
inline constexpr std::size_t kSpliceChunk = 64 * 1024;

}  // namespace tandem::portal::relay
