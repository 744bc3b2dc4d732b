#pragma once
// Small file helpers for files PostgreSQL reads: written atomically (temp file, fsync,
// rename), with an exact mode and owned by the PostgreSQL OS user even though the
// agent runs as root. Free functions; safe from any thread.
#include <string>

#include "base/result.hpp"

namespace tandem::pg {

// Replaces `path` with `content` atomically; the file gets `mode` and belongs to `owner`
// (an OS user name; empty keeps the caller's uid).
Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode, const std::string& owner);

// Like write_file_atomic, but leaves the file alone when it already holds exactly
// `content` with that mode and owner. Returns whether it wrote.
Result<bool> write_file_if_changed(const std::string& path, const std::string& content, unsigned mode,
                                   const std::string& owner);

// The whole file; not_found when it does not exist.
Result<std::string> read_file(const std::string& path);

// The last `max_lines` lines of a file (for error messages quoting a log); empty on error.
std::string tail_file(const std::string& path, int max_lines);

// The last `max_lines` lines of a text.
std::string tail_lines(const std::string& text, int max_lines);

// Creates `path` (and missing parents, which get 0755 and stay root's) and sets exactly
// `mode` and `owner` on the last component.
Status ensure_dir(const std::string& path, unsigned mode, const std::string& owner);

// Removes a file; succeeds when it did not exist. Returns whether it removed something.
Result<bool> remove_file(const std::string& path);

}  // namespace tandem::pg
