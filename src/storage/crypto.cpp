#include "storage/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "storage/digest.hpp"

namespace tandem::storage {

namespace {

constexpr char kMagic[8] = {'T', 'N', 'D', 'M', 'S', 'E', 'A', 'L'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kCompressNone = 0;
constexpr uint8_t kCompressZstd = 1;
constexpr size_t kWrapAadBytes = 30;
constexpr size_t kNoncePrefixBytes = 8;
constexpr size_t kWrapNonceBytes = 12;
constexpr size_t kDataKeyBytes = 32;
constexpr size_t kOffChunkSize = 10;
constexpr size_t kOffKeyId = 14;
constexpr size_t kOffNoncePrefix = 22;
constexpr size_t kOffWrapNonce = 30;
constexpr size_t kOffWrappedKey = 42;
constexpr size_t kOffWrapTag = 74;
constexpr uint64_t kMaxChunks = 0xFFFFFFFFull;

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint32_t get_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

// One AES-256-GCM operation with a 12-byte nonce. `ctx` must already hold the key
// (initialised for the right direction); only the nonce changes per call.
bool gcm_encrypt(EVP_CIPHER_CTX* ctx, const uint8_t* nonce, const uint8_t* aad, size_t aad_len, const uint8_t* in,
                 size_t len, uint8_t* out, uint8_t* tag) {
  int n = 0;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (EVP_EncryptUpdate(ctx, nullptr, &n, aad, static_cast<int>(aad_len)) != 1) return false;
  if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, static_cast<int>(len)) != 1) return false;
  if (EVP_EncryptFinal_ex(ctx, out + len, &n) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kSealTagBytes, tag) == 1;
}

bool gcm_decrypt(EVP_CIPHER_CTX* ctx, const uint8_t* nonce, const uint8_t* aad, size_t aad_len, const uint8_t* in,
                 size_t len, const uint8_t* tag, uint8_t* out) {
  int n = 0;
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (EVP_DecryptUpdate(ctx, nullptr, &n, aad, static_cast<int>(aad_len)) != 1) return false;
  if (len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, static_cast<int>(len)) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kSealTagBytes, const_cast<uint8_t*>(tag)) != 1) return false;
  return EVP_DecryptFinal_ex(ctx, out + len, &n) == 1;
}

CipherCtx new_gcm(const uint8_t* key, bool encrypt) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return ctx;
  int ok = encrypt ? EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nullptr)
                   : EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nullptr);
  if (ok != 1) ctx.reset();
  return ctx;
}

// Associated data of chunk `index`: binds it to this object's header, its position and
// whether it is the last one.
std::array<uint8_t, 41> chunk_aad(const Sha256Digest& header_hash, uint64_t index, bool final) {
  std::array<uint8_t, 41> aad{};
  std::copy(header_hash.begin(), header_hash.end(), aad.begin());
  put_u64(aad.data() + 32, index);
  aad[40] = final ? 1 : 0;
  return aad;
}

