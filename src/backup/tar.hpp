#pragma once
// Tar streams as PostgreSQL's BASE_BACKUP sends them (ustar: regular files, directories,
// symbolic links; names up to 100 bytes plus the ustar prefix; sizes in octal or base-256).
//
// TarReader is a pure push parser: feed() bytes in any split and it calls the visitor for
// each entry and each piece of file data. TarExtractor is a visitor that writes the
// entries under a directory (files 0600, directories 0700, chowned to a user), refusing
// names that would escape it. Both are owned by one caller on one thread.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace tandem::backup {

enum class TarEntryType { file, directory, symlink };

struct TarEntry {
  std::string name;  // relative path, no trailing '/'
  TarEntryType type = TarEntryType::file;
  uint32_t mode = 0;
  uint64_t size = 0;
  std::string link_target;  // symlinks only
};

class TarVisitor {
 public:
  virtual ~TarVisitor() = default;
  virtual Status begin_entry(const TarEntry& entry) = 0;
  virtual Status data(std::string_view bytes) = 0;  // file contents, in order
  virtual Status end_entry() = 0;
};

class TarReader {
 public:
  TarReader(TarVisitor& visitor, std::string archive_name);
  // Parses `bytes`; errors name the archive and the offset.
  Status feed(std::string_view bytes);
  // The stream ended: it must end between entries (with or without the zero blocks).
  Status finish();
  uint64_t entries() const { return entries_; }

 private:
  enum class State { header, data, padding, trailer };
  Status parse_header();

  TarVisitor& visitor_;
  std::string archive_;
  State state_ = State::header;
  std::string header_;  // partial 512-byte block
  uint64_t remaining_ = 0;
  uint64_t offset_ = 0;
  uint64_t entries_ = 0;
  std::string long_name_;  // GNU 'L' entry pending
  bool long_name_pending_ = false;
  bool in_long_name_ = false;
};

// Writes entries under `root`. Symlinks named in `skip_symlinks` (e.g. "pg_tblspc/16384"
// when the tablespace is restored in place) become empty directories instead.
class TarExtractor : public TarVisitor {
 public:
  TarExtractor(std::string root, uid_t uid, gid_t gid, std::vector<std::string> dir_instead_of_symlink = {});
  ~TarExtractor() override;
  TarExtractor(const TarExtractor&) = delete;
  TarExtractor& operator=(const TarExtractor&) = delete;

  Status begin_entry(const TarEntry& entry) override;
  Status data(std::string_view bytes) override;
  Status end_entry() override;
  uint64_t files() const { return files_; }

 private:
  Status make_parents(const std::string& rel);

  std::string root_;
  uid_t uid_;
  gid_t gid_;
  std::vector<std::string> dir_instead_of_symlink_;
  // Asks the kernel to start writing the current file's new bytes to disk (not waiting).
  void start_writeback();

  int fd_ = -1;
  std::string current_;
  uint64_t files_ = 0;
  uint64_t written_ = 0;    // bytes of the current file written
  uint64_t writeback_ = 0;  // bytes of it whose writeback was started
};

// Splits a name into safe segments: no absolute paths, no "..", no empty names.
Status check_relative_path(std::string_view name);

}  // namespace tandem::backup
