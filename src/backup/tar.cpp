#include "backup/tar.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace tandem::backup {

namespace {

constexpr size_t kBlock = 512;

std::string field(const std::string& h, size_t off, size_t len) {
  std::string s = h.substr(off, len);
  auto nul = s.find('\0');
  if (nul != std::string::npos) s.resize(nul);
  return s;
}

// Octal (space/NUL terminated) or GNU base-256 (high bit of the first byte set).
bool parse_number(const std::string& h, size_t off, size_t len, uint64_t& out) {
  auto first = static_cast<unsigned char>(h[off]);
  if (first & 0x80) {
    uint64_t v = first & 0x7f;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return false;
      v = (v << 8) | static_cast<unsigned char>(h[off + i]);
    }
    out = v;
    return true;
  }
  uint64_t v = 0;
  size_t i = off;
  while (i < off + len && h[i] == ' ') ++i;
  bool any = false;
  for (; i < off + len; ++i) {
    char c = h[i];
    if (c == '\0' || c == ' ') break;
    if (c < '0' || c > '7') return false;
    v = v * 8 + static_cast<uint64_t>(c - '0');
    any = true;
  }
  out = v;
  return any;
}

bool checksum_ok(const std::string& h) {
  uint64_t stored = 0;
  if (!parse_number(h, 148, 8, stored)) return false;
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  }
  return sum == stored;
}

}  // namespace

Status check_relative_path(std::string_view name) {
  if (name.empty() || name.front() == '/') return make_error(Errc::protocol, "unsafe path '{}' in tar", name);
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    std::string_view seg = name.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (seg.empty() || seg == "." || seg == "..") return make_error(Errc::protocol, "unsafe path '{}' in tar", name);
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return {};
}

TarReader::TarReader(TarVisitor& visitor, std::string archive_name)
    : visitor_(visitor), archive_(std::move(archive_name)) {}

Status TarReader::parse_header() {
  if (std::all_of(header_.begin(), header_.end(), [](char c) { return c == '\0'; })) {
    state_ = State::trailer;
    return {};
  }
  if (!checksum_ok(header_)) {
    return make_error(Errc::protocol, "tar '{}': bad header checksum at offset {}", archive_, offset_ - kBlock);
  }
  char type = header_[156];
  uint64_t size = 0;
  if (!parse_number(header_, 124, 12, size)) {
    return make_error(Errc::protocol, "tar '{}': bad size field at offset {}", archive_, offset_ - kBlock);
  }
  std::string name = field(header_, 0, 100);
  if (header_.compare(257, 5, "ustar") == 0) {
    std::string prefix = field(header_, 345, 155);
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  if (long_name_pending_) {
    name = long_name_;
    long_name_pending_ = false;
  }
  while (!name.empty() && name.back() == '/') name.pop_back();
  while (name.starts_with("./")) name.erase(0, 2);  // PostgreSQL writes "./pg_wal/archive_status"

  if (type == 'L') {  // GNU long name: the data is the next entry's name
    long_name_.clear();
    in_long_name_ = true;
    remaining_ = size;
    state_ = size > 0 ? State::data : State::header;
    return {};
  }
  if (type == 'x' || type == 'g') {  // pax headers: skip their data
    remaining_ = (size + kBlock - 1) / kBlock * kBlock;
    state_ = remaining_ > 0 ? State::padding : State::header;
    return {};
  }
  TarEntry e;
  e.name = name;
  uint64_t mode = 0;
  parse_number(header_, 100, 8, mode);
  e.mode = static_cast<uint32_t>(mode & 07777);
  switch (type) {
    case '0':
    case '\0':
    case '7': e.type = TarEntryType::file; break;
    case '5': e.type = TarEntryType::directory; break;
    case '2':
      e.type = TarEntryType::symlink;
      e.link_target = field(header_, 157, 100);
      break;
    default: return make_error(Errc::protocol, "tar '{}': entry '{}' has unsupported type '{}'", archive_, name, type);
  }
  if (auto st = check_relative_path(e.name); !st)
    return make_error(Errc::protocol, "tar '{}': {}", archive_, st.error().message);
  e.size = e.type == TarEntryType::file ? size : 0;
  ++entries_;
  if (auto st = visitor_.begin_entry(e); !st) return st;
  remaining_ = e.size;
  if (remaining_ == 0) {
    state_ = State::header;
    return visitor_.end_entry();
  }
  state_ = State::data;
  return {};
}

Status TarReader::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    switch (state_) {
      case State::header: {
        size_t take = std::min(bytes.size(), kBlock - header_.size());
        header_.append(bytes.data(), take);
        bytes.remove_prefix(take);
        offset_ += take;
        if (header_.size() == kBlock) {
          auto st = parse_header();
          header_.clear();
          if (!st) return st;
        }
        break;
      }
      case State::data: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(bytes.size(), remaining_));
        if (in_long_name_) {
          long_name_.append(bytes.data(), take);
        } else if (auto st = visitor_.data(bytes.substr(0, take)); !st) {
          return st;
        }
        bytes.remove_prefix(take);
        offset_ += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (in_long_name_) {
            auto nul = long_name_.find('\0');
            if (nul != std::string::npos) long_name_.resize(nul);
            long_name_pending_ = true;
            in_long_name_ = false;
          } else if (auto st = visitor_.end_entry(); !st) {
            return st;
          }
          remaining_ = (kBlock - offset_ % kBlock) % kBlock;
          state_ = remaining_ > 0 ? State::padding : State::header;
        }
        break;
      }
      case State::padding: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(bytes.size(), remaining_));
        bytes.remove_prefix(take);
        offset_ += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::header;
        break;
      }
      case State::trailer: {
        if (!std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; })) {
          return make_error(Errc::protocol, "tar '{}': data after the end-of-archive block at offset {}", archive_,
                            offset_);
        }
        offset_ += bytes.size();
        bytes = {};
        break;
      }
    }
  }
  return {};
}

