#pragma once
// A fixed-size byte buffer, allocated once per direction of a session and reused for
// every read: the relay path allocates nothing per message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace tandem::portal::relay {

class RelayBuffer {
 public:
  explicit RelayBuffer(std::size_t size) : data_(new std::uint8_t[size]), size_(size) {}

  std::uint8_t* data() { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> first(std::size_t n) const { return {data_.get(), n}; }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_;
};

}  // namespace tandem::portal::relay
