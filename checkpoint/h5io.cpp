// checkpoint/h5io.cpp — HDF5 C-library implementation of the shard file format (see h5io.h).
//
// Invariants: each HDF5 id lives in a Handle that closes it; a failed HDF5 call is turned into a
// modu::Error naming the file, the operation and HDF5's own messages, then the error stack is cleared.
#include "checkpoint/h5io.h"

#include <hdf5.h>

#include <cstdio>
#include <string_view>
#include <vector>

#include "core/check.h"

namespace modu::checkpoint::h5 {
namespace {

// Silences HDF5's automatic error printing for the lifetime of the guard.
class Quiet {
 public:
  Quiet() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

herr_t collect_error(unsigned n, const H5E_error2_t* e, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (n >= 4) return 0;  // the innermost few frames say enough
  if (!out->empty()) *out += " <- ";
  *out += e->func_name ? e->func_name : "?";
  if (e->desc && *e->desc) {
    *out += ": ";
    *out += e->desc;
  }
  return 0;
}

[[noreturn]] void fail(const fs::path& file, std::string_view what, std::string_view hint = {}) {
  std::string stack;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &stack);
  H5Eclear2(H5E_DEFAULT);
  if (stack.empty()) stack = "no detail from HDF5";
  if (hint.empty()) MODU_FAIL(file.string(), ": HDF5 ", what, " failed (", stack, ")");
  MODU_FAIL(file.string(), ": HDF5 ", what, " failed (", stack, "); ", hint);
}

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether HDF5 accepted it.
  bool close() {
    if (id_ < 0) return true;
    herr_t rc = closer_(id_);
    id_ = H5I_INVALID_HID;
    return rc >= 0;
  }
  void reset() {
    if (id_ >= 0) {
      Quiet q;
      closer_(id_);
      H5Eclear2(H5E_DEFAULT);
    }
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

hid_t file_type(DType t) {
  switch (t) {
    case DType::F32: return H5T_IEEE_F32LE;
    case DType::F64: return H5T_IEEE_F64LE;
    case DType::BF16:
    case DType::F16: return H5T_STD_U16LE;
    case DType::I32: return H5T_STD_I32LE;
    case DType::I64: return H5T_STD_I64LE;
    case DType::U8:
    case DType::Bool: return H5T_STD_U8LE;
  }
  return H5T_STD_U8LE;
}
hid_t mem_type(DType t) {
  switch (t) {
    case DType::F32: return H5T_NATIVE_FLOAT;
    case DType::F64: return H5T_NATIVE_DOUBLE;
    case DType::BF16:
    case DType::F16: return H5T_NATIVE_UINT16;
    case DType::I32: return H5T_NATIVE_INT32;
    case DType::I64: return H5T_NATIVE_INT64;
    case DType::U8:
    case DType::Bool: return H5T_NATIVE_UINT8;
  }
  return H5T_NATIVE_UINT8;
}

std::vector<hsize_t> to_hsize(const Dims& d) {
  std::vector<hsize_t> v(size_t(d.size()));
  for (int i = 0; i < d.size(); ++i) v[size_t(i)] = hsize_t(d[i]);
  return v;
}

// A dataspace of `shape`: scalar for 0 dims.
Handle make_space(const Dims& shape, const fs::path& file) {
  hid_t id;
  if (shape.size() == 0) {
    id = H5Screate(H5S_SCALAR);
  } else {
    auto dims = to_hsize(shape);
    id = H5Screate_simple(shape.size(), dims.data(), nullptr);
  }
  if (id < 0) fail(file, "dataspace creation");
  return Handle(id, H5Sclose);
}

Handle file_access_plist(const fs::path& file) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid()) fail(file, "property list creation");
  if (H5Pset_file_locking(fapl.get(), false, true) < 0) fail(file, "disabling file locking");
  return fapl;
}

void write_string_attr(hid_t obj, const char* key, const std::string& value, const fs::path& file) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid() || H5Tset_size(type.get(), value.empty() ? 1 : value.size()) < 0 ||
      H5Tset_strpad(type.get(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
    fail(file, std::string("string type for attribute ") + key);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, key, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!space.valid() || !attr.valid()) fail(file, std::string("creating attribute ") + key);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (H5Awrite(attr.get(), type.get(), padded.data()) < 0) fail(file, std::string("writing attribute ") + key);
}

void write_i64_attr(hid_t obj, const char* key, const int64_t* values, size_t n, bool scalar,
                    const fs::path& file) {
  hsize_t len = n;
  Handle space(scalar ? H5Screate(H5S_SCALAR) : (n == 0 ? H5Screate(H5S_NULL) : H5Screate_simple(1, &len, nullptr)),
               H5Sclose);
  Handle attr(H5Acreate2(obj, key, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!space.valid() || !attr.valid()) fail(file, std::string("creating attribute ") + key);
  if (n > 0 && H5Awrite(attr.get(), H5T_NATIVE_INT64, values) < 0)
    fail(file, std::string("writing attribute ") + key);
}

void write_u64_attr(hid_t obj, const char* key, uint64_t value, const fs::path& file) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, key, H5T_STD_U64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!space.valid() || !attr.valid()) fail(file, std::string("creating attribute ") + key);
  if (H5Awrite(attr.get(), H5T_NATIVE_UINT64, &value) < 0) fail(file, std::string("writing attribute ") + key);
}

}  // namespace

