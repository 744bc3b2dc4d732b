#pragma once
// Logging: spdlog with one line per event, prefixed with the component name.
// Never pass a Secret or a password to these functions.
#include <string>

#include <spdlog/spdlog.h>

namespace tandem::log {

// Sets up the default logger: stderr, or a file when `path` is not empty.
void init(const std::string& component, const std::string& path = {}, bool debug = false);

}  // namespace tandem::log