std::array<uint8_t, 12> chunk_nonce(const uint8_t* prefix, uint64_t index) {
  std::array<uint8_t, 12> nonce{};
  std::copy_n(prefix, kNoncePrefixBytes, nonce.begin());
  put_u32(nonce.data() + kNoncePrefixBytes, static_cast<uint32_t>(index));
  return nonce;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// SealWriter

struct SealWriter::Impl {
  ByteSink sink;
  std::string name;
  size_t chunk_size = 0;
  bool compress = true;
  CipherCtx cipher;
  ZSTD_CCtx* zstd = nullptr;
  Sha256Digest header_hash{};
  uint8_t nonce_prefix[kNoncePrefixBytes]{};
  std::string chunk;   // plaintext (compressed) bytes of the chunk being filled, capacity chunk_size
  size_t filled = 0;   // bytes of `chunk` in use
  std::string sealed;  // ciphertext + tag of one chunk
  uint64_t index = 0;
  bool finished = false;
  bool failed = false;

  ~Impl() {
    ZSTD_freeCCtx(zstd);
    OPENSSL_cleanse(chunk.data(), chunk.size());
  }
};

SealWriter::SealWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SealWriter::~SealWriter() = default;

Result<std::unique_ptr<SealWriter>> SealWriter::create(const Kek& kek, ByteSink sink, std::string object_name,
                                                       const SealOptions& options) {
  if (options.chunk_size < kMinChunkSize || options.chunk_size > kMaxChunkSize) {
    return make_error(Errc::invalid_argument, "chunk size {} is outside [{}, {}]", options.chunk_size, kMinChunkSize,
                      kMaxChunkSize);
  }
  auto impl = std::make_unique<Impl>();
  impl->sink = std::move(sink);
  impl->name = std::move(object_name);
  impl->chunk_size = options.chunk_size;
  impl->compress = options.compress;

  auto data_key = random_bytes(kDataKeyBytes);
  auto randoms = random_bytes(kNoncePrefixBytes + kWrapNonceBytes);
  if (!data_key) return data_key.error();
  if (!randoms) return randoms.error();

  std::array<uint8_t, kSealHeaderBytes> header{};
  std::memcpy(header.data(), kMagic, sizeof kMagic);
  header[8] = kVersion;
  header[9] = options.compress ? kCompressZstd : kCompressNone;
  put_u32(header.data() + kOffChunkSize, static_cast<uint32_t>(options.chunk_size));
  std::copy(kek.id().begin(), kek.id().end(), header.begin() + kOffKeyId);
  std::memcpy(header.data() + kOffNoncePrefix, randoms->data(), kNoncePrefixBytes + kWrapNonceBytes);
  std::memcpy(impl->nonce_prefix, randoms->data(), kNoncePrefixBytes);

  auto wrap = new_gcm(kek.bytes(), true);
  const auto* dk = reinterpret_cast<const uint8_t*>(data_key->data());
  if (!wrap || !gcm_encrypt(wrap.get(), header.data() + kOffWrapNonce, header.data(), kWrapAadBytes, dk, kDataKeyBytes,
                            header.data() + kOffWrappedKey, header.data() + kOffWrapTag)) {
    OPENSSL_cleanse(data_key->data(), data_key->size());
    return make_error(Errc::internal, "object '{}': wrapping the data key failed (OpenSSL)", impl->name);
  }
  impl->cipher = new_gcm(dk, true);
  OPENSSL_cleanse(data_key->data(), data_key->size());
  if (!impl->cipher) return make_error(Errc::internal, "object '{}': AES-256-GCM set-up failed", impl->name);
  impl->header_hash = sha256(std::string_view(reinterpret_cast<const char*>(header.data()), header.size()));

  if (options.compress) {
    impl->zstd = ZSTD_createCCtx();
    if (impl->zstd == nullptr) return make_error(Errc::internal, "object '{}': zstd context failed", impl->name);
    ZSTD_CCtx_setParameter(impl->zstd, ZSTD_c_compressionLevel, options.zstd_level);
    ZSTD_CCtx_setParameter(impl->zstd, ZSTD_c_checksumFlag, 0);  // GCM authenticates already
    if (options.zstd_workers > 0) ZSTD_CCtx_setParameter(impl->zstd, ZSTD_c_nbWorkers, options.zstd_workers);
  }
  impl->chunk.resize(options.chunk_size);
  impl->sealed.resize(options.chunk_size + kSealTagBytes);

  auto writer = std::unique_ptr<SealWriter>(new SealWriter(std::move(impl)));
  if (auto s = writer->impl_->sink(std::string_view(reinterpret_cast<const char*>(header.data()), header.size())); !s) {
    return s.error();
  }
  writer->sealed_bytes_ = kSealHeaderBytes;
  return writer;
}

Status SealWriter::emit_chunk(bool final) {
  Impl& m = *impl_;
  if (m.index >= kMaxChunks) {
    return make_error(Errc::invalid_argument, "object '{}' is too large: more than {} chunks", m.name, kMaxChunks);
  }
  auto nonce = chunk_nonce(m.nonce_prefix, m.index);
  auto aad = chunk_aad(m.header_hash, m.index, final);
  auto* out = reinterpret_cast<uint8_t*>(m.sealed.data());
  if (!gcm_encrypt(m.cipher.get(), nonce.data(), aad.data(), aad.size(),
                   reinterpret_cast<const uint8_t*>(m.chunk.data()), m.filled, out, out + m.filled)) {
    return make_error(Errc::internal, "object '{}': AES-256-GCM encryption of chunk {} failed", m.name, m.index);
  }
  size_t n = m.filled + kSealTagBytes;
  if (auto s = m.sink(std::string_view(m.sealed.data(), n)); !s) return s;
  sealed_bytes_ += n;
  ++m.index;
  m.filled = 0;
  return {};
}

Status SealWriter::compress(std::string_view in, bool end) {
  Impl& m = *impl_;
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  while (true) {
    if (m.filled == m.chunk_size) {
      // A full chunk is never the final one (the final chunk is always short).
      if (auto s = emit_chunk(false); !s) return s;
    }
    ZSTD_outBuffer output{m.chunk.data(), m.chunk_size, m.filled};
    size_t rc = ZSTD_compressStream2(m.zstd, &output, &input, end ? ZSTD_e_end : ZSTD_e_continue);
    m.filled = output.pos;
    if (ZSTD_isError(rc)) {
      return make_error(Errc::internal, "object '{}': zstd compression failed: {}", m.name, ZSTD_getErrorName(rc));
    }
    bool out_full = m.filled == m.chunk_size;
    if (end ? rc == 0 : (input.pos == input.size && !out_full)) return {};
  }
}

Status SealWriter::write(std::string_view plaintext) {
  Impl& m = *impl_;
  if (m.finished || m.failed) {
    return make_error(Errc::internal, "object '{}': write after finish or failure", m.name);
  }
  plaintext_bytes_ += plaintext.size();
  Status s;
  if (m.compress) {
    s = compress(plaintext, false);
  } else {
    while (!plaintext.empty()) {
      if (m.filled == m.chunk_size) {
        if (s = emit_chunk(false); !s) break;
      }
      size_t take = std::min(plaintext.size(), m.chunk_size - m.filled);
      std::memcpy(m.chunk.data() + m.filled, plaintext.data(), take);
      m.filled += take;
      plaintext.remove_prefix(take);
    }
  }
  if (!s) m.failed = true;
  return s;
}

Status SealWriter::finish() {
  Impl& m = *impl_;
  if (m.finished || m.failed) return make_error(Errc::internal, "object '{}': finish after finish or failure", m.name);
  if (m.compress) {
    if (auto s = compress({}, true); !s) {
      m.failed = true;
      return s;
    }
  }
  if (m.filled == m.chunk_size) {
    if (auto s = emit_chunk(false); !s) {
      m.failed = true;
      return s;
    }
  }
  m.finished = true;
  return emit_chunk(true);
}

// ---------------------------------------------------------------------------------------
// UnsealReader

struct UnsealReader::Impl {
  const Keyring* keyring = nullptr;
  ByteSink sink;
  std::string name;
  std::string header;  // collects the first kSealHeaderBytes
  bool header_done = false;
  bool compressed = false;
  size_t chunk_size = 0;
  CipherCtx cipher;
  ZSTD_DCtx* zstd = nullptr;
  size_t zstd_last = 0;  // last ZSTD_decompressStream return: 0 when a frame just ended
  Sha256Digest header_hash{};
  uint8_t nonce_prefix[kNoncePrefixBytes]{};
  std::string record;  // one sealed chunk being collected (<= chunk_size + tag)
  std::string plain;   // decrypted chunk
  std::string out;     // decompression buffer
  uint64_t index = 0;
  bool failed = false;
  bool finished = false;

  ~Impl() {
    ZSTD_freeDCtx(zstd);
    OPENSSL_cleanse(plain.data(), plain.size());
  }
};

UnsealReader::UnsealReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnsealReader::~UnsealReader() = default;

std::unique_ptr<UnsealReader> UnsealReader::create(const Keyring& keyring, ByteSink sink, std::string object_name) {
  auto impl = std::make_unique<Impl>();
  impl->keyring = &keyring;
  impl->sink = std::move(sink);
  impl->name = std::move(object_name);
  return std::unique_ptr<UnsealReader>(new UnsealReader(std::move(impl)));
}

Status UnsealReader::fail(Error e) {
  impl_->failed = true;
  return e;
}

Status UnsealReader::open_header() {
  Impl& m = *impl_;
  const auto* h = reinterpret_cast<const uint8_t*>(m.header.data());
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) {
    return fail(make_error(Errc::protocol, "object '{}' is not a Tandem sealed object (bad magic)", m.name));
  }
  if (h[8] != kVersion) {
    return fail(make_error(Errc::protocol, "object '{}' has sealed-object format version {}; this build reads {}",
                           m.name, h[8], kVersion));
  }
  if (h[9] != kCompressNone && h[9] != kCompressZstd) {
    return fail(make_error(Errc::protocol, "object '{}' names unknown compression {}: corrupt or tampered header",
                           m.name, h[9]));
  }
  m.compressed = h[9] == kCompressZstd;
  m.chunk_size = get_u32(h + kOffChunkSize);
  if (m.chunk_size < kMinChunkSize || m.chunk_size > kMaxChunkSize) {
    return fail(make_error(Errc::protocol, "object '{}' declares chunk size {}: corrupt or tampered header", m.name,
                           m.chunk_size));
  }
  KeyId id{};
  std::copy_n(h + kOffKeyId, id.size(), id.begin());
  const Kek* kek = m.keyring->find(id);
  if (kek == nullptr) {
    return fail(make_error(Errc::permission_denied,
                           "object '{}' was sealed with key {}, which is not in the keyring (have: {}); supply that "
                           "key file (e.g. a retired key kept after rotation)",
                           m.name, key_id_hex(id), m.keyring->describe_ids()));
  }
  uint8_t data_key[kDataKeyBytes];
  auto unwrap = new_gcm(kek->bytes(), false);
  bool ok = unwrap && gcm_decrypt(unwrap.get(), h + kOffWrapNonce, h, kWrapAadBytes, h + kOffWrappedKey, kDataKeyBytes,
                                  h + kOffWrapTag, data_key);
  if (ok) m.cipher = new_gcm(data_key, false);
  OPENSSL_cleanse(data_key, sizeof data_key);
  if (!ok) {
    return fail(make_error(Errc::protocol,
                           "object '{}': header failed authentication under key {}: the object is corrupt or was "
                           "tampered with",
                           m.name, key_id_hex(id)));
  }
  if (!m.cipher) return fail(make_error(Errc::internal, "object '{}': AES-256-GCM set-up failed", m.name));
  std::memcpy(m.nonce_prefix, h + kOffNoncePrefix, kNoncePrefixBytes);
  m.header_hash = sha256(m.header);
  if (m.compressed) {
    m.zstd = ZSTD_createDCtx();
    if (m.zstd == nullptr) return fail(make_error(Errc::internal, "object '{}': zstd context failed", m.name));
    m.out.resize(ZSTD_DStreamOutSize());
  }
  m.record.reserve(m.chunk_size + kSealTagBytes);
  m.plain.resize(m.chunk_size);
  m.header_done = true;
  return {};
}

