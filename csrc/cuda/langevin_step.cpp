// CUDA launcher of the fused Langevin step: checks, row norms, stream; the math is
// in langevin_step_kernel.cu (raw pointers).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "langevin_step_kernel.cuh"

namespace ebmfast {
namespace {

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK(false, "ebmfast.langevin_step: unsupported dtype ", t, " (float32/64, float16, bfloat16)");
  }
}

void run(const at::Tensor& x, const at::Tensor& grad, const c10::optional<at::Tensor>& noise, at::Tensor& out,
         double step_size, double noise_scale, int64_t seed, int64_t offset, c10::optional<double> lo,
         c10::optional<double> hi, int64_t clip_mode, double clip_value) {
  TORCH_CHECK(x.is_cuda(), "ebmfast.langevin_step (cuda): x must be a CUDA tensor, got device ", x.device());
  TORCH_CHECK(grad.device() == x.device(), "ebmfast.langevin_step (cuda): grad must be on x's device ", x.device(),
              ", got ", grad.device());
  TORCH_CHECK(x.sizes() == grad.sizes() && x.scalar_type() == grad.scalar_type(),
              "ebmfast.langevin_step: grad must match x in shape and dtype, got ", grad.sizes(), " ",
              grad.scalar_type(), " for x ", x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous() && grad.is_contiguous(), "ebmfast.langevin_step: x and grad must be contiguous");
  TORCH_CHECK(clip_mode >= 0 && clip_mode <= 2, "ebmfast.langevin_step: clip_mode must be 0, 1 or 2, got ", clip_mode);
  if (noise.has_value()) {
    TORCH_CHECK(noise->device() == x.device(), "ebmfast.langevin_step (cuda): noise must be on x's device ",
                x.device(), ", got ", noise->device());
    TORCH_CHECK(noise->sizes() == x.sizes() && noise->scalar_type() == x.scalar_type() && noise->is_contiguous(),
                "ebmfast.langevin_step: noise must be a contiguous tensor of x's shape and dtype, got ",
                noise->sizes(), " ", noise->scalar_type());
  }
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.numel();
  int64_t row_size = 1;
  at::Tensor scale;
  if (clip_mode == 2 && n > 0) {
    row_size = n / x.size(0);
    const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor norms = at::linalg_vector_norm(grad.reshape({x.size(0), -1}), 2, {1}, false, acc);
    scale = at::full_like(norms, clip_value).div_(norms.clamp_min(clip_value));  // c / max(norm, c)
  }
  LangevinParamsD p{step_size, noise_scale, lo.value_or(0.0), hi.value_or(0.0), clip_value,
                    lo.has_value(), hi.has_value(), clip_mode, static_cast<uint64_t>(seed),
                    static_cast<uint64_t>(offset)};
  const int err = langevin_step_cuda_launch(
      to_dtype(x.scalar_type()), x.const_data_ptr(), grad.const_data_ptr(),
      noise.has_value() ? noise->const_data_ptr() : nullptr, out.mutable_data_ptr(),
      scale.defined() ? scale.const_data_ptr() : nullptr, n, row_size, p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "ebmfast.langevin_step: CUDA launch failed with error ", err);
}

at::Tensor langevin_step_cuda(const at::Tensor& x, const at::Tensor& grad, double step_size, double noise_scale,
                              const c10::optional<at::Tensor>& noise, int64_t seed, int64_t offset,
                              c10::optional<double> lo, c10::optional<double> hi, int64_t clip_mode,
                              double clip_value) {
  at::Tensor out = at::empty_like(x);
  run(x, grad, noise, out, step_size, noise_scale, seed, offset, lo, hi, clip_mode, clip_value);
  return out;
}

void langevin_step_inplace_cuda(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_scale,
                                const c10::optional<at::Tensor>& noise, int64_t seed, int64_t offset,
                                c10::optional<double> lo, c10::optional<double> hi, int64_t clip_mode,
                                double clip_value) {
  run(x, grad, noise, x, step_size, noise_scale, seed, offset, lo, hi, clip_mode, clip_value);
}

at::Tensor philox_normal_cuda(const at::Tensor& like, int64_t seed, int64_t offset) {
  at::Tensor zeros = at::zeros_like(like, at::MemoryFormat::Contiguous);
  return langevin_step_cuda(zeros, zeros, 1.0, 1.0, c10::nullopt, seed, offset, c10::nullopt, c10::nullopt, 0, 0.0);
}

}  // namespace

TORCH_LIBRARY_IMPL(ebmfast, CUDA, m) {
  m.impl("langevin_step", &langevin_step_cuda);
  m.impl("langevin_step_", &langevin_step_inplace_cuda);
  m.impl("philox_normal", &philox_normal_cuda);
}

}  // namespace ebmfast
