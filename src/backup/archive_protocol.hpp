#pragma once
// The line protocol between PostgreSQL's archive module (src/pgmodule/tandem_archive.c,
// archive_library) and the WAL archiver's unix socket (AsyncArchiver, ArchiverOptions::
// socket_path). One request at a time per connection:
//
//   request  "archive <file>\n"   <file> as PostgreSQL names it (%f): a segment, a
//                                 timeline history file, a backup history file or a
//                                 .partial segment; never a path
//   answer   "stored\n"           durably in the repository (or an identical copy was)
//            "error <message>\n"  not archived; the message is one line
//
// A malformed request (not a line of that form, a name that is not a WAL file, a line
// longer than kMaxRequestLine) gets no answer: the archiver logs it and closes the
// connection. Pure functions, no I/O.
#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace tandem::backup {

inline constexpr size_t kMaxRequestLine = 128;  // "archive " + the longest WAL file name is 48

// The file name a request line (without its '\n') asks for; Errc::invalid_argument with
// the reason when the line is malformed.
Result<std::string> parse_archive_request(std::string_view line);

std::string archive_request(std::string_view name);  // "archive <name>\n"
inline constexpr std::string_view kStoredAnswer = "stored\n";
// "error <message>\n", control characters in the message replaced by spaces.
std::string error_answer(std::string_view message);

// Up to `max` bytes of untrusted input for a log line: printable ASCII kept, the rest \xNN.
std::string printable(std::string_view bytes, size_t max = 64);

}  // namespace tandem::backup
