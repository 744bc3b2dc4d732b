// The WAL archive series in /metrics: present only when archiving is configured, values
// taken from the member view, ages relative to the render time.
#include <gtest/gtest.h>

#include "api/metrics.hpp"
#include "views.hpp"

namespace tandem::api {
namespace {

// The value of the single sample of `name`, or "" when absent.
std::string value_of(const std::string& text, const std::string& name) {
  auto pos = text.find("\n" + name + "{");
  if (pos == std::string::npos) return "";
  auto close = text.find("} ", pos);
  auto eol = text.find('\n', close);
  return text.substr(close + 2, eol - close - 2);
}

TEST(ArchiveMetrics, AbsentWithoutArchiving) {
  auto v = testing::leader_with_lease();
  std::string text = render_metrics(v, v.published_ms);
  EXPECT_EQ(text.find("tandem_archive_"), std::string::npos);
}

TEST(ArchiveMetrics, FromTheView) {
  auto v = testing::leader_with_lease();
  ArchiveView a;
  a.archived_count = 42;
  a.failed_count = 2;
  a.last_archived_unix = v.published_ms / 1000 - 30;
  a.last_failed_unix = v.published_ms / 1000 - 300;
  a.last_archived_wal = "000000030000000000000004";
  a.lag_segments = 1;
  a.ready_files = 3;
  v.archive = a;
  int64_t now_ms = (v.published_ms / 1000) * 1000;
  std::string text = render_metrics(v, now_ms);
  EXPECT_EQ(value_of(text, "tandem_archive_archived_total"), "42");
  EXPECT_EQ(value_of(text, "tandem_archive_failed_total"), "2");
  EXPECT_EQ(value_of(text, "tandem_archive_lag_segments"), "1");
  EXPECT_EQ(value_of(text, "tandem_archive_ready_files"), "3");
  EXPECT_EQ(value_of(text, "tandem_archive_last_success_age_seconds"), "30.000");
  EXPECT_EQ(value_of(text, "tandem_archive_last_failure_age_seconds"), "300.000");
  EXPECT_NE(text.find("# TYPE tandem_archive_archived_total counter\n"), std::string::npos);

  // Unknown lag and no failure yet: those series are omitted.
  v.archive->lag_segments.reset();
  v.archive->last_failed_unix = 0;
  text = render_metrics(v, now_ms);
  EXPECT_EQ(value_of(text, "tandem_archive_lag_segments"), "");
  EXPECT_EQ(value_of(text, "tandem_archive_last_failure_age_seconds"), "");
}

}  // namespace
}  // namespace tandem::api
