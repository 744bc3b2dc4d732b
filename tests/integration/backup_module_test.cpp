// PostgreSQL's archive module (archive_library = tandem_archive.so) with a real
// PostgreSQL 15 and a real `tandem wal-archiver`, both as the postgres user: segments are
// archived through the archiver's socket (readable by wal-fetch), switching from
// archive_command to the module takes only a reload, malformed socket input does not
// disturb the archiver, with the archiver stopped the fallback command archives, and a
// refused push (different bytes under the same name) keeps the segment .ready with the
// archiver's message in PostgreSQL's log.
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "backup/async_archiver.hpp"
#include "base/process.hpp"
#include "pg/files.hpp"
#include "storage/keyring.hpp"
#include "testkit/pg_member.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string module_path() {
  return (fs::path(testkit::tandem_binary()).parent_path() / backup::kArchiveModuleName).string();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// One PostgreSQL with a file-store repository, a spool and a socket, all usable by postgres.
class ArchiveModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(module_path())) << module_path() << " was not built (postgresql-server-dev-15 missing?)";
    ASSERT_TRUE(pw_.write_passfile(dir_.sub("pgpass")));
    for (const char* d : {"store", "spool", "keys"}) ASSERT_TRUE(pg::ensure_dir(dir_.sub(d), 0700, "postgres"));
    key_ = dir_.sub("keys/backup.key");
    ASSERT_TRUE(storage::load_or_create_key_file(key_));
    passwd* pg_user = ::getpwnam("postgres");
    ASSERT_NE(pg_user, nullptr);
    ASSERT_EQ(::chown(key_.c_str(), pg_user->pw_uid, pg_user->pw_gid), 0) << std::strerror(errno);
    store_ = "file://" + dir_.sub("store");
    member_ = std::make_unique<testkit::PgMember>(dir_.path(), "m1", pw_);
    socket_ = member_->settings().run_dir + "/" + backup::kArchiverSocketName;
  }
  void TearDown() override {
    stop_archiver();
    member_.reset();
  }

  std::string repo_args() const {
    return "--store " + shell_quote(store_) + " --key-file " + shell_quote(key_) + " --spool-dir " +
           shell_quote(dir_.sub("spool"));
  }
  std::string wal_push_command() const {
    return shell_quote(testkit::tandem_binary()) + " wal-push " + repo_args() + " %p";
  }
  pg::ManagedConfig with_module() const {
    pg::ManagedConfig cfg;
    cfg.archive_command = wal_push_command();
    cfg.archive_library = module_path();
    cfg.archive_socket = socket_;
    cfg.archive_fallback_command = wal_push_command();
    return cfg;
  }
  void start_archiver() {
    SpawnOptions o;
    o.argv = {
        testkit::tandem_binary(),     "wal-archiver", "--store",         store_,     "--key-file", key_, "--pgdata",
        member_->settings().data_dir, "--spool-dir",  dir_.sub("spool"), "--socket", socket_};
    o.run_as_user = "postgres";
    o.output_file = dir_.sub("archiver.log");
    o.cwd = "/tmp";
    auto pid = spawn(o);
    ASSERT_TRUE(pid) << pid.error().message;
    archiver_ = *pid;
    ASSERT_TRUE(testkit::wait_until([&] { return fs::exists(socket_); }, 60s))
        << "the archiver did not listen on " << socket_ << ": " << read_file(dir_.sub("archiver.log"));
  }
  void stop_archiver() {
    if (archiver_ <= 0) return;
    ::kill(archiver_, SIGTERM);
    auto st = wait_for(archiver_, 60s);
    if (!st) {
      ::kill(archiver_, SIGKILL);
      (void)wait_for(archiver_, 10s);
    }
    EXPECT_TRUE(st && st->ok()) << (st ? st->describe() : "did not stop") << ": "
                                << read_file(dir_.sub("archiver.log"));
    archiver_ = -1;
  }
  std::string sql(const std::string& q) {
    auto c = member_->local();
    EXPECT_TRUE(c) << c.error().message;
    if (!c) return "";
    auto r = c->exec(q);
    EXPECT_TRUE(r) << q << ": " << r.error().message;
    if (!r || r->rows.empty() || r->rows[0].empty()) return "";
    return r->rows[0][0].value_or("");
  }
  // Writes a little, switches to a new WAL file and returns the one it left.
  std::string switch_wal() {
    sql("CREATE TABLE IF NOT EXISTS t (x int)");
    sql("INSERT INTO t SELECT generate_series(1, 1000)");
    std::string seg = sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    EXPECT_EQ(seg.size(), 24u);
    sql("SELECT pg_switch_wal()");
    return seg;
  }
  bool archived_by_pg(const std::string& seg) {
    std::string last = sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
    return last.size() == 24 && last >= seg;
  }
  void wait_archived(const std::string& seg) {
    ASSERT_TRUE(testkit::wait_until([&] { return archived_by_pg(seg); }, 120s, 100ms))
        << seg << " not archived; pg_stat_archiver: " << sql("SELECT row_to_json(a)::text FROM pg_stat_archiver a")
        << "\narchiver log:\n"
        << read_file(dir_.sub("archiver.log")) << "\nPostgreSQL log:\n"
        << pg_log();
  }
  std::string pg_log() const { return read_file(member_->settings().log_file); }
  // The archiver's "answered N" (requests of the module answered "stored").
  int answered() const {
    std::istringstream in(read_file(dir_.sub("spool") + "/" + backup::kArchiverStatusName));
    std::string word;
    int n = 0;
    while (in >> word) {
      if (word == "answered") in >> n;
    }
    return n;
  }
  // wal-fetch restores `seg`, and it is that segment: its first page's long header names
  // WAL (magic 0xD110 for PostgreSQL 15) at the segment's start address.
  void expect_fetchable(const std::string& seg) {
    const std::string dest = dir_.sub("fetched-" + seg);
    auto r = run(
        SpawnOptions{.argv = {testkit::tandem_binary(), "wal-fetch", "--store", store_, "--key-file", key_, seg, dest}},
        60s);
    ASSERT_TRUE(r && r->status.ok()) << seg << ": " << (r ? r->output : r.error().message);
    std::string d = read_file(dest);
    ASSERT_EQ(d.size(), 16u << 20) << seg;
    uint16_t magic;
    uint64_t addr;
    std::memcpy(&magic, d.data(), 2);
    std::memcpy(&addr, d.data() + 8, 8);
    EXPECT_EQ(magic, 0xD110) << seg;
    uint64_t log = std::stoull(seg.substr(8, 8), nullptr, 16), segno = std::stoull(seg.substr(16, 8), nullptr, 16);
    EXPECT_EQ(addr, (log << 32) | (segno << 24)) << seg;
    fs::remove(dest);
  }

  testkit::TempDir dir_{"tandem-archmod"};
  testkit::PgPasswords pw_;
  std::unique_ptr<testkit::PgMember> member_;
  std::string key_, store_, socket_;
  pid_t archiver_ = -1;
};

