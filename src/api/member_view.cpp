#include "api/member_view.hpp"

#include <algorithm>
#include <cctype>

namespace tandem::api {

bool no_load_balance(const dcs::Tags& tags) {
  auto it = tags.other.find("noloadbalance");
  if (it == tags.other.end()) return false;
  std::string v = it->second;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return v == "true" || v == "on" || v == "yes" || v == "1";
}

}  // namespace tandem::api
