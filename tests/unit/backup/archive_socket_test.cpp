// The archive module's protocol (archive_protocol.hpp) and AsyncArchiver's socket against
// the file store and a fake pg_wal: a request is answered "stored" only once the file is
// durably stored (pushed at once, or acknowledged from its spool entry), a conflicting
// archived copy is answered with the error, and malformed requests close only their own
// connection.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "archiver_fixture.hpp"
#include "backup/archive_protocol.hpp"
#include "backup/async_archiver.hpp"
#include "test_files.hpp"

namespace tandem::backup {
namespace {

namespace fs = std::filesystem;
using test_files::read_file;
using test_files::wal_bytes;
using test_files::write_file;
using namespace std::chrono_literals;

TEST(ArchiveProtocol, ParsesRequestsForWalFilesOnly) {
  for (const char* name : {"000000010000000000000001", "00000002.history", "000000010000000000000003.partial",
                           "000000010000000000000002.00000028.backup"}) {
    auto r = parse_archive_request(std::string("archive ") + name);
    ASSERT_TRUE(r.ok()) << name << ": " << r.error().message;
    EXPECT_EQ(*r, name);
    EXPECT_EQ(archive_request(name), std::string("archive ") + name + "\n");
  }
  for (const char* bad :
       {"", "archive", "archive ", "ARCHIVE 000000010000000000000001", "fetch 000000010000000000000001",
        "archive 00000001000000000000000a", "archive ../000000010000000000000001",
        "archive pg_wal/000000010000000000000001", "archive 000000010000000000000001 extra",
        "archive  000000010000000000000001", "archive 000000010000000000000001\r"}) {
    auto r = parse_archive_request(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' was accepted";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::invalid_argument);
    }
  }
  EXPECT_FALSE(parse_archive_request("archive " + std::string(200, '0')).ok());
}

TEST(ArchiveProtocol, AnswersAreOneLine) {
  EXPECT_EQ(kStoredAnswer, "stored\n");
  EXPECT_EQ(error_answer("refused:\nsecond line\r"), "error refused: second line \n");
  EXPECT_EQ(error_answer(""), "error unknown error\n");
  EXPECT_EQ(printable(std::string("ab\x01\n\\", 5)), "ab\\x01\\x0a\\x5c");
  EXPECT_EQ(printable(std::string(100, 'x'), 4), "xxxx...");
}

// A client of the archiver's socket, as the archive module is.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{60, 0};  // a hung archiver fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // One answer line (with its '\n'), or "" when the archiver closed the connection.
  std::string answer() {
    std::string line;
    char c;
    while (::recv(fd_, &c, 1, 0) == 1) {
      line += c;
      if (c == '\n') return line;
    }
    return "";
  }
  std::string ask(const std::string& name) {
    if (!send(archive_request(name))) return "(send failed)";
    return answer();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class ArchiveSocketTest : public test_files::ArchiverFixture {
 protected:
  std::string socket_path() const { return (dir_ / "archiver.sock").string(); }
  ArchiverOptions options() const {
    ArchiverOptions o = base_options();
    o.socket_path = socket_path();
    return o;
  }
};

TEST_F(ArchiveSocketTest, ARequestIsAnsweredStoredOnlyOnceTheFileIsStored) {
  const std::string name = "000000010000000000000001";
  ready(name, 1);
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  // Inactive: no worker pushes, so the request itself pushes the file.
  Client c(socket_path());
  ASSERT_TRUE(c.connected());
  EXPECT_FALSE(archived(name));
  EXPECT_EQ(c.ask(name), "stored\n");
  EXPECT_TRUE(archived(name));
  auto st = archiver.stats();
  EXPECT_EQ(st.stored, 1u);
  EXPECT_EQ(st.answered, 1u);
  auto dest = dir_ / "fetched";
  ASSERT_TRUE(fetch_wal_file(*repo_, name, dest.string()).ok());
  EXPECT_EQ(read_file(dest), read_file(wal(name)));
  // Asked again (PostgreSQL retries after a crash): acknowledged from the spool entry on the
  // same connection, nothing pushed again.
  EXPECT_EQ(c.ask(name), "stored\n");
  EXPECT_EQ(archiver.stats().stored, 1u);
  EXPECT_EQ(archiver.stats().identical, 0u);
  EXPECT_EQ(archiver.stats().answered, 2u);
  // Several files on one kept connection, pushed ahead by active workers or on request.
  archiver.set_active(true);
  for (int i = 2; i <= 6; ++i) {
    std::string n = fmt::format("0000000100000000000000{:02X}", i);
    ready(n, 10 + i);
    EXPECT_EQ(c.ask(n), "stored\n") << n;
    EXPECT_TRUE(archived(n)) << n;
  }
  EXPECT_EQ(archiver.stats().stored, 6u);
}

TEST_F(ArchiveSocketTest, ConflictsAndMissingFilesAreAnsweredWithTheError) {
  const std::string name = "000000010000000000000010";
  ready(name, 1);
  ASSERT_TRUE(push_wal_bytes(repo_->store(), repo_->keyring(), name, wal_bytes(256 * 1024, 2)).ok());
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  Client c(socket_path());
  std::string a = c.ask(name);
  EXPECT_TRUE(a.starts_with("error ")) << a;
  EXPECT_NE(a.find("different content"), std::string::npos) << a;
  EXPECT_FALSE(fs::exists(dir_ / "spool" / name));
  // The connection stays usable; a file that is not in pg_wal is an error, not "stored".
  a = c.ask("000000010000000000000011");
  EXPECT_TRUE(a.starts_with("error ")) << a;
  EXPECT_EQ(archiver.stats().answered, 0u);
}

TEST_F(ArchiveSocketTest, MalformedRequestsCloseOnlyTheirConnection) {
  const std::string name = "000000010000000000000020";
  ready(name, 3);
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  Client keep(socket_path());
  for (const std::string& bad :
       {std::string("archive ../../etc/passwd\n"), std::string("hello\n"),
        std::string("archive 000000010000000000000020 x\n"), std::string(4096, 'A'), std::string("\0\xff\n", 3)}) {
    Client c(socket_path());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(bad));
    EXPECT_EQ(c.answer(), "") << printable(bad);  // closed without an answer
  }
  // A client that leaves in the middle of a request does not disturb the others.
  {
    Client gone(socket_path());
    ASSERT_TRUE(gone.send("archive 0000000100"));
  }
  EXPECT_EQ(keep.ask(name), "stored\n");
  Client fresh(socket_path());
  EXPECT_EQ(fresh.ask(name), "stored\n");
}

TEST_F(ArchiveSocketTest, StopsWithIdleConnectionsAndRemovesTheSocket) {
  {
    // A stale socket file (a crashed archiver) is replaced; a non-socket is refused.
    write_file(socket_path(), "x");
    AsyncArchiver refused(options());
    auto s = refused.start();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find("not a socket"), std::string::npos) << s.error().message;
    fs::remove(socket_path());
  }
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path().data(), socket_path().size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);  // the socket file stays, nobody listens
    ASSERT_TRUE(fs::is_socket(socket_path()));
  }
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  Client idle(socket_path());
  ASSERT_TRUE(idle.connected());
  archiver.stop();
  EXPECT_EQ(idle.answer(), "");
  EXPECT_FALSE(fs::exists(socket_path()));
  Client late(socket_path());
  EXPECT_FALSE(late.connected());
}

}  // namespace
}  // namespace tandem::backup
