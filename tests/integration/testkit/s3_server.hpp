#pragma once
// S3Server: a local S3 imitation for integration tests — @20minutes/s3rver (npm, installed
// by `npm install` at the repository root) started through scripts/s3rver.js on a free
// loopback port. It verifies SigV4 signatures; credentials are S3RVER / S3RVER. Path-style
// only. Data lives in a TempDir removed on destruction.
//
//   testkit::S3Server s3({"tandem"});
//   make_object_store("s3://tandem/x?endpoint=" + s3.endpoint(), opts);
//
// Owned by one test or fixture, on the test's main thread: the server gets SIGTERM when
// that thread exits (parent-death signal). The destructor stops it by PID and reaps it.
// Start-up errors throw std::runtime_error with the server log's tail.
#include <sys/types.h>

#include <string>
#include <vector>

#include "testkit/testkit.hpp"

namespace tandem::testkit {

class S3Server {
 public:
  static constexpr const char* kAccessKey = "S3RVER";
  static constexpr const char* kSecretKey = "S3RVER";

  // Starts the server with these buckets and waits until it answers HTTP. With `https`,
  // it serves HTTPS with a certificate for 127.0.0.1 signed by a CA made for it (ca_file()).
  explicit S3Server(std::vector<std::string> buckets = {"tandem"}, bool https = false);
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  int port() const { return port_; }
  std::string endpoint() const { return (https_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_); }
  // https: the CA certificate that verifies the server (PEM).
  std::string ca_file() const { return dir_.sub("ca.crt"); }
  std::string data_dir() const { return dir_.sub("data"); }
  std::string log_path() const { return dir_.sub("s3rver.log"); }
  pid_t pid() const { return pid_; }

  // Path of scripts/s3rver.js in this source tree (or $TANDEM_S3RVER_SCRIPT).
  static std::string script_path();
  // Absolute path of `node` from $PATH, or empty.
  static std::string node_path();

 private:
  TempDir dir_{"tandem-s3"};
  int port_ = 0;
  pid_t pid_ = -1;
  bool https_ = false;
};

}  // namespace tandem::testkit
