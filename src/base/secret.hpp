#pragma once
// Secret: a password or key that must never reach a log. It has no formatter and
// no stream operator; reveal() is the one explicit way to read it.
#include <string>

namespace tandem {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string v) : v_(std::move(v)) {}
  const std::string& reveal() const { return v_; }
  bool empty() const { return v_.empty(); }

 private:
  std::string v_;
};

}  // namespace tandem
