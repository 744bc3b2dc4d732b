#include "testkit/s3_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/process.hpp"

namespace tandem::testkit {

namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, size_t n = 2000) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

// True when something accepts TCP connections on 127.0.0.1:port.
bool port_answers(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::string S3Server::script_path() {
  if (const char* p = std::getenv("TANDEM_S3RVER_SCRIPT"); p != nullptr && *p != '\0') return p;
  // This file is tests/integration/testkit/s3_server.cpp; the script is scripts/s3rver.js.
  return (fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / "scripts" / "s3rver.js")
      .string();
}

std::string S3Server::node_path() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::stringstream ss(dirs);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    fs::path candidate = fs::path(dir) / "node";
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

S3Server::S3Server(std::vector<std::string> buckets, bool https) : https_(https) {
  const std::string node = node_path();
  if (node.empty()) throw std::runtime_error("S3Server: `node` is not on PATH (install nodejs)");
  const std::string script = script_path();
  if (!fs::exists(script)) throw std::runtime_error("S3Server: missing " + script);
  const fs::path modules = fs::path(script).parent_path().parent_path() / "node_modules" / "@20minutes" / "s3rver";
  if (!fs::exists(modules)) {
    throw std::runtime_error("S3Server: " + modules.string() + " is missing; run `npm install` in the repository root");
  }
  fs::create_directories(data_dir());
  port_ = free_port();
  SpawnOptions o;
  // s3rver makes ListObjectsV2 continuation tokens with DES, which Node 17+ (OpenSSL 3)
  // only offers through the legacy provider; without it every truncated listing is a 500.
  o.argv = {node, "--openssl-legacy-provider", script, "--dir", data_dir(), "--port", std::to_string(port_)};
  for (const auto& b : buckets) {
    o.argv.push_back("--bucket");
    o.argv.push_back(b);
  }
  if (https_) {
    // A CA and a server certificate for 127.0.0.1, with the openssl command line tool.
    const std::string d = dir_.path();
    const std::vector<std::vector<std::string>> steps = {
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days",
         "2", "-subj", "/CN=tandem test S3 CA", "-keyout", d + "/ca.key", "-out", d + "/ca.crt"},
        {"/usr/bin/openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
         "/CN=127.0.0.1", "-keyout", d + "/server.key", "-out", d + "/server.csr"},
        {"/usr/bin/openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", d + "/san.ext", "-out", d + "/server.crt"},
    };
    std::ofstream(d + "/san.ext") << "subjectAltName = IP:127.0.0.1\n";
    for (const auto& argv : steps) {
      auto r = run({.argv = argv}, std::chrono::seconds(30));
      if (!r || !r->status.ok()) {
        throw std::runtime_error("S3Server: " + argv[0] + " " + argv[1] +
                                 " failed: " + (r ? r->output : r.error().to_string()));
      }
    }
    o.argv.insert(o.argv.end(), {"--key", d + "/server.key", "--cert", d + "/server.crt"});
  }
  o.output_file = log_path();
  o.parent_death_signal = SIGTERM;
  o.cwd = dir_.path();
  auto pid = spawn(o);
  if (!pid) throw std::runtime_error("S3Server: cannot start node: " + pid.error().to_string());
  pid_ = *pid;
  bool up = wait_until(
      [&] {
        if (try_reap(pid_)) {
          pid_ = -1;
          return true;  // died; reported below
        }
        return read_file(log_path()).find("ready ") != std::string::npos && port_answers(port_);
      },
      std::chrono::seconds(30), std::chrono::milliseconds(50));
  if (!up || pid_ < 0) {
    std::string log = tail(read_file(log_path()));
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)wait_for(pid_, std::chrono::seconds(5));
      pid_ = -1;
    }
    throw std::runtime_error("S3Server: s3rver did not start on port " + std::to_string(port_) + ":\n" + log);
  }
}

S3Server::~S3Server() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!wait_for(pid_, std::chrono::seconds(5))) {
    ::kill(pid_, SIGKILL);
    (void)wait_for(pid_, std::chrono::seconds(5));
  }
}

}  // namespace tandem::testkit