TEST_F(ArchiveModuleTest, ArchivesThroughTheSocketAndFallsBackWithoutTheArchiver) {
  ASSERT_TRUE(member_->bootstrap_primary());
  ASSERT_TRUE(member_->postmaster().stop(pg::StopMode::fast, 60s));
  // Today's setting first: archive_command.
  pg::ManagedConfig command;
  command.archive_command = wal_push_command();
  ASSERT_TRUE(member_->configure_and_start(command));
  start_archiver();
  std::string seg = switch_wal();
  wait_archived(seg);
  EXPECT_EQ(sql("SHOW archive_library"), "");

  // Switching to the module is a reload: PostgreSQL's archiver restarts to load it.
  auto change = member_->postmaster().apply_config(with_module());
  ASSERT_TRUE(change) << change.error().message;
  ASSERT_TRUE(testkit::wait_until([&] { return sql("SHOW archive_library") == module_path(); }, 60s));
  EXPECT_EQ(sql("SHOW tandem_archive.socket"), socket_);
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        return pg_log().find("restarting archiver process because value of \"archive_library\" was changed") !=
               std::string::npos;
      },
      60s))
      << pg_log();
  const int before = answered();
  std::vector<std::string> segs;
  for (int i = 0; i < 5; ++i) segs.push_back(switch_wal());
  wait_archived(segs.back());
  EXPECT_GE(answered() - before, 5) << read_file(dir_.sub("spool") + "/" + backup::kArchiverStatusName);
  for (const auto& s : segs) expect_fetchable(s);
  EXPECT_EQ(sql("SELECT failed_count FROM pg_stat_archiver"), "0") << pg_log();

  // Malformed input on the socket closes that connection only.
  for (const std::string& bad : {std::string("archive ../../postgresql.conf\n"), std::string(1000, 'x'),
                                 std::string("archive 000000010000000000000001 000000010000000000000002\n")}) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_.data(), socket_.size());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    ASSERT_EQ(::send(fd, bad.data(), bad.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bad.size()));
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);
    // Closed without an answer: EOF, or a reset when our bytes were left unread.
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
    ::close(fd);
  }
  EXPECT_TRUE(wait_for(archiver_, 0ms) == std::nullopt)
      << "the archiver exited: " << read_file(dir_.sub("archiver.log"));
  EXPECT_NE(read_file(dir_.sub("archiver.log")).find("malformed request"), std::string::npos);
  const int after_garbage = answered();
  seg = switch_wal();
  wait_archived(seg);
  EXPECT_GT(answered(), after_garbage);

  // Without the archiver, the fallback command archives (and PostgreSQL's log says so).
  stop_archiver();
  ASSERT_FALSE(fs::exists(socket_));
  std::vector<std::string> fallback;
  for (int i = 0; i < 2; ++i) fallback.push_back(switch_wal());
  wait_archived(fallback.back());
  for (const auto& s : fallback) expect_fetchable(s);
  EXPECT_NE(pg_log().find("tandem_archive: cannot reach the WAL archiver"), std::string::npos) << pg_log();
  EXPECT_EQ(sql("SELECT failed_count FROM pg_stat_archiver"), "0") << pg_log();

  // Back again: the module reconnects to a new archiver.
  start_archiver();
  seg = switch_wal();
  wait_archived(seg);
  EXPECT_GE(answered(), 1);
  EXPECT_NE(pg_log().find("tandem_archive: connected to the WAL archiver"), std::string::npos) << pg_log();
  expect_fetchable(seg);
}

