// `tandem ctl`: operate a cluster, like patronictl. Reads state from etcd; asks agents
// (their REST API) to act.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/http_client.hpp"
#include "cli/commands.hpp"
#include "config/agent_config.hpp"
#include "dcs/store.hpp"

namespace tandem::cli {

namespace {

using nlohmann::json;

struct Target {
  std::string dir;
  std::string config;
  std::vector<std::string> etcd;
  std::string cluster;
  bool json = false;
};

// Finds etcd and the cluster name from --etcd/--cluster, --config or --dir (deployment.json).
Result<std::pair<std::vector<std::string>, std::string>> locate(const Target& t) {
  if (!t.etcd.empty()) {
    if (t.cluster.empty()) return make_error(Errc::invalid_argument, "--etcd needs --cluster");
    return std::make_pair(t.etcd, t.cluster);
  }
  if (!t.config.empty()) {
    auto cfg = config::load_agent_config(t.config);
    if (!cfg) return cfg.error();
    return std::make_pair(cfg->etcd_endpoints, cfg->cluster);
  }
  std::string path = (t.dir.empty() ? std::string("./tandem-data") : t.dir) + "/deployment.json";
  std::ifstream in(path);
  if (!in) {
    return make_error(
        Errc::not_found,
        "no deployment found: {} does not exist (use --dir DIR, --config FILE or --etcd URLS --cluster NAME)", path);
  }
  try {
    json j = json::parse(in);
    return std::make_pair(j.at("etcd").get<std::vector<std::string>>(), j.at("cluster").get<std::string>());
  } catch (const json::exception& e) {
    return make_error(Errc::invalid_argument, "{} is not a valid deployment file: {}", path, e.what());
  }
}

struct Ctx {
  std::unique_ptr<dcs::ClusterStore> store;
  std::string cluster;
};

Result<Ctx> connect(const Target& t) {
  auto where = locate(t);
  if (!where) return where.error();
  Ctx c;
  c.cluster = where->second;
  c.store = dcs::make_etcd_store({where->first, where->second});
  return c;
}

int fail(const Error& e) {
  std::cerr << "tandem ctl: " << e.message << "\n";
  switch (e.code) {
    case Errc::invalid_argument: return 2;
    case Errc::not_found: return 3;
    case Errc::conflict: return 4;
    default: return 1;
  }
}

std::string lag_mb(const dcs::ClusterSnapshot& s, const dcs::Member& m) {
  const dcs::Member* l = s.leader_member();
  if (l == nullptr || l->name == m.name || m.role != "replica") return "";
  uint64_t lag = l->wal_position > m.wal_position ? l->wal_position.value() - m.wal_position.value() : 0;
  return fmt::format("{}", lag / (1024 * 1024));
}

int cmd_list(const Target& t) {
  auto ctx = connect(t);
  if (!ctx) return fail(ctx.error());
  auto s = ctx->store->load();
  if (!s) return fail(s.error());
  if (t.json) {
    json out = to_json(*s);
    for (auto& m : out["members"]) {
      auto* mem = s->member(m["name"].get<std::string>());
      m["lag_mb"] = lag_mb(*s, *mem);
      m["is_leader"] = s->leader && s->leader->name == mem->name;
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::string sync_standby = s->sync && s->sync->sync_standby ? *s->sync->sync_standby : "";
  std::cout << fmt::format("+ Cluster: {} ({}){}\n", ctx->cluster, s->initialize.value_or("not initialized"),
                           s->config && s->config->paused ? " -- PAUSED" : "");
  std::cout << fmt::format("| {:<10} | {:<21} | {:<12} | {:<10} | {:>2} | {:>9} |\n", "Member", "Host", "Role", "State",
                           "TL", "Lag in MB");
  std::cout << "+------------+-----------------------+--------------+------------+----+-----------+\n";
  for (const auto& [name, m] : s->members) {
    std::string role = s->leader && s->leader->name == name ? "Leader"
                       : name == sync_standby               ? "Sync Standby"
                       : m.role == "replica"                ? "Replica"
                                                            : m.role;
    std::cout << fmt::format("| {:<10} | {:<21} | {:<12} | {:<10} | {:>2} | {:>9} |\n", name,
                             fmt::format("{}:{}", m.host, m.pg_port), role, m.state, m.timeline, lag_mb(*s, m));
  }
  if (s->switchover) {
    std::cout << fmt::format("Pending switchover: {} -> {}\n", s->switchover->leader,
                             s->switchover->candidate.empty() ? "(best)" : s->switchover->candidate);
  }
  return 0;
}

int cmd_history(const Target& t) {
  auto ctx = connect(t);
  if (!ctx) return fail(ctx.error());
  auto s = ctx->store->load();
  if (!s) return fail(s.error());
  if (t.json) {
    json arr = json::array();
    for (const auto& h : s->history) arr.push_back(to_json(h));
    std::cout << arr.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<25} {:>3} {:<18} {:<10} {:<10} {}\n", "Time", "TL", "LSN", "From", "To", "Reason");
  for (const auto& h : s->history) {
    std::time_t secs = h.time_ms / 1000;
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
    std::cout << fmt::format("{:<25} {:>3} {:<18} {:<10} {:<10} {}\n", buf, h.timeline, h.lsn.to_string(),
                             h.from.empty() ? "-" : h.from, h.to, h.reason);
  }
  return 0;
}

int cmd_show_config(const Target& t) {
  auto ctx = connect(t);
  if (!ctx) return fail(ctx.error());
  auto s = ctx->store->load();
  if (!s) return fail(s.error());
  if (!s->config) return fail(make_error(Errc::not_found, "cluster {} has no configuration yet", ctx->cluster));
  std::cout << to_json(*s->config).dump(2) << "\n";
  return 0;
}

// --set key=value: numbers and booleans are typed; parameters.NAME=VALUE sets a PostgreSQL parameter.
int cmd_edit_config(const Target& t, const std::vector<std::string>& sets) {
  if (sets.empty()) return fail(make_error(Errc::invalid_argument, "nothing to change: give --set key=value"));
  auto ctx = connect(t);
  if (!ctx) return fail(ctx.error());
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto s = ctx->store->load();
    if (!s) return fail(s.error());
    if (!s->config) return fail(make_error(Errc::not_found, "cluster {} has no configuration yet", ctx->cluster));
    json j = to_json(*s->config);
    for (const auto& kv : sets) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        return fail(make_error(Errc::invalid_argument, "--set {}: expected key=value", kv));
      std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      if (key.rfind("parameters.", 0) == 0) {
        std::string p = key.substr(11);
        if (value.empty()) {
          j["parameters"].erase(p);
        } else {
          j["parameters"][p] = value;
        }
        continue;
      }
      if (!j.contains(key))
        return fail(make_error(Errc::invalid_argument, "{}: unknown setting (known: {})", key,
                               "ttl, loop_wait, retry_timeout, maximum_lag_on_failover, synchronous_mode, paused, "
                               "primary_start_timeout, parameters.NAME"));
      json parsed = json::parse(value, nullptr, false);
      j[key] = parsed.is_discarded() ? json(value) : parsed;
    }
    auto c = dcs::config_from_json(j);
    if (!c) return fail(c.error());
    auto ok = ctx->store->write_config(*c, s->config->mod_revision);
    if (!ok) return fail(ok.error());
    if (*ok) {
      std::cout << to_json(*c).dump(2) << "\n";
      return 0;
    }
  }
  return fail(make_error(Errc::conflict, "the configuration changed concurrently; try again"));
}

Result<std::string> member_api(const dcs::ClusterSnapshot& s, const std::string& name) {
  const dcs::Member* m = s.member(name);
  if (m == nullptr) return make_error(Errc::not_found, "{} is not a member of this cluster", name);
  return m->api_url;
}

int post(const std::string& url, const json& body) {
  auto r = api::http_post(url, body.dump(), std::chrono::seconds(30));
  if (!r) return fail(r.error());
  json j = json::parse(r->body, nullptr, false);
  std::string msg = j.is_object() && j.contains("message") ? j["message"].get<std::string>()
                    : j.is_object() && j.contains("error") ? j["error"].get<std::string>()
                                                           : r->body;
  if (r->status >= 300) {
    std::cerr << "tandem ctl: " << msg << " (HTTP " << r->status << ")\n";
    return r->status == 400 ? 2 : r->status == 404 ? 3 : r->status == 409 || r->status == 412 ? 4 : 1;
  }
  std::cout << msg << "\n";
  return 0;
}

// Waits until `who` (or anyone other than `old_leader`) leads with PostgreSQL running as primary.
int wait_new_leader(dcs::ClusterStore& store, const std::string& old_leader, const std::string& who, int timeout_s) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    auto s = store.load();
    if (s && s->leader && s->leader->name != old_leader && (who.empty() || s->leader->name == who)) {
      const dcs::Member* m = s->leader_member();
      if (m != nullptr && m->role == "leader" && m->state == "running") {
        std::cout << fmt::format("{} is the new leader\n", s->leader->name);
        return 0;
      }
    }
    if (s && !s->switchover && s->leader && s->leader->name == old_leader) {
      std::cerr << "tandem ctl: the switchover was abandoned; " << old_leader << " is still the leader (see its log)\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cerr << "tandem ctl: no new leader within " << timeout_s << " s\n";
  return 1;
}

}  // namespace

void add_ctl(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners) {
  auto t = std::make_shared<Target>();
  auto* ctl = app.add_subcommand("ctl", "Operate a cluster: list, switchover, failover, pause, configuration");
  ctl->require_subcommand(1);
  auto common = [t](CLI::App* c, bool json_flag) {
    c->add_option("--dir", t->dir, "Deployment directory made by tandem up (default ./tandem-data)");
    c->add_option("--config,-c", t->config, "An agent configuration file");
    c->add_option("--etcd", t->etcd, "etcd endpoints")->delimiter(',');
    c->add_option("--cluster", t->cluster, "Cluster name (with --etcd)");
    if (json_flag) c->add_flag("--json", t->json, "JSON output");
  };
  auto add = [&](const char* name, const char* help, bool json_flag) {
    auto* c = ctl->add_subcommand(name, help);
    common(c, json_flag);
    runners.emplace_back(c, nullptr);
    return std::make_pair(c, &runners.back().second);
  };

  {
    auto [c, r] = add("list", "Members with role, state, timeline and lag", true);
    *r = [t] { return cmd_list(*t); };
    (void)c;
  }
  {
    auto [c, r] = add("history", "Every leader change", true);
    *r = [t] { return cmd_history(*t); };
    (void)c;
  }
  {
    auto [c, r] = add("show-config", "The dynamic configuration stored in etcd", true);
    *r = [t] { return cmd_show_config(*t); };
    (void)c;
  }
  {
    auto sets = std::make_shared<std::vector<std::string>>();
    auto [c, r] = add("edit-config", "Change dynamic settings (validated)", false);
    c->add_option("--set,-s", *sets, "key=value (e.g. ttl=6, synchronous_mode=strict, parameters.work_mem=8MB)")
        ->required();
    *r = [t, sets] { return cmd_edit_config(*t, *sets); };
  }
  {
    auto candidate = std::make_shared<std::string>();
    auto scheduled = std::make_shared<std::string>();
    auto wait = std::make_shared<int>(60);
    auto [c, r] = add("switchover", "Planned switchover to a candidate (default: the healthiest replica)", false);
    c->add_option("--candidate", *candidate, "Member to hand the leadership to");
    c->add_option("--scheduled", *scheduled, "ISO-8601 time or unix ms to do it at (default now)");
    c->add_option("--wait", *wait, "Seconds to wait for the new leader (0: do not wait)");
    *r = [t, candidate, scheduled, wait] {
      auto ctx = connect(*t);
      if (!ctx) return fail(ctx.error());
      auto s = ctx->store->load();
      if (!s) return fail(s.error());
      if (!s->leader)
        return fail(make_error(Errc::conflict, "there is no leader; use `tandem ctl failover --candidate NAME`"));
      auto url = member_api(*s, s->leader->name);
      if (!url) return fail(url.error());
      json body{{"leader", s->leader->name}};
      if (!candidate->empty()) body["candidate"] = *candidate;
      if (!scheduled->empty()) body["scheduled_at"] = *scheduled;
      int rc = post(*url + "/switchover", body);
      if (rc != 0 || *wait == 0 || !scheduled->empty()) return rc;
      return wait_new_leader(*ctx->store, s->leader->name, *candidate, *wait);
    };
  }
  {
    auto candidate = std::make_shared<std::string>();
    auto [c, r] = add("failover", "Manual failover to a candidate, also when there is no healthy leader", false);
    c->add_option("--candidate", *candidate, "Member to promote")->required();
    *r = [t, candidate] {
      auto ctx = connect(*t);
      if (!ctx) return fail(ctx.error());
      auto s = ctx->store->load();
      if (!s) return fail(s.error());
      auto url = member_api(*s, *candidate);
      if (!url) return fail(url.error());
      std::string old = s->leader ? s->leader->name : "";
      int rc = post(*url + "/failover", json{{"candidate", *candidate}});
      if (rc != 0) return rc;
      return wait_new_leader(*ctx->store, old, *candidate, 60);
    };
  }
  for (const char* verb : {"restart", "reinit"}) {
    auto member = std::make_shared<std::string>();
    auto [c, r] = add(verb,
                      std::string(verb) == "restart" ? "Restart a member's PostgreSQL"
                                                     : "Wipe a replica and clone it again from the leader",
                      false);
    c->add_option("member", *member, "Member name")->required();
    std::string path = std::string(verb) == "restart" ? "/restart" : "/reinitialize";
    auto from_backup = std::make_shared<bool>(false);
    if (path == "/reinitialize") {
      c->add_flag("--from-backup", *from_backup,
                  "Rebuild from the latest backup plus archived WAL instead of copying from the leader");
    }
    *r = [t, member, path, from_backup] {
      auto ctx = connect(*t);
      if (!ctx) return fail(ctx.error());
      auto s = ctx->store->load();
      if (!s) return fail(s.error());
      auto url = member_api(*s, *member);
      if (!url) return fail(url.error());
      return post(*url + path, *from_backup ? json{{"from_backup", true}} : json::object());
    };
  }
  for (const char* verb : {"pause", "resume"}) {
    auto [c, r] = add(
        verb, std::string(verb) == "pause" ? "Maintenance mode: agents take no HA action" : "Leave maintenance mode",
        false);
    std::string path = std::string("/") + verb;
    *r = [t, path] {
      auto ctx = connect(*t);
      if (!ctx) return fail(ctx.error());
      auto s = ctx->store->load();
      if (!s) return fail(s.error());
      for (const auto& [name, m] : s->members) {
        auto rc = post(m.api_url + path, json::object());
        if (rc == 0) return 0;
      }
      return fail(make_error(Errc::unavailable, "no agent answered"));
    };
    (void)c;
  }
}

}  // namespace tandem::cli
