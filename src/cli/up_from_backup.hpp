#pragma once
// `tandem up --from-backup SOURCE`: the options, and the checks made before a new
// deployment is created from another deployment's backup. SOURCE is a repository URL
// (file:///..., s3://...; then --key names its key) or a `tandem up` directory (its
// repository and key). Nothing is created unless the source opens with the key and holds
// a complete backup that reaches the target; the source is only ever read.
#include <string>

#include <CLI/CLI.hpp>

#include "base/result.hpp"
#include "deploy/layout.hpp"

namespace tandem::cli {

// Filled by CLI11; owned by `tandem up`'s closure.
struct FromBackupOptions {
  std::string source;  // --from-backup
  std::string key_file;
  std::string credentials_file;
  std::string backup_id;
  std::string to;
  std::string to_time;
  std::string to_lsn;
  bool given() const { return !source.empty(); }
};

// Adds --from-backup, --key, --from-credentials-file, --backup-id, --to, --to-time, --to-lsn.
void add_from_backup_options(CLI::App* cmd, FromBackupOptions& o);

// A checked source, ready to be written into a new layout.
struct CheckedSource {
  deploy::BackupSource source;  // retired_key_files still name the originals
  std::string key_file;         // the original key file
  std::string target;           // "latest", "time ...", "lsn ..."
  std::string plan;             // the backup and WAL the restore will use
};

// Resolves the source and checks it against the new deployment at `new_dir` (absolute)
// whose own repository is `new_store_url`: a different repository, a key that opens it, a
// complete backup, WAL that reaches the target (plan_restore). Errors say what to do.
Result<CheckedSource> check_backup_source(const FromBackupOptions& o, const std::string& new_dir,
                                          const std::string& new_store_url);

// Copies the source's keys into the new deployment's secrets (0600) and records the
// source in `layout` (call before deploy::save_layout and deploy::prepare).
Status install_backup_source(deploy::Layout& layout, const CheckedSource& source);

}  // namespace tandem::cli
