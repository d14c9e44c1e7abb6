// Training-progress output shared by every recipe: metrics.jsonl and the one-line progress report.
//
// MetricsWriter appends one JSON object per line to OUT_DIR/metrics.jsonl and flushes after every
// line, so a plot (or `tail -f`) sees each step as soon as it is logged and a crash loses at most
// the line being written. Opening appends: a resumed run continues the same file.
// format_progress renders
//   "step 12/1000 | loss 3.2100 | lr 6.00e-04 | gnorm 1.23 | 45.1k tok/s | MFU 12.3% | ETA 3m20s"
// leaving out every field that is unknown (NaN / negative).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace modu::recipes {

class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Creates out_dir if needed and opens out_dir/metrics.jsonl for appending.
  explicit MetricsWriter(const std::string& out_dir);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  MetricsWriter(MetricsWriter&& o) noexcept;
  MetricsWriter& operator=(MetricsWriter&& o) noexcept;

  bool is_open() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }
  // Writes `record` (a JSON object) as one line and flushes. Non-finite numbers become null.
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

constexpr double kUnknown = std::numeric_limits<double>::quiet_NaN();

struct Progress {
  int64_t step = 0;                  // steps done
  int64_t total_steps = 0;           // <= 0: unknown
  double loss = kUnknown;
  double lr = kUnknown;
  double grad_norm = kUnknown;
  double tokens_per_second = kUnknown;
  double mfu = kUnknown;             // fraction of peak, 0.123 -> "12.3%"
  double eta_seconds = kUnknown;
};

std::string format_progress(const Progress& p);
// 45100 -> "45.1k", 1.2e6 -> "1.20M", 950 -> "950"
std::string format_si(double value);
// 200 -> "3m20s", 7384 -> "2h03m", 42.4 -> "42s", 3 days -> "3d01h"
std::string format_duration(double seconds);

}  // namespace modu::recipes
