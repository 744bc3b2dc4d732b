#pragma once
// Lsn: a PostgreSQL WAL position, printed and parsed as PostgreSQL does ("16/B374D848").
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem {

class Lsn {
 public:
  constexpr Lsn() = default;
  constexpr explicit Lsn(uint64_t v) : v_(v) {}
  static std::optional<Lsn> parse(std::string_view text);
  constexpr uint64_t value() const { return v_; }
  std::string to_string() const;
  auto operator<=>(const Lsn&) const = default;

 private:
  uint64_t v_ = 0;
};

}  // namespace tandem
