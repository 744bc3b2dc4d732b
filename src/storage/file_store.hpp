#pragma once
// FileObjectStore: objects as files under a root directory ("file:///dir"). A put writes
// a hidden temporary file beside the target, fsyncs it, renames it over the target and
// fsyncs the directory, so an object is either absent or complete, also after a crash.
// Stateless apart from the root path; safe to use from several threads.
#include <string>

#include "storage/object_store.hpp"

namespace tandem::storage {

class FileObjectStore : public ObjectStore {
 public:
  // Creates `root` (and parents) when missing.
  static Result<std::unique_ptr<FileObjectStore>> open(const std::string& root);

  std::string url() const override { return "file://" + root_; }
  Status put(const std::string& key, std::string_view data) override;
  Status put_stream(const std::string& key, const ByteSource& source) override;
  Result<std::string> get(const std::string& key) override;
  Status get_stream(const std::string& key, const ByteSink& sink) override;
  Result<std::optional<ObjectInfo>> head(const std::string& key) override;
  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override;
  Status del(const std::string& key) override;

 private:
  explicit FileObjectStore(std::string root) : root_(std::move(root)) {}
  std::string path_of(const std::string& key) const { return root_ + "/" + key; }

  std::string root_;
};

}  // namespace tandem::storage