std::string dataset_path(size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/tensors/%06zu", index);
  return buf;
}

// ---- writer ---------------------------------------------------------------------------------------

struct ShardFileWriter::Impl {
  fs::path path;
  Handle file;
  Handle group;
};

ShardFileWriter::ShardFileWriter(const fs::path& path, int64_t step, int rank) : impl_(std::make_unique<Impl>()) {
  Quiet q;
  impl_->path = path;
  Handle fapl = file_access_plist(path);
  impl_->file = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!impl_->file.valid()) fail(path, "file creation", "check that the folder is writable and has free space");
  hid_t f = impl_->file.get();
  write_string_attr(f, "format", "modu.checkpoint.shard", path);
  int64_t version = 1;
  write_i64_attr(f, "format_version", &version, 1, true, path);
  write_i64_attr(f, "step", &step, 1, true, path);
  int64_t r = rank;
  write_i64_attr(f, "rank", &r, 1, true, path);
  impl_->group = Handle(H5Gcreate2(f, "/tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!impl_->group.valid()) fail(path, "creating group /tensors");
}

ShardFileWriter::~ShardFileWriter() = default;  // Handles close quietly

void ShardFileWriter::write(const std::string& dataset, const void* data, const Dims& shape, const PieceAttrs& a) {
  Quiet q;
  const fs::path& path = impl_->path;
  MODU_CHECK(impl_->file.valid(), path.string(), ": write after close");
  Handle space = make_space(shape, path);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!dcpl.valid() || H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0) fail(path, "dataset property list");
  Handle ds(H5Dcreate2(impl_->file.get(), dataset.c_str(), file_type(a.dtype), space.get(), H5P_DEFAULT,
                       dcpl.get(), H5P_DEFAULT),
            H5Dclose);
  if (!ds.valid()) fail(path, "creating dataset " + dataset);
  if (shape.numel() > 0 &&
      H5Dwrite(ds.get(), mem_type(a.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(path, "writing dataset " + dataset + " (tensor " + a.name + ")", "check free space and quotas");
  write_string_attr(ds.get(), "name", a.name, path);
  write_string_attr(ds.get(), "dtype", std::string(dtype_name(a.dtype)), path);
  write_i64_attr(ds.get(), "global_shape", a.global_shape.data(), size_t(a.global_shape.size()), false, path);
  write_i64_attr(ds.get(), "global_offset", a.global_offset.data(), size_t(a.global_offset.size()), false, path);
  write_u64_attr(ds.get(), "xxh64", a.xxh64, path);
  if (!ds.close()) fail(path, "closing dataset " + dataset);
}

void ShardFileWriter::close() {
  Quiet q;
  const fs::path& path = impl_->path;
  if (!impl_->group.close()) fail(path, "closing group /tensors");
  if (impl_->file.valid() && H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL) < 0)
    fail(path, "flush", "check free space and quotas");
  if (!impl_->file.close()) fail(path, "close", "check free space and quotas");
}

// ---- reader ---------------------------------------------------------------------------------------

struct ShardFileReader::Impl {
  fs::path path;
  Handle file;
};

ShardFileReader::ShardFileReader(const fs::path& path) : impl_(std::make_unique<Impl>()) {
  Quiet q;
  impl_->path = path;
  Handle fapl = file_access_plist(path);
  impl_->file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!impl_->file.valid())
    fail(path, "open", "the shard file is damaged or not an HDF5 file; restore the checkpoint folder from a copy");
}

ShardFileReader::~ShardFileReader() = default;

const fs::path& ShardFileReader::path() const { return impl_->path; }

void ShardFileReader::read_box(const std::string& dataset, DType dtype, const Dims& piece_shape,
                               const Dims& file_start, const Dims& count, void* mem, const Dims& mem_shape,
                               const Dims& mem_start) {
  Quiet q;
  const fs::path& path = impl_->path;
  const char* damaged = "the shard file is damaged; restore the checkpoint folder from a copy";
  Handle ds(H5Dopen2(impl_->file.get(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail(path, "opening dataset " + dataset, damaged);

  // The stored type and shape must be what the manifest says.
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  if (!type.valid()) fail(path, "reading the type of " + dataset, damaged);
  H5T_class_t cls = H5Tget_class(type.get());
  H5T_class_t want_cls = (dtype == DType::F32 || dtype == DType::F64) ? H5T_FLOAT : H5T_INTEGER;
  MODU_CHECK(cls == want_cls && H5Tget_size(type.get()) == dtype_size(dtype), path.string(), ": dataset ", dataset,
             " does not store ", dtype_name(dtype), " elements as the manifest says (HDF5 class ", int(cls),
             ", size ", H5Tget_size(type.get()), "); ", damaged);
  Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  if (!fspace.valid()) fail(path, "reading the shape of " + dataset, damaged);
  int nd = H5Sget_simple_extent_ndims(fspace.get());
  MODU_CHECK(nd == piece_shape.size(), path.string(), ": dataset ", dataset, " has ", nd, " dims, the manifest says ",
             piece_shape.size(), "; ", damaged);
  std::vector<hsize_t> fdims(size_t(nd > 0 ? nd : 1));
  if (nd > 0) H5Sget_simple_extent_dims(fspace.get(), fdims.data(), nullptr);
  for (int i = 0; i < nd; ++i)
    MODU_CHECK(int64_t(fdims[size_t(i)]) == piece_shape[i], path.string(), ": dataset ", dataset, " has shape ",
               "different from the manifest's ", piece_shape.str(), "; ", damaged);
  if (count.numel() == 0) return;

  if (nd == 0) {  // a scalar: one element
    if (H5Dread(ds.get(), mem_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, mem) < 0)
      fail(path, "reading dataset " + dataset, damaged);
    return;
  }
  auto fstart = to_hsize(file_start), cnt = to_hsize(count);
  if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, fstart.data(), nullptr, cnt.data(), nullptr) < 0)
    fail(path, "selecting a region of " + dataset);
  Handle mspace = make_space(mem_shape, path);
  auto mstart = to_hsize(mem_start);
  if (H5Sselect_hyperslab(mspace.get(), H5S_SELECT_SET, mstart.data(), nullptr, cnt.data(), nullptr) < 0)
    fail(path, "selecting the destination region for " + dataset);
  if (H5Dread(ds.get(), mem_type(dtype), mspace.get(), fspace.get(), H5P_DEFAULT, mem) < 0)
    fail(path, "reading dataset " + dataset, damaged);
}

}  // namespace modu::checkpoint::h5
