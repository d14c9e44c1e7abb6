// MetricsWriter (metrics.jsonl, one flushed JSON object per line) and progress-line formatting.
#include "recipes/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/check.h"

namespace modu::recipes {

MetricsWriter::MetricsWriter(const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  MODU_CHECK(!ec, out_dir, ": cannot create the output directory: ", ec.message());
  path_ = (std::filesystem::path(out_dir) / "metrics.jsonl").string();
  file_ = std::fopen(path_.c_str(), "a");
  MODU_CHECK(file_ != nullptr, path_, ": cannot open for appending: ", std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

MetricsWriter::MetricsWriter(MetricsWriter&& o) noexcept
    : path_(std::move(o.path_)), file_(std::exchange(o.file_, nullptr)) {}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& o) noexcept {
  std::swap(path_, o.path_);
  std::swap(file_, o.file_);
  return *this;
}

namespace {
void replace_non_finite(nlohmann::json& j) {
  if (j.is_number_float() && !std::isfinite(j.get<double>())) {
    j = nullptr;
  } else if (j.is_structured()) {
    for (auto& v : j) replace_non_finite(v);
  }
}
}  // namespace

void MetricsWriter::write(const nlohmann::json& record) {
  MODU_CHECK(file_ != nullptr, "MetricsWriter: not open");
  MODU_CHECK(record.is_object(), path_, ": a metrics record must be a JSON object");
  nlohmann::json r = record;
  replace_non_finite(r);
  const std::string line = r.dump() + "\n";
  const bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0;
  MODU_CHECK(ok, path_, ": write failed: ", std::strerror(errno));
}

std::string format_si(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (!std::isfinite(v)) return "?";
  if (a >= 1e12) std::snprintf(buf, sizeof buf, "%.2fT", v / 1e12);
  else if (a >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (a >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s % 3600 / 60));
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400), static_cast<long long>(s % 86400 / 3600));
  return buf;
}

std::string format_progress(const Progress& p) {
  auto known = [](double x) { return std::isfinite(x) && x >= 0; };
  std::string out = "step " + std::to_string(p.step);
  if (p.total_steps > 0) {
    out += '/';
    out += std::to_string(p.total_steps);
  }
  char buf[64];
  if (std::isfinite(p.loss)) {
    std::snprintf(buf, sizeof buf, " | loss %.4f", p.loss);
    out += buf;
  }
  if (known(p.lr)) {
    std::snprintf(buf, sizeof buf, " | lr %.2e", p.lr);
    out += buf;
  }
  if (known(p.grad_norm)) {
    std::snprintf(buf, sizeof buf, " | gnorm %.2f", p.grad_norm);
    out += buf;
  }
  if (known(p.tokens_per_second)) {
    out += " | ";
    out += format_si(p.tokens_per_second);
    out += " tok/s";
  }
  if (known(p.mfu)) {
    std::snprintf(buf, sizeof buf, " | MFU %.1f%%", p.mfu * 100);
    out += buf;
  }
  if (known(p.eta_seconds)) {
    out += " | ETA ";
    out += format_duration(p.eta_seconds);
  }
  return out;
}

}  // namespace modu::recipes
