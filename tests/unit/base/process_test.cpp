// spawn()/run(): the child runs the new program when spawn returns, exec failures are
// errors, stdin and output reach the child.
#include "base/process.hpp"

#include <signal.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace tandem {
namespace {

std::string cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Spawn, ReturnsOnceTheChildRunsTheNewProgram) {
  for (int i = 0; i < 20; ++i) {
    auto pid = spawn({.argv = {"/bin/sleep", "30"}});
    ASSERT_TRUE(pid) << pid.error().message;
    // No window in which /proc still shows the parent's command line.
    EXPECT_EQ(cmdline(*pid).rfind("/bin/sleep", 0), 0u) << cmdline(*pid);
    kill(*pid, SIGKILL);
    EXPECT_TRUE(wait_for(*pid, std::chrono::seconds(5)));
  }
}

TEST(Spawn, AProgramThatCannotRunIsAnErrorNamingIt) {
  auto pid = spawn({.argv = {"/nonexistent/tandem-test-binary"}});
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code, Errc::io);
  EXPECT_NE(pid.error().message.find("/nonexistent/tandem-test-binary"), std::string::npos) << pid.error().message;
  EXPECT_NE(pid.error().message.find("No such file"), std::string::npos) << pid.error().message;
}

TEST(Run, StdinReachesTheChildAndItsOutputComesBack) {
  auto r = run({.argv = {"/bin/cat"}, .stdin_data = "hello\n"}, std::chrono::seconds(10));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->status.ok());
  EXPECT_EQ(r->output, "hello\n");
}

TEST(ShellQuote, SurvivesAShellRoundTrip) {
  const std::string word = "it's a $HOME `x` \"y\"";
  auto r = run({.argv = {"/bin/sh", "-c", "printf %s " + shell_quote(word)}}, std::chrono::seconds(10));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->output, word);
}

TEST(SelfBinary, IsThisExecutable) {
  EXPECT_TRUE(self_binary().ends_with("/unit_base")) << self_binary();
}

}  // namespace
}  // namespace tandem
