#include "backup/archive_protocol.hpp"

#include <fmt/format.h>

#include "backup/repo.hpp"

namespace tandem::backup {

namespace {
constexpr std::string_view kVerb = "archive ";
}

Result<std::string> parse_archive_request(std::string_view line) {
  if (line.size() > kMaxRequestLine)
    return make_error(Errc::invalid_argument, "request longer than {} bytes", kMaxRequestLine);
  if (!line.starts_with(kVerb)) return make_error(Errc::invalid_argument, "not an 'archive <file>' request");
  std::string_view name = line.substr(kVerb.size());
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL file", printable(name));
  return std::string(name);
}

std::string archive_request(std::string_view name) {
  return fmt::format("{}{}\n", kVerb, name);
}

std::string error_answer(std::string_view message) {
  std::string out = "error ";
  for (char c : message) out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  if (out.size() == 6) out += "unknown error";
  out += '\n';
  return out;
}

std::string printable(std::string_view bytes, size_t max) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (bytes.size() > max) out += "...";
  return out;
}

}  // namespace tandem::backup
