#include "pg/settings.hpp"

namespace tandem::pg {

std::string Settings::socket_path() const {
  return run_dir + "/.s.PGSQL." + std::to_string(port);
}

Settings settings_from_config(const config::AgentConfig& cfg) {
  Settings s;
  s.name = cfg.name;
  s.bin_dir = cfg.bin_dir;
  s.data_dir = cfg.data_dir;
  // Same defaults as the config parser, for configs built in code.
  s.run_dir = cfg.run_dir.empty() ? cfg.data_dir + ".run" : cfg.run_dir;
  s.log_file = cfg.pg_log_file.empty() ? cfg.data_dir + ".postgresql.log" : cfg.pg_log_file;
  s.listen_host = cfg.pg_listen.host;
  s.port = cfg.pg_listen.port;
  s.run_as = cfg.run_as;
  s.superuser = cfg.superuser.username;
  return s;
}

}  // namespace tandem::pg
