#pragma once
// Hashes, MACs, hex and randomness used by the storage module (OpenSSL EVP underneath).
// Stateless functions, safe from any thread.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace tandem::storage {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::string_view data);
std::string sha256_hex(std::string_view data);
Sha256Digest hmac_sha256(std::string_view key, std::string_view data);

std::string to_hex(std::string_view bytes);
inline std::string to_hex(const Sha256Digest& d) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}
// Lower- or upper-case hex to bytes; an error for odd length or a non-hex character.
Result<std::string> from_hex(std::string_view hex);

// `n` bytes from the OpenSSL CSPRNG.
Result<std::string> random_bytes(size_t n);

// Incremental SHA-256 for streams (e.g. a multipart upload's part hash).
// Owned by one caller; not thread-safe.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void update(std::string_view data);
  Sha256Digest finish();

 private:
  struct State;
  State* s_;
};

}  // namespace tandem::storage
