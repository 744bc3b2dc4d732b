#include "storage/digest.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tandem::storage {

namespace {

const uint8_t* u8(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Sha256Digest sha256(std::string_view data) {
  Sha256Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size()) {
    throw std::runtime_error("EVP_Digest(sha256) failed");
  }
  return d;
}

std::string sha256_hex(std::string_view data) {
  return to_hex(sha256(data));
}

Sha256Digest hmac_sha256(std::string_view key, std::string_view data) {
  Sha256Digest d{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), u8(data), data.size(), d.data(), &len) == nullptr ||
      len != d.size()) {
    throw std::runtime_error("HMAC(sha256) failed");
  }
  return d;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xF]);
  }
  return out;
}

Result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return make_error(Errc::invalid_argument, "hex string has odd length {}", hex.size());
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]);
    int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return make_error(Errc::invalid_argument, "not a hex digit at offset {}", i);
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

Result<std::string> random_bytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<uint8_t*>(out.data()), static_cast<int>(n)) != 1) {
    return make_error(Errc::internal, "the system random generator failed (RAND_bytes)");
  }
  return out;
}

struct Sha256Stream::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256Stream::Sha256Stream() : s_(new State) {
  s_->ctx = EVP_MD_CTX_new();
  if (s_->ctx == nullptr || EVP_DigestInit_ex(s_->ctx, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit(sha256) failed");
  }
}

Sha256Stream::~Sha256Stream() {
  EVP_MD_CTX_free(s_->ctx);
  delete s_;
}

void Sha256Stream::update(std::string_view data) {
  if (EVP_DigestUpdate(s_->ctx, data.data(), data.size()) != 1) throw std::runtime_error("EVP_DigestUpdate failed");
}

Sha256Digest Sha256Stream::finish() {
  Sha256Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(s_->ctx, d.data(), &len) != 1) throw std::runtime_error("EVP_DigestFinal failed");
  EVP_DigestInit_ex(s_->ctx, EVP_sha256(), nullptr);
  return d;
}

}  // namespace tandem::storage
