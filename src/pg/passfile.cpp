#include "pg/passfile.hpp"

#include "pg/files.hpp"

namespace tandem::pg {

namespace {

std::string escape_field(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string render_pgpass(const std::vector<PassEntry>& entries) {
  std::string out;
  for (const auto& e : entries) {
    out += escape_field(e.host) + ":" + escape_field(e.port) + ":" + escape_field(e.database) + ":" +
           escape_field(e.user) + ":" + escape_field(e.password.reveal()) + "\n";
  }
  return out;
}

Status write_passfile(const std::string& path, const std::vector<PassEntry>& entries, const std::string& owner) {
  for (const auto& e : entries) {
    if (e.user.empty()) return make_error(Errc::invalid_argument, "passfile {}: an entry has no user name", path);
    if (e.password.reveal().find('\n') != std::string::npos) {
      return make_error(Errc::invalid_argument, "passfile {}: the password of {} contains a newline", path, e.user);
    }
  }
  return write_file_atomic(path, render_pgpass(entries), 0600, owner);
}

}  // namespace tandem::pg
