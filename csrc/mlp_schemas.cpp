// Op schemas of the fused MLP energy. Kernels: cpu/mlp_energy.cpp (CPU); the
// Python references, fake kernels and autograd live in ebmfast/ops/mlp_energy.py.
//
// The MLP: weights = [W_1 [w_1, D], ..., W_H [w_H, w_{H-1}], W_out [1, w_H]] (nn.Linear
// layout), biases = [] or one per weight, act = activation code
// (ebmfast/ops/mlp_activations.py, include/ebmfast/mlp_activation.h), slope = leaky_relu slope.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(ebmfast, m) {
  // (E [B], grad_x E [B, D], saved): saved = [B, 2 * sum(w_l)] (a_l, then dE/dh_l, per hidden
  // layer) when save, else an empty tensor; it lets the backward skip the forward.
  m.def(
      "mlp_energy_grad(Tensor x, Tensor[] weights, Tensor[] biases, int act, float slope, bool save) "
      "-> (Tensor, Tensor, Tensor)");
  // VJP of (E, grad_x E) with cotangents (grad_energy [B], grad_grad [B, D]) w.r.t. x, weights and
  // biases: the analytic double backward. saved may be empty (the forward is then recomputed).
  m.def(
      "mlp_energy_grad_backward(Tensor x, Tensor[] weights, Tensor[] biases, int act, float slope, "
      "Tensor saved, Tensor grad_energy, Tensor grad_grad) -> (Tensor, Tensor[], Tensor[])");
  // Gradient-norm penalty of the MLP at x (CPU): (penalty, E [B], grad_x E [B, D], saved) with
  // penalty_b = (sqrt(|grad_x E_b|^2 + 1e-12) - lipschitz)^2, or |grad_x E_b|^2 when lipschitz <= 0,
  // reduced by `reduction` (0 none -> [B], 1 mean, 2 sum -> 0-dim).
  m.def(
      "mlp_grad_norm_penalty(Tensor x, Tensor[] weights, Tensor[] biases, int act, float slope, float lipschitz, "
      "int reduction) -> (Tensor, Tensor, Tensor, Tensor)");
  // Its VJP w.r.t. x, weights and biases given the cotangents of the penalty and of E (either may be
  // None: zero).
  m.def(
      "mlp_grad_norm_penalty_backward(Tensor x, Tensor[] weights, Tensor[] biases, int act, float slope, "
      "Tensor saved, Tensor grad, Tensor? grad_penalty, Tensor? grad_energy, float lipschitz, int reduction) "
      "-> (Tensor, Tensor[], Tensor[])");
  // K steps of x <- clamp(x - step_size * clip(grad E(x) + ref_coef * x) + noise_scale * xi_k, lo, hi),
  // xi_k = Philox(seed, offset = k) (the stream of langevin_step). Returns (x, trajectory [T, B, D]
  // or empty, energies [T, B] or empty, bad_step int64 scalar): records x_k for k % every == 0 and the
  // final state, T = ceil(K / every) + 1. check_finite: stop at the first step with a non-finite
  // energy or drift (grad E + ref_coef * x) and return its index (outputs undefined then); -1 when none.
  m.def(
      "mlp_langevin_chain(Tensor x0, Tensor[] weights, Tensor[] biases, int act, float slope, int n_steps, "
      "float step_size, float noise_scale, float ref_coef, int seed, float? clamp_min, float? clamp_max, "
      "int clip_mode, float clip_value, int every, bool record_trajectory, bool record_energies, "
      "bool check_finite) -> (Tensor, Tensor, Tensor, Tensor)");
}
