// Start-up errors of `tandem agent`: a bad config names the key; a second agent with a
// member name already in use refuses to start.
#include <fstream>

#include <gtest/gtest.h>

#include "testkit/deployment.hpp"

namespace tandem::testkit {
namespace {

using namespace std::chrono_literals;

Result<RunResult> run_tandem(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
  SpawnOptions o;
  o.argv = {tandem_binary()};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.cwd = "/tmp";
  return run(o, timeout);
}

TEST(HaConfig, BadConfigNamesTheKey) {
  TempDir dir("tandem-cfg");
  std::string path = dir.sub("bad.yaml");
  std::ofstream(path) << "cluster: c\nname: m\netcd: {endpoints: [http://127.0.0.1:1]}\ndata_dir: /tmp/x\n"
                         "api: {listen: 127.0.0.1:8008}\npostgresql: {listen: 127.0.0.1:notaport}\n";
  auto r = run_tandem({"agent", "--config", path});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status.code, 2);
  EXPECT_NE(r->output.find("postgresql.listen: port in '127.0.0.1:notaport' is not a number"), std::string::npos)
      << r->output;
  auto missing = run_tandem({"agent", "--config", dir.sub("missing.yaml")});
  ASSERT_TRUE(missing.ok());
  EXPECT_NE(missing->output.find("cannot read config file"), std::string::npos) << missing->output;
}

TEST(HaConfig, DuplicateMemberNameRefusesToStart) {
  Deployment d;
  ASSERT_FALSE(d.wait_leader(30s).empty());
  // A copy of pg1's config with other ports and directories, same member name.
  std::ifstream in(d.dir() + "/config/pg1.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto replace = [&](const std::string& from, const std::string& to) {
    for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
      text.replace(pos, from.size(), to);
  };
  int api = free_port(), pg = free_port();
  replace(std::to_string(d.api_port("pg1")), std::to_string(api));
  replace(std::to_string(d.pg_port("pg1")), std::to_string(pg));
  replace("/members/pg1/", "/members/pg1-dup/");
  replace("/logs/pg1", "/logs/pg1-dup");
  std::string path = d.dir() + "/config/dup.yaml";
  std::ofstream(path) << text;
  auto r = run_tandem({"agent", "--config", path}, 90s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status.code, 1);
  std::ifstream log(d.dir() + "/logs/pg1-dup.log");
  std::string logged((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(logged.find("member name 'pg1' is already used in cluster 'tandem' by a running agent"), std::string::npos)
      << logged;
  // The original member is untouched.
  EXPECT_TRUE(d.accepts_write(d.wait_leader(5s)) || d.wait_streaming("pg1", 5s));
}

}  // namespace
}  // namespace tandem::testkit
