#pragma once
// Sealed objects: everything Tandem stores is compressed (zstd) and then encrypted with
// AES-256-GCM in fixed-size chunks under a random per-object data key, which is itself
// wrapped (AES-256-GCM) by the deployment's key-encryption key.
//
// Format, version 1 (all integers big-endian):
//   header (90 bytes)
//     0  magic "TNDMSEAL"          8
//     8  version = 1               1
//     9  compression (0 none, 1 zstd)
//    10  chunk size                4   ciphertext bytes per full chunk
//    14  KEK id                    8   first 8 bytes of SHA-256(KEK)
//    22  nonce prefix              8   random per object
//    30  wrap nonce               12   random
//    42  wrapped data key         32   AES-256-GCM(KEK, data key, aad = bytes 0..29)
//    74  wrap tag                 16
//   then chunks: ciphertext || 16-byte tag, with
//     nonce = nonce prefix || u32 chunk index
//     aad   = SHA-256(header) || u64 chunk index || u8 final flag
//   Every chunk but the last holds exactly `chunk size` bytes; the last holds fewer
//   (possibly zero) and carries final = 1. So a reordered, dropped, duplicated, truncated
//   or extended chunk sequence fails authentication, and so does any flipped bit.
//
// Readers never present unauthenticated bytes: a chunk reaches the sink only after its tag
// verified. A stream that fails part-way has already emitted earlier verified chunks, so a
// caller that writes a file must write to a temporary and publish only after finish()
// succeeds (see unseal() for whole buffers).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "storage/keyring.hpp"

namespace tandem::storage {

// Receives output bytes; an error stops the stream and is returned to the writer's caller.
using ByteSink = std::function<Status(std::string_view)>;

inline constexpr size_t kSealHeaderBytes = 90;
inline constexpr size_t kSealTagBytes = 16;
inline constexpr size_t kMinChunkSize = 4096;
inline constexpr size_t kMaxChunkSize = 64u << 20;

struct SealOptions {
  size_t chunk_size = 1u << 20;  // ciphertext bytes per full chunk
  bool compress = true;          // zstd; turn off for data that is already compressed
  int zstd_level = 3;
  int zstd_workers = 0;  // >0: zstd compresses on this many extra threads
};

// Streaming encryptor for one object. Owned by one caller; not thread-safe.
class SealWriter {
 public:
  // Writes the header to `sink` at once. `object_name` only labels errors.
  static Result<std::unique_ptr<SealWriter>> create(const Kek& kek, ByteSink sink, std::string object_name,
                                                    const SealOptions& options = {});
  ~SealWriter();
  SealWriter(const SealWriter&) = delete;
  SealWriter& operator=(const SealWriter&) = delete;

  Status write(std::string_view plaintext);
  // Flushes the compressor and writes the final chunk. No writes after this.
  Status finish();

  uint64_t plaintext_bytes() const { return plaintext_bytes_; }
  uint64_t sealed_bytes() const { return sealed_bytes_; }

 private:
  struct Impl;
  explicit SealWriter(std::unique_ptr<Impl> impl);
  Status emit_chunk(bool final);
  Status compress(std::string_view in, bool end);

  std::unique_ptr<Impl> impl_;
  uint64_t plaintext_bytes_ = 0;
  uint64_t sealed_bytes_ = 0;
};

// Streaming decryptor for one object: feed sealed bytes in any split, verified plaintext
// comes out of `sink`. Owned by one caller; not thread-safe.
class UnsealReader {
 public:
  static std::unique_ptr<UnsealReader> create(const Keyring& keyring, ByteSink sink, std::string object_name);
  ~UnsealReader();
  UnsealReader(const UnsealReader&) = delete;
  UnsealReader& operator=(const UnsealReader&) = delete;

  Status write(std::string_view sealed);
  // Verifies the final chunk and the end of the compressed stream. Success here, and only
  // here, means the whole object was authentic and complete.
  Status finish();

  uint64_t plaintext_bytes() const { return plaintext_bytes_; }

 private:
  struct Impl;
  explicit UnsealReader(std::unique_ptr<Impl> impl);
  Status open_header();
  Status open_chunk(std::string_view record, bool final);
  Status fail(Error e);

  std::unique_ptr<Impl> impl_;
  uint64_t plaintext_bytes_ = 0;
};

// Whole-buffer helpers.
Result<std::string> seal(const Kek& kek, std::string_view plaintext, const std::string& object_name,
                         const SealOptions& options = {});
// All or nothing: returns the plaintext only when the whole object verified.
Result<std::string> unseal(const Keyring& keyring, std::string_view sealed, const std::string& object_name);

// The KEK id recorded in a sealed object's header (for diagnostics), or an error.
Result<KeyId> sealed_key_id(std::string_view sealed_prefix, const std::string& object_name);

}  // namespace tandem::storage
