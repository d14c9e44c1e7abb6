// export/safetensors_io.cpp — see safetensors_io.h.
#include "export/safetensors_io.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/check.h"

namespace modu::exporting {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100'000'000;  // the safetensors crate's N_LEN limit

struct DtypeInfo {
  const char* name;
  int bits;                   // per element
  std::optional<DType> modu;  // nullopt: valid safetensors, but modu has no such dtype
};

// Every dtype of the safetensors spec (src/tensor.rs).
const DtypeInfo kDtypes[] = {
    {"BOOL", 8, DType::Bool},         {"U8", 8, DType::U8},         {"I8", 8, std::nullopt},
    {"I16", 16, std::nullopt},        {"U16", 16, std::nullopt},    {"F16", 16, DType::F16},
    {"BF16", 16, DType::BF16},        {"I32", 32, DType::I32},      {"U32", 32, std::nullopt},
    {"F32", 32, DType::F32},          {"C64", 64, std::nullopt},    {"F64", 64, DType::F64},
    {"I64", 64, DType::I64},          {"U64", 64, std::nullopt},    {"F8_E5M2", 8, std::nullopt},
    {"F8_E4M3", 8, std::nullopt},     {"F8_E8M0", 8, std::nullopt}, {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt}, {"F4", 4, std::nullopt},      {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  for (const DtypeInfo& d : kDtypes)
    if (d.modu && *d.modu == dtype) return d.name;
  MODU_CHECK(false, "safetensors: no dtype for modu's ", dtype_name(dtype));
  return {};
}

void write_safetensors(const fs::path& file, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = file.string();
  std::vector<std::pair<std::string, Tensor>> sorted;
  sorted.reserve(tensors.size());
  std::set<std::string> seen;
  for (const SafetensorsTensor& t : tensors) {
    MODU_CHECK(t.tensor.defined(), where, ": tensor '", t.name, "' is undefined");
    MODU_CHECK(!t.name.empty() && t.name != "__metadata__", where, ": bad tensor name '", t.name, "'");
    MODU_CHECK(seen.insert(t.name).second, where, ": tensor '", t.name, "' given twice");
    sorted.emplace_back(t.name, t.tensor.detach().to(Device::cpu()).contiguous());
  }
  // The crate's order: larger dtypes first (alignment), then by name.
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    size_t sa = a.second.element_size(), sb = b.second.element_size();
    return sa != sb ? sa > sb : a.first < b.first;
  });

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool f = true;
    for (const auto& [k, v] : metadata) {
      if (!f) header += ',';
      header += json(k).dump();
      header += ':';
      header += json(v).dump();
      f = false;
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    if (!first) header += ',';
    header += json(name).dump();
    header += ":{\"dtype\":\"";
    header += safetensors_dtype_name(t.dtype());
    header += "\",\"shape\":[";
    for (int d = 0; d < t.dim(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.size(d));
    }
    uint64_t end = offset + t.nbytes();
    header += "],\"data_offsets\":[";
    header += std::to_string(offset);
    header += ',';
    header += std::to_string(end);
    header += "]}";
    offset = end;
    first = false;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  MODU_CHECK(out.good(), where, ": cannot open for writing");
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& [name, t] : sorted)
    if (t.nbytes() > 0) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  out.flush();
  MODU_CHECK(out.good(), where, ": write failed (disk full?)");
}

