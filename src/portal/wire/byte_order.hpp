#pragma once
// Big-endian (network order) integer reads and writes for the PostgreSQL wire protocol.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tandem::portal::wire {

// Reads a 32-bit big-endian integer at `at`; the caller checks that 4 bytes are there.
inline std::uint32_t read_u32(std::span<const std::uint8_t> buf, std::size_t at) {
  return (std::uint32_t{buf[at]} << 24) | (std::uint32_t{buf[at + 1]} << 16) | (std::uint32_t{buf[at + 2]} << 8) |
         std::uint32_t{buf[at + 3]};
}

inline void append_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

inline void write_u32(std::vector<std::uint8_t>& out, std::size_t at, std::uint32_t v) {
  out[at] = static_cast<std::uint8_t>(v >> 24);
  out[at + 1] = static_cast<std::uint8_t>(v >> 16);
  out[at + 2] = static_cast<std::uint8_t>(v >> 8);
  out[at + 3] = static_cast<std::uint8_t>(v);
}

}  // namespace tandem::portal::wire