Status UnsealReader::open_chunk(std::string_view record, bool final) {
  Impl& m = *impl_;
  if (record.size() < kSealTagBytes) {
    return fail(make_error(Errc::protocol,
                           "object '{}' is truncated: chunk {} has {} bytes, less than its authentication tag", m.name,
                           m.index, record.size()));
  }
  if (m.index >= kMaxChunks) {
    return fail(make_error(Errc::protocol, "object '{}' has more than {} chunks: corrupt", m.name, kMaxChunks));
  }
  size_t len = record.size() - kSealTagBytes;
  auto nonce = chunk_nonce(m.nonce_prefix, m.index);
  auto aad = chunk_aad(m.header_hash, m.index, final);
  const auto* in = reinterpret_cast<const uint8_t*>(record.data());
  if (!gcm_decrypt(m.cipher.get(), nonce.data(), aad.data(), aad.size(), in, len, in + len,
                   reinterpret_cast<uint8_t*>(m.plain.data()))) {
    return fail(make_error(Errc::protocol,
                           "object '{}': chunk {} failed authentication: the object is corrupt, tampered with, "
                           "truncated or extended",
                           m.name, m.index));
  }
  ++m.index;
  std::string_view plain(m.plain.data(), len);
  if (!m.compressed) {
    plaintext_bytes_ += len;
    if (auto s = m.sink(plain); !s) return fail(s.error());
    return {};
  }
  ZSTD_inBuffer input{plain.data(), plain.size(), 0};
  while (input.pos < input.size || (final && m.zstd_last != 0)) {
    ZSTD_outBuffer output{m.out.data(), m.out.size(), 0};
    size_t rc = ZSTD_decompressStream(m.zstd, &output, &input);
    if (ZSTD_isError(rc)) {
      return fail(make_error(Errc::protocol, "object '{}': zstd decompression failed in chunk {}: {}", m.name,
                             m.index - 1, ZSTD_getErrorName(rc)));
    }
    m.zstd_last = rc;
    if (output.pos > 0) {
      plaintext_bytes_ += output.pos;
      if (auto s = m.sink(std::string_view(m.out.data(), output.pos)); !s) return fail(s.error());
    } else if (input.pos == input.size) {
      break;  // no progress possible without more input
    }
  }
  return {};
}