SafetensorsFile SafetensorsFile::open(const fs::path& file) {
  const std::string where = file.string();
  MODU_CHECK(fs::is_regular_file(file), where, ": no such safetensors file");
  const uint64_t size = fs::file_size(file);
  std::ifstream in(file, std::ios::binary);
  MODU_CHECK(in.good(), where, ": cannot open for reading");
  MODU_CHECK(size >= 8, where, ": ", size, " bytes, shorter than the 8-byte header length of a safetensors file");
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  MODU_CHECK(n <= kMaxHeader, where, ": header length ", n, " exceeds safetensors' limit of ", kMaxHeader,
             " bytes (not a safetensors file, or a corrupt one)");
  MODU_CHECK(n <= size - 8, where, ": header length ", n, " runs past the end of the file (", size,
             " bytes): the file is truncated or not safetensors");
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  MODU_CHECK(in.good(), where, ": cannot read the ", n, "-byte header");
  MODU_CHECK(n > 0 && header[0] == '{', where, ": the header does not start with '{'");

  // Parse, refusing duplicate top-level names (nlohmann would keep the last silently).
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
      const std::string k = parsed.get<std::string>();
      if (!keys.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(header, cb);
  } catch (const json::exception& e) {
    MODU_CHECK(false, where, ": the header is not valid JSON: ", e.what());
  }
  MODU_CHECK(j.is_object(), where, ": the header is not a JSON object");
  MODU_CHECK(duplicate.empty(), where, ": the header names tensor '", duplicate, "' twice");

  SafetensorsFile f;
  f.path_ = file;
  f.header_length_ = n;
  const uint64_t buffer = size - 8 - n;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      MODU_CHECK(v.is_object(), where, ": __metadata__ must be an object of strings");
      for (const auto& [k, s] : v.items()) {
        MODU_CHECK(s.is_string(), where, ": __metadata__[\"", k, "\"] is not a string");
        f.metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string at = where + ": tensor '" + name + "'";
    MODU_CHECK(v.is_object(), at, ": the entry is not an object");
    MODU_CHECK(v.contains("dtype") && v["dtype"].is_string(), at, ": no \"dtype\" string");
    MODU_CHECK(v.contains("shape") && v["shape"].is_array(), at, ": no \"shape\" array");
    MODU_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2, at,
               ": no \"data_offsets\" [begin, end]");
    Entry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    MODU_CHECK(info != nullptr, at, ": unknown dtype \"", e.dtype, "\"");
    MODU_CHECK(v["shape"].size() <= 8, at, ": ", v["shape"].size(), " dimensions (modu allows 8)");
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      MODU_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), at,
                 ": shape entries must be non-negative integers, got ", d.dump());
      const uint64_t x = d.get<uint64_t>();
      if (x != 0 && numel > UINT64_MAX / 8 / x) overflow = true;
      numel *= x;
      e.shape.push_back(static_cast<int64_t>(x));
    }
    MODU_CHECK(!overflow, at, ": the shape ", v["shape"].dump(), " is too large");
    for (const json& o : v["data_offsets"])
      MODU_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), at,
                 ": data_offsets must be non-negative integers, got ", v["data_offsets"].dump());
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    MODU_CHECK(e.begin <= e.end, at, ": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    MODU_CHECK(e.end <= buffer, at, ": data_offsets [", e.begin, ", ", e.end, "] run past the end of the data (",
               buffer, " bytes): the file is truncated");
    const uint64_t bits = numel * static_cast<uint64_t>(info->bits);
    MODU_CHECK(bits % 8 == 0, at, ": ", numel, " elements of ", e.dtype, " are not a whole number of bytes");
    MODU_CHECK(e.end - e.begin == bits / 8, at, ": data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin,
               " bytes but shape ", v["shape"].dump(), " of ", e.dtype, " needs ", bits / 8);
    f.entries_.push_back(std::move(e));
  }
  // Offsets must tile the buffer: contiguous from 0, no gaps, no overlaps, nothing left over.
  std::stable_sort(f.entries_.begin(), f.entries_.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : f.entries_) {
    if (e.begin != expect) {
      if (e.begin < expect)
        MODU_CHECK(false, where, ": tensor '", e.name, "' (bytes [", e.begin, ", ", e.end, ")) overlaps tensor '",
                   prev->name, "' (bytes [", prev->begin, ", ", prev->end, "))");
      MODU_CHECK(false, where, ": bytes [", expect, ", ", e.begin, ") before tensor '", e.name,
                 "' belong to no tensor (a gap in data_offsets)");
    }
    expect = e.end;
    prev = &e;
  }
  MODU_CHECK(expect == buffer, where, ": the tensors cover ", expect, " bytes of the ", buffer,
             "-byte data buffer (file not fully covered: truncated header or extra bytes)");
  for (size_t i = 0; i < f.entries_.size(); ++i) f.index_[f.entries_[i].name] = i;
  return f;
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  MODU_CHECK(it != index_.end(), path_.string(), ": no tensor '", name, "'");
  return entries_[it->second];
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const Entry& e = entry(name);
  const DtypeInfo* info = find_dtype(e.dtype);
  MODU_CHECK(info && info->modu, path_.string(), ": tensor '", name, "' has dtype ", e.dtype,
             ", which modu cannot hold (it reads F32, F64, F16, BF16, I32, I64, U8, BOOL)");
  Tensor t = Tensor::empty(e.shape, *info->modu);
  if (e.end == e.begin) return t;
  std::ifstream in(path_, std::ios::binary);
  MODU_CHECK(in.good(), path_.string(), ": cannot open for reading");
  in.seekg(static_cast<std::streamoff>(8 + header_length_ + e.begin));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
  MODU_CHECK(in.good(), path_.string(), ": tensor '", name, "': short read of ", e.end - e.begin,
             " bytes (the file changed or is truncated)");
  return t;
}

}  // namespace modu::exporting
