#pragma once
// Key-encryption keys (KEKs) for sealed objects.
//
// A deployment has one active KEK (32 random bytes kept hex-encoded in a mode-0600 key
// file, created with the deployment). Each sealed object carries the 8-byte id of the KEK
// that wrapped its data key, so after a rotation the keyring (active key + retired keys)
// still opens old objects. Key bytes never reach a log or an error message.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace tandem::storage {

inline constexpr size_t kKekBytes = 32;
inline constexpr size_t kKeyIdBytes = 8;
using KeyId = std::array<uint8_t, kKeyIdBytes>;

std::string key_id_hex(const KeyId& id);

// One 256-bit KEK. Movable, wiped on destruction; has no formatter.
class Kek {
 public:
  // Wraps exactly kKekBytes raw bytes.
  static Result<Kek> from_bytes(std::string raw);
  static Result<Kek> generate();

  Kek(Kek&& other) noexcept;
  Kek& operator=(Kek&& other) noexcept;
  Kek(const Kek&) = delete;
  Kek& operator=(const Kek&) = delete;
  ~Kek();

  const KeyId& id() const { return id_; }  // first 8 bytes of SHA-256(key)
  const uint8_t* bytes() const { return reinterpret_cast<const uint8_t*>(raw_.data()); }

 private:
  explicit Kek(std::string raw);
  void wipe();
  std::string raw_;
  KeyId id_{};
};

// Reads the KEK in `path` (64 hex characters, optional trailing newline). Refuses a file
// that group or others can read.
Result<Kek> read_key_file(const std::string& path);

// Reads `path`, or when it does not exist creates it (mode 0600, O_EXCL, fsync'd, and its
// directory fsync'd) with a fresh random key.
Result<Kek> load_or_create_key_file(const std::string& path);

// The KEKs a process can use: the active one seals, every one opens. Owned by whoever
// configures storage; immutable after set-up, so readable from many threads.
class Keyring {
 public:
  explicit Keyring(Kek active);
  Keyring(Keyring&&) noexcept = default;
  Keyring& operator=(Keyring&&) noexcept = default;

  // Adds a retired key (read-only). Adding a key whose id is present already is a no-op.
  void add_retired(Kek key);

  const Kek& active() const { return keys_.front(); }
  const Kek* find(const KeyId& id) const;
  // Ids of all keys, active first, for error messages.
  std::string describe_ids() const;

 private:
  std::vector<Kek> keys_;  // [0] is the active key
};

}  // namespace tandem::storage