Status UnsealReader::write(std::string_view sealed) {
  Impl& m = *impl_;
  if (m.failed || m.finished) return make_error(Errc::internal, "object '{}': write after finish or failure", m.name);
  if (!m.header_done) {
    size_t take = std::min(sealed.size(), kSealHeaderBytes - m.header.size());
    m.header.append(sealed.substr(0, take));
    sealed.remove_prefix(take);
    if (m.header.size() < kSealHeaderBytes) return {};
    if (auto s = open_header(); !s) return s;
  }
  const size_t full = m.chunk_size + kSealTagBytes;
  while (!sealed.empty()) {
    // Fast path: whole records straight from the input, no copy.
    if (m.record.empty() && sealed.size() >= full) {
      if (auto s = open_chunk(sealed.substr(0, full), false); !s) return s;
      sealed.remove_prefix(full);
      continue;
    }
    size_t take = std::min(sealed.size(), full - m.record.size());
    m.record.append(sealed.substr(0, take));
    sealed.remove_prefix(take);
    if (m.record.size() == full) {
      // A full-size record is never final (the final chunk is always short).
      if (auto s = open_chunk(m.record, false); !s) return s;
      m.record.clear();
    }
  }
  return {};
}

Status UnsealReader::finish() {
  Impl& m = *impl_;
  if (m.failed || m.finished) return make_error(Errc::internal, "object '{}': finish after finish or failure", m.name);
  if (!m.header_done) {
    return fail(make_error(Errc::protocol, "object '{}' is truncated: {} bytes, shorter than the {}-byte header",
                           m.name, m.header.size(), kSealHeaderBytes));
  }
  if (m.record.empty()) {
    return fail(make_error(Errc::protocol, "object '{}' is truncated: it ends after chunk {} without a final chunk",
                           m.name, m.index));
  }
  if (auto s = open_chunk(m.record, true); !s) return s;
  m.record.clear();
  if (m.compressed && m.zstd_last != 0) {
    return fail(make_error(Errc::protocol, "object '{}': the compressed stream is incomplete", m.name));
  }
  m.finished = true;
  return {};
}

