// Runs csrc/cuda/mlp_backward_kernel.cu on CPU threads (see cuda_runtime.h here) for
// tests/ops/test_mlp_cuda_backward_emulated.py. Usage: mlp_backward_harness DIR, where
// DIR/config.txt holds "key value" lines and DIR/{x,params,ge,gg}.bin (and saved.bin when the
// config says saved 1) the inputs (raw, the config's dtype). Writes DIR/gx.bin, DIR/partial.bin
// ([n_blocks, width], the kernel's per-block partial sums, unreduced), DIR/plan.txt (rc of the
// plan, rb, resident, state_in_smem, smem, n_blocks, width, scratch_per_block, then the offsets
// mlp_backward_offset(net, l) for l = 0..NH) and DIR/rc.txt (the launch's return code).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "harness_common.h"

#include "mlp_backward_kernel.cu"

using harness::read_file;
using harness::write_file;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const harness::Config cfg(dir);
  if (harness::write_layouts(cfg, dir)) return 0;
  auto I = [&](const char* k) { return cfg.I(k); };
  const bool f64 = cfg.f64();
  const size_t es = f64 ? 8 : 4;
  const auto net = cfg.net<ebmfast::MLPNetDesc>();
  const std::vector<char> x = read_file(dir + "/x.bin"), params = read_file(dir + "/params.bin"),
                          ge = read_file(dir + "/ge.bin"), gg = read_file(dir + "/gg.bin");
  const std::vector<char> saved = I("saved") ? read_file(dir + "/saved.bin") : std::vector<char>();
  const auto dt = f64 ? ebmfast::DType::kFloat64 : ebmfast::DType::kFloat32;

  ebmfast::MLPCudaPlan plan;
  const int prc = ebmfast::mlp_backward_cuda_plan(dt, net, &plan);
  {
    std::ofstream f(dir + "/plan.txt");
    f << prc << " " << plan.rb << " " << int(plan.resident) << " " << int(plan.state_in_smem) << " " << plan.smem
      << " " << plan.n_blocks << " " << plan.width << " " << plan.scratch_per_block;
    for (int64_t l = 0; l <= net.NH; ++l) f << " " << ebmfast::mlp_backward_offset(net, l);
    f << "\n";
  }
  if (cfg.kv.count("plan_only")) return 0;  // the plan alone (no inputs needed)
  int rc = prc;
  std::vector<char> gx(net.B * net.D * es), partial(prc == 0 ? plan.n_blocks * plan.width * es : 0);
  // poison the outputs: the kernel must write every element itself
  std::fill(gx.begin(), gx.end(), static_cast<char>(0xff));
  std::fill(partial.begin(), partial.end(), static_cast<char>(0xff));
  // global scratch for the tile state, NaN-poisoned like the emulated shared memory
  std::vector<char> scratch(prc == 0 ? plan.n_blocks * plan.scratch_per_block * es : 0, static_cast<char>(0xff));
  if (prc == 0) {
    rc = ebmfast::mlp_energy_grad_backward_cuda_launch(dt, x.data(), params.data(),
                                                       saved.empty() ? nullptr : saved.data(), ge.data(), gg.data(),
                                                       gx.data(), partial.data(),
                                                       scratch.empty() ? nullptr : scratch.data(), net, plan, nullptr);
  }
  write_file(dir + "/gx.bin", gx.data(), gx.size());
  write_file(dir + "/partial.bin", partial.data(), partial.size());
  std::ofstream(dir + "/rc.txt") << rc << "\n";
  return 0;
}
