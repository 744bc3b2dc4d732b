#include "portal/relay/pump.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <openssl/err.h>

namespace tandem::portal::relay {

Pipe& Pipe::operator=(Pipe&& other) noexcept {
  if (this != &other) {
    reset();
    read_ = other.read_;
    write_ = other.write_;
    other.read_ = other.write_ = -1;
  }
  return *this;
}

Pipe Pipe::open() {
  int fds[2];
  Pipe p;
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
    p.read_ = fds[0];
    p.write_ = fds[1];
  }
  return p;
}

void Pipe::reset() {
  if (read_ >= 0) ::close(read_);
  if (write_ >= 0) ::close(write_);
  read_ = write_ = -1;
}

void Pump::use_buffer(RelayBuffer* buffer) {
  mode_ = Mode::copy;
  buffer_ = buffer;
}

void Pump::use_pipe(Pipe pipe) {
  mode_ = Mode::splice;
  pipe_ = std::move(pipe);
  buffer_ = nullptr;
}

void Pump::use_tls(SSL* src_ssl, SSL* dst_ssl) {
  src_ssl_ = src_ssl;
  dst_ssl_ = dst_ssl;
}

Pipe Pump::take_pipe() {
  if (pending_ != 0) pipe_.reset();
  return std::move(pipe_);
}

namespace {
// errno for a failed SSL_read/SSL_write that is neither "would block" nor a clean close.
int tls_errno(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL && errno != 0) return errno;
  ERR_clear_error();
  return ssl_error == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO;
}
}  // namespace

Pump::Read Pump::fill() {
  ssize_t n;
  if (src_ssl_ != nullptr) {
    ERR_clear_error();
    errno = 0;
    const int r = SSL_read(src_ssl_, buffer_->data(), static_cast<int>(buffer_->size()));
    if (r <= 0) {
      last_read_ = 0;
      const int e = SSL_get_error(src_ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Read::would_block;
      if (e == SSL_ERROR_ZERO_RETURN) return Read::eof;
      if (e == SSL_ERROR_SYSCALL && errno == 0) return Read::eof;  // closed without close_notify
      error_ = tls_errno(e);
      return Read::error;
    }
    n = r;
  } else if (mode_ == Mode::splice) {
    n = ::splice(src_, nullptr, pipe_.write_end(), nullptr, kSpliceChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } else {
    n = ::recv(src_, buffer_->data(), buffer_->size(), 0);
  }
  last_read_ = 0;
  if (n > 0) {
    last_read_ = static_cast<std::size_t>(n);
    pending_ = last_read_;
    offset_ = 0;
    return Read::data;
  }
  if (n == 0) return Read::eof;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Read::would_block;
  error_ = errno;
  return Read::error;
}

Pump::Write Pump::flush() {
  while (pending_ > 0) {
    ssize_t n;
    if (dst_ssl_ != nullptr) {
      ERR_clear_error();
      errno = 0;
      const int r = SSL_write(dst_ssl_, buffer_->data() + offset_, static_cast<int>(pending_));
      if (r <= 0) {
        const int e = SSL_get_error(dst_ssl_, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return Write::blocked;
        error_ = tls_errno(e);
        return Write::error;
      }
      n = r;
    } else if (mode_ == Mode::splice) {
      n = ::splice(pipe_.read_end(), nullptr, dst_, nullptr, pending_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } else {
      n = ::send(dst_, buffer_->data() + offset_, pending_, MSG_NOSIGNAL);
    }
    if (n > 0) {
      pending_ -= static_cast<std::size_t>(n);
      offset_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Write::blocked;
    error_ = n < 0 ? errno : EPIPE;
    return Write::error;
  }
  return Write::done;
}

std::span<const std::uint8_t> Pump::last_chunk() const {
  if (mode_ != Mode::copy || buffer_ == nullptr) return {};
  return buffer_->first(last_read_);
}

}  // namespace tandem::portal::relay
