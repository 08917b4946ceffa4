#include "io/checkpoint_source.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace qdqbert::io {

void pread_exact(const MappedFile& file, uint64_t pos, void* out, uint64_t n, const char* what) {
  uint64_t done = 0;
  while (done < n) {
    // One call reads at most 1 GiB (Linux caps a read near 2 GiB anyway).
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n - done, uint64_t{1} << 30));
    const ssize_t k = ::pread(file.fd(), static_cast<char*>(out) + done, want, static_cast<off_t>(pos + done));
    if (k < 0 && errno == EINTR) continue;
    TORCH_CHECK(k >= 0, "checkpoint '", file.path(), "': cannot read ", what, " (", n, " bytes at byte ", pos,
                "): ", std::strerror(errno));
    TORCH_CHECK(k > 0, "checkpoint '", file.path(), "': cannot read ", what, ": the file ends at byte ", pos + done,
                " (was it changed while loading?)");
    done += static_cast<uint64_t>(k);
  }
}

TensorSource TensorSource::in_memory(at::Tensor value) {
  TensorSource s;
  s.dtype_ = value.scalar_type();
  s.sizes_ = value.sizes().vec();
  s.make_ = [value] { return value; };
  return s;
}

TensorSource TensorSource::made_by(std::function<at::Tensor()> make, at::ScalarType dtype, std::vector<int64_t> sizes) {
  TensorSource s;
  s.dtype_ = dtype;
  s.sizes_ = std::move(sizes);
  s.make_ = std::move(make);
  return s;
}

TensorSource TensorSource::in_file(const std::string& key, MappedFile file, uint64_t storage_pos, at::ScalarType dtype,
                                   std::vector<int64_t> sizes, std::vector<int64_t> strides, int64_t offset) {
  TORCH_INTERNAL_ASSERT(sizes.size() == strides.size() && offset >= 0);
  TensorSource s;
  s.dtype_ = dtype;
  s.sizes_ = std::move(sizes);
  s.strides_ = std::move(strides);
  s.offset_ = offset;
  s.file_.emplace(std::move(file));
  s.what_ = "tensor '" + key + "'";
  s.storage_pos_ = storage_pos;
  return s;
}

int64_t TensorSource::numel() const {
  // A non-empty tensor's element count is at most its byte size in the file, so the product fits; an
  // empty one may have huge other dims, whose product is never taken.
  if (std::find(sizes_.begin(), sizes_.end(), 0) != sizes_.end()) return 0;
  int64_t n = 1;
  for (int64_t d : sizes_) n *= d;
  return n;
}

bool TensorSource::is_floating_point() const { return c10::isFloatingType(dtype_); }

// Row-major with no gaps (dims of size 1 may carry any stride).
bool TensorSource::contiguous_view() const {
  int64_t expected = 1;
  for (size_t d = sizes_.size(); d-- > 0;) {
    if (sizes_[d] == 1) continue;
    if (strides_[d] != expected) return false;
    expected *= sizes_[d];
  }
  return true;
}

at::Tensor TensorSource::read_view() const {
  const auto options = at::TensorOptions().dtype(dtype_);
  if (numel() == 0) return at::empty(sizes_, options);
  int64_t last = offset_;
  for (size_t d = 0; d < sizes_.size(); ++d) last += (sizes_[d] - 1) * strides_[d];
  at::Tensor span = at::empty({last - offset_ + 1}, options);
  const uint64_t elem = c10::elementSize(dtype_);
  pread_exact(*file_, storage_pos_ + static_cast<uint64_t>(offset_) * elem, span.data_ptr(), span.numel() * elem,
              what_.c_str());
  return span.as_strided(sizes_, strides_, 0);
}

at::Tensor TensorSource::read() const {
  if (make_) return make_();
  at::Tensor view = read_view();
  // A strided view is cloned (dense, like read_pytorch_bin always did), so it holds only its own elements.
  return numel() == 0 || contiguous_view() ? view : view.clone();
}

bool TensorSource::copy_to(const at::Tensor& dst, const Accept& accept, int64_t chunk_bytes) const {
  TORCH_INTERNAL_ASSERT(dst.sizes() == sizes(), "TensorSource::copy_to: shape ", dst.sizes(), " vs ", sizes());
  const int64_t n = numel();
  if (n == 0) return true;
  if (!file_ || !contiguous_view() || !dst.is_contiguous() || !dst.device().is_cpu()) {
    const at::Tensor whole = file_ ? read_view() : make_();
    if (accept && !accept(whole)) return false;
    dst.copy_(whole);
    return true;
  }
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype_));
  const int64_t step = std::max<int64_t>(1, chunk_bytes / elem);
  const bool direct = dst.scalar_type() == dtype_;
  const at::Tensor flat = dst.view(-1);
  const at::Tensor buffer = direct ? at::Tensor() : at::empty({std::min(step, n)}, at::TensorOptions().dtype(dtype_));
  for (int64_t begin = 0; begin < n; begin += step) {
    const int64_t count = std::min(step, n - begin);
    const at::Tensor piece = direct ? flat.narrow(0, begin, count) : buffer.narrow(0, 0, count);
    pread_exact(*file_, storage_pos_ + static_cast<uint64_t>(offset_ + begin) * elem, piece.data_ptr(),
                static_cast<uint64_t>(count * elem), what_.c_str());
    // Written behind autograd's back: bump the version as copy_ would, so caches keyed on it
    // (QuantLinear's fake-quantized weight) see the new values.
    if (direct) dst.unsafeGetTensorImpl()->bump_version();
    if (accept && !accept(piece)) return false;
    if (!direct) flat.narrow(0, begin, count).copy_(piece);
  }
  return true;
}

}  // namespace qdqbert::io