// ---------------------------------------------------------------------------------------
// Whole buffers

Result<std::string> seal(const Kek& kek, std::string_view plaintext, const std::string& object_name,
                         const SealOptions& options) {
  std::string out;
  out.reserve(kSealHeaderBytes + plaintext.size() / 2 + 64);
  auto w = SealWriter::create(
      kek,
      [&out](std::string_view b) {
        out.append(b);
        return Status{};
      },
      object_name, options);
  if (!w) return w.error();
  if (auto s = (*w)->write(plaintext); !s) return s.error();
  if (auto s = (*w)->finish(); !s) return s.error();
  return out;
}

Result<std::string> unseal(const Keyring& keyring, std::string_view sealed, const std::string& object_name) {
  std::string out;
  auto r = UnsealReader::create(
      keyring,
      [&out](std::string_view b) {
        out.append(b);
        return Status{};
      },
      object_name);
  Status s = r->write(sealed);
  if (s) s = r->finish();
  if (!s) {
    OPENSSL_cleanse(out.data(), out.size());
    return s.error();
  }
  return out;
}

Result<KeyId> sealed_key_id(std::string_view sealed_prefix, const std::string& object_name) {
  if (sealed_prefix.size() < kOffKeyId + kKeyIdBytes || std::memcmp(sealed_prefix.data(), kMagic, 8) != 0) {
    return make_error(Errc::protocol, "object '{}' is not a Tandem sealed object", object_name);
  }
  KeyId id{};
  std::memcpy(id.data(), sealed_prefix.data() + kOffKeyId, id.size());
  return id;
}

}  // namespace tandem::storage
