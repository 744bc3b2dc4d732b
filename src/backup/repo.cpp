#include "backup/repo.hpp"

#include <fmt/format.h>

namespace tandem::backup {

namespace {

bool is_upper_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

uint32_t hex32(std::string_view s) {
  return static_cast<uint32_t>(std::stoul(std::string(s), nullptr, 16));
}

uint64_t segments_per_log(uint64_t segment_size) {
  return (uint64_t{1} << 32) / segment_size;
}

}  // namespace

RepoConfig repo_config_from(const config::BackupConfig& backup) {
  RepoConfig rc;
  rc.store_url = backup.store;
  rc.key_file = backup.key_file;
  rc.retired_key_files = backup.retired_key_files;
  rc.credentials_file = backup.credentials_file;
  return rc;
}

Repo::Repo(RepoConfig config, std::unique_ptr<storage::ObjectStore> store, storage::Keyring keyring)
    : config_(std::move(config)), store_(std::move(store)), keyring_(std::move(keyring)) {}

Result<std::unique_ptr<storage::ObjectStore>> Repo::open_store() const {
  return storage::make_object_store(config_.store_url, config_.store_options);
}

Status Repo::put_sealed(const std::string& key, std::string_view plaintext, const storage::SealOptions& options) {
  auto sealed = storage::seal(keyring_.active(), plaintext, key, options);
  if (!sealed) return sealed.error();
  return store_->put(key, *sealed);
}

Result<std::string> Repo::get_unsealed(const std::string& key) {
  auto sealed = store_->get(key);
  if (!sealed) return sealed.error();
  auto plain = storage::unseal(keyring_, *sealed, key);
  if (!plain) {
    // A stored object that does not open is never "missing": keep it distinguishable.
    Errc code = plain.error().code == Errc::not_found ? Errc::permission_denied : plain.error().code;
    return make_error(code, "{} (in {})", plain.error().message, store_->url());
  }
  return plain;
}

Result<std::unique_ptr<Repo>> open_repo(const RepoConfig& config) {
  if (config.store_url.empty()) return make_error(Errc::invalid_argument, "no backup store configured");
  if (config.key_file.empty())
    return make_error(Errc::invalid_argument, "no backup key file configured for store {}", config.store_url);
  RepoConfig rc = config;
  if (!rc.credentials_file.empty() && rc.store_options.credentials_file.empty())
    rc.store_options.credentials_file = rc.credentials_file;
  auto active = rc.create_key ? storage::load_or_create_key_file(rc.key_file) : storage::read_key_file(rc.key_file);
  if (!active) return make_error(active.error().code, "backup key: {}", active.error().message);
  storage::Keyring keyring(std::move(*active));
  for (const auto& f : rc.retired_key_files) {
    auto k = storage::read_key_file(f);
    if (!k) return make_error(k.error().code, "retired backup key: {}", k.error().message);
    keyring.add_retired(std::move(*k));
  }
  auto store = storage::make_object_store(rc.store_url, rc.store_options);
  if (!store) return store.error();
  return std::make_unique<Repo>(std::move(rc), std::move(*store), std::move(keyring));
}

std::string wal_key(std::string_view file_name) {
  return fmt::format("{}{}", kWalPrefix, file_name);
}
std::string backup_prefix(std::string_view id) {
  return fmt::format("{}{}/", kBackupsPrefix, id);
}
std::string backup_object_key(std::string_view id, std::string_view name) {
  return fmt::format("{}{}/{}", kBackupsPrefix, id, name);
}
std::string backup_manifest_key(std::string_view id) {
  return backup_object_key(id, "tandem.json");
}

std::string SegmentName::to_string() const {
  return fmt::format("{:08X}{:08X}{:08X}", timeline, log, seg);
}

std::optional<SegmentName> parse_segment_name(std::string_view name) {
  if (name.size() != 24 || !is_upper_hex(name)) return std::nullopt;
  SegmentName s{hex32(name.substr(0, 8)), hex32(name.substr(8, 8)), hex32(name.substr(16, 8))};
  if (s.timeline == 0) return std::nullopt;
  return s;
}

uint64_t segment_number(const SegmentName& s, uint64_t segment_size) {
  return uint64_t{s.log} * segments_per_log(segment_size) + s.seg;
}

SegmentName segment_from_number(uint32_t timeline, uint64_t number, uint64_t segment_size) {
  uint64_t per = segments_per_log(segment_size);
  return SegmentName{timeline, static_cast<uint32_t>(number / per), static_cast<uint32_t>(number % per)};
}

SegmentName segment_for_lsn(uint32_t timeline, uint64_t lsn, uint64_t segment_size) {
  return segment_from_number(timeline, lsn / segment_size, segment_size);
}

SegmentName next_segment(const SegmentName& s, uint64_t segment_size) {
  return segment_from_number(s.timeline, segment_number(s, segment_size) + 1, segment_size);
}

std::optional<uint32_t> parse_history_name(std::string_view name) {
  if (name.size() != 16 || !name.ends_with(".history") || !is_upper_hex(name.substr(0, 8))) return std::nullopt;
  uint32_t tli = hex32(name.substr(0, 8));
  if (tli == 0) return std::nullopt;
  return tli;
}

std::string history_name(uint32_t timeline) {
  return fmt::format("{:08X}.history", timeline);
}

std::optional<WalFileKind> classify_wal_file(std::string_view name) {
  if (parse_segment_name(name)) return WalFileKind::segment;
  if (parse_history_name(name)) return WalFileKind::history;
  if (name.size() > 24 && parse_segment_name(name.substr(0, 24))) {
    auto rest = name.substr(24);
    if (rest == ".partial") return WalFileKind::partial;
    // "<segment>.<8-hex offset>.backup"
    if (rest.size() == 16 && rest.front() == '.' && is_upper_hex(rest.substr(1, 8)) && rest.substr(9) == ".backup")
      return WalFileKind::backup_label;
  }
  return std::nullopt;
}

}  // namespace tandem::backup
