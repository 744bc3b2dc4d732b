#pragma once
// BlockPipe: a bounded byte queue between two threads of one backup or restore (the
// sealer and the uploader, or the downloader and the extractor). Either side may abort;
// the other then sees an error instead of blocking forever. Shared by the two threads.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace tandem::backup {

class BlockPipe {
 public:
  explicit BlockPipe(size_t capacity) : capacity_(capacity) {}

  // Blocks while full. False once the reader aborted.
  bool push(std::string_view bytes) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return aborted_ || queued_ < capacity_; });
    if (aborted_) return false;
    queued_ += bytes.size();
    q_.emplace_back(bytes);
    cv_.notify_all();
    return true;
  }
  void close() {
    std::lock_guard lock(m_);
    closed_ = true;
    cv_.notify_all();
  }
  void abort() {
    std::lock_guard lock(m_);
    aborted_ = true;
    cv_.notify_all();
  }
  // Takes the next whole block: true with a block, false at the end of a closed pipe, an
  // error once aborted. Do not mix with read().
  Result<bool> pop(std::string& out) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return aborted_ || closed_ || !q_.empty(); });
    if (aborted_) return make_error(Errc::io, "stream aborted");
    if (q_.empty()) return false;
    out = std::move(q_.front());
    q_.pop_front();
    queued_ -= out.size();
    cv_.notify_all();
    return true;
  }

  // Copies up to `cap` bytes; 0 at the end of a closed pipe; an error once aborted.
  Result<size_t> read(char* buf, size_t cap) {
    size_t n = 0;
    std::unique_lock lock(m_);
    while (n < cap) {
      cv_.wait(lock, [&] { return aborted_ || closed_ || !q_.empty(); });
      if (aborted_) return make_error(Errc::io, "backup stream aborted");
      if (q_.empty()) break;  // closed and drained
      std::string& front = q_.front();
      size_t take = std::min(cap - n, front.size() - front_pos_);
      std::memcpy(buf + n, front.data() + front_pos_, take);
      n += take;
      front_pos_ += take;
      if (front_pos_ == front.size()) {
        queued_ -= front.size();
        q_.pop_front();
        front_pos_ = 0;
        cv_.notify_all();
      }
      if (n > 0 && q_.empty()) break;  // hand over what we have instead of waiting
    }
    return n;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  size_t front_pos_ = 0;
  size_t queued_ = 0;
  size_t capacity_;
  bool closed_ = false;
  bool aborted_ = false;
};

}  // namespace tandem::backup