TEST_F(ArchiveModuleTest, ARefusedPushKeepsTheSegmentReadyAndLogsTheError) {
  ASSERT_TRUE(member_->bootstrap_primary());
  ASSERT_TRUE(member_->postmaster().stop(pg::StopMode::fast, 60s));
  ASSERT_TRUE(member_->configure_and_start(with_module()));
  start_archiver();
  std::string ok = switch_wal();
  wait_archived(ok);

  // Another cluster's segment under the name the next switch archives (written to first:
  // at a segment's very start pg_walfile_name names the previous one).
  sql("INSERT INTO t VALUES (1)");
  const std::string seg = sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
  ASSERT_TRUE(pg::ensure_dir(dir_.sub("other"), 0700, "postgres"));
  {
    std::mt19937_64 rng(11);
    std::string bytes(16u << 20, '\0');
    for (size_t i = 0; i < bytes.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(bytes.data() + i, &v, 8);
    }
    std::ofstream(dir_.sub("other/" + seg), std::ios::binary) << bytes;
  }
  SpawnOptions push;
  push.argv = {testkit::tandem_binary(), "wal-push", "--store", store_, "--key-file", key_, dir_.sub("other/" + seg)};
  push.run_as_user = "postgres";
  push.cwd = "/tmp";
  auto pushed = run(push, 60s);
  ASSERT_TRUE(pushed && pushed->status.ok()) << (pushed ? pushed->output : pushed.error().message);

  EXPECT_EQ(switch_wal(), seg);
  ASSERT_TRUE(testkit::wait_until(
      [&] { return sql("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver") == seg; }, 120s, 100ms))
      << pg_log();
  const std::string log = pg_log();
  EXPECT_NE(log.find("tandem_archive: the WAL archiver did not archive \"" + seg + "\""), std::string::npos) << log;
  EXPECT_NE(log.find("different content"), std::string::npos) << log;
  EXPECT_EQ(log.find("fallback command"), std::string::npos) << log;  // the archiver answered
  EXPECT_TRUE(fs::exists(member_->settings().data_dir + "/pg_wal/archive_status/" + seg + ".ready"));
  EXPECT_FALSE(archived_by_pg(seg));
  EXPECT_NE(read_file(dir_.sub("archiver.log")).find(seg), std::string::npos);
  // Still refused on PostgreSQL's retries, never acknowledged.
  ASSERT_TRUE(testkit::wait_until(
      [&] { return std::stoi("0" + sql("SELECT failed_count FROM pg_stat_archiver")) >= 2; }, 120s, 200ms));
  EXPECT_TRUE(fs::exists(member_->settings().data_dir + "/pg_wal/archive_status/" + seg + ".ready"));
}

}  // namespace
}  // namespace tandem