Status TarReader::finish() {
  if (state_ == State::trailer || (state_ == State::header && header_.empty() && !long_name_pending_)) return {};
  return make_error(Errc::protocol, "tar '{}' is truncated at offset {}", archive_, offset_);
}

TarExtractor::TarExtractor(std::string root, uid_t uid, gid_t gid, std::vector<std::string> dir_instead_of_symlink)
    : root_(std::move(root)), uid_(uid), gid_(gid), dir_instead_of_symlink_(std::move(dir_instead_of_symlink)) {}

TarExtractor::~TarExtractor() {
  if (fd_ >= 0) ::close(fd_);
}

Status TarExtractor::make_parents(const std::string& rel) {
  size_t pos = 0;
  while ((pos = rel.find('/', pos)) != std::string::npos) {
    std::string dir = root_ + "/" + rel.substr(0, pos);
    if (::mkdir(dir.c_str(), 0700) == 0) {
      if (::chown(dir.c_str(), uid_, gid_) != 0) return make_error(Errc::io, "chown {}: {}", dir, std::strerror(errno));
    } else if (errno != EEXIST) {
      return make_error(Errc::io, "mkdir {}: {}", dir, std::strerror(errno));
    }
    ++pos;
  }
  return {};
}

Status TarExtractor::begin_entry(const TarEntry& e) {
  if (auto st = make_parents(e.name); !st) return st;
  std::string path = root_ + "/" + e.name;
  current_ = path;
  bool as_dir =
      e.type == TarEntryType::directory ||
      (e.type == TarEntryType::symlink && std::find(dir_instead_of_symlink_.begin(), dir_instead_of_symlink_.end(),
                                                    e.name) != dir_instead_of_symlink_.end());
  if (as_dir) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return make_error(Errc::io, "mkdir {}: {}", path, std::strerror(errno));
    }
    if (::chown(path.c_str(), uid_, gid_) != 0) return make_error(Errc::io, "chown {}: {}", path, std::strerror(errno));
    return {};
  }
  if (e.type == TarEntryType::symlink) {
    if (::symlink(e.link_target.c_str(), path.c_str()) != 0) {
      return make_error(Errc::io, "symlink {} -> {}: {}", path, e.link_target, std::strerror(errno));
    }
    if (::lchown(path.c_str(), uid_, gid_) != 0)
      return make_error(Errc::io, "chown {}: {}", path, std::strerror(errno));
    return {};
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0) return make_error(Errc::io, "create {}: {}", path, std::strerror(errno));
  if (::fchown(fd_, uid_, gid_) != 0) return make_error(Errc::io, "chown {}: {}", path, std::strerror(errno));
  ++files_;
  written_ = writeback_ = 0;
  return {};
}

// A restore ends with syncfs(); starting the writeback as the data arrives (the way
// PostgreSQL's *_flush_after settings do) overlaps the disk writes with the rest of the
// restore instead of leaving all of them for that final call.
constexpr uint64_t kWritebackEvery = 8u << 20;

void TarExtractor::start_writeback() {
  if (fd_ < 0 || written_ == writeback_) return;
  // Only a hint: errors surface in the final syncfs().
  (void)::sync_file_range(fd_, static_cast<off_t>(writeback_), static_cast<off_t>(written_ - writeback_),
                          SYNC_FILE_RANGE_WRITE);
  writeback_ = written_;
}

Status TarExtractor::data(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "write {}: {}", current_, std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    written_ += static_cast<uint64_t>(n);
  }
  if (written_ - writeback_ >= kWritebackEvery) start_writeback();
  return {};
}

Status TarExtractor::end_entry() {
  if (fd_ >= 0) {
    start_writeback();
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return make_error(Errc::io, "close {}: {}", current_, std::strerror(errno));
  }
  return {};
}

}  // namespace tandem::backup
