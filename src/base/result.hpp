#pragma once
// Result<T>: an expected value or an Error. Expected failures (timeouts, a dead
// endpoint, a missing key, bad input) are values; exceptions are reserved for
// start-up errors that end the process.
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace tandem {

enum class Errc {
  ok = 0,
  invalid_argument,   // bad input from a user or a peer
  not_found,          // a key, file or object does not exist
  conflict,           // a compare-and-swap lost, a duplicate name
  timeout,            // a deadline passed
  unavailable,        // a peer cannot be reached (connection refused, no quorum)
  io,                 // a local file or process operation failed
  protocol,           // a peer sent something we do not understand
  permission_denied,  // authentication or authorisation failed
  internal,           // a bug: an invariant did not hold
};

const char* errc_name(Errc c);

// An error says what failed and why, in words a user can act on.
struct Error {
  Errc code = Errc::internal;
  std::string message;

  std::string to_string() const { return fmt::format("{}: {}", errc_name(code), message); }
};

template <typename... Args>
Error make_error(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  return Error{code, fmt::format(f, std::forward<Args>(args)...)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }
  T value_or(T fallback) const { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace tandem
