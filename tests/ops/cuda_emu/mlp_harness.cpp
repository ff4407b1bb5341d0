// Runs csrc/cuda/mlp_energy_kernel.cu on CPU threads (see cuda_runtime.h here) for
// tests/ops/test_mlp_cuda_emulated.py. Usage: mlp_harness DIR, where DIR/config.txt holds
// "key value" lines and DIR/x.bin, DIR/params.bin the inputs (raw, the config's dtype);
// outputs go to DIR as raw files (e.bin g.bin saved.bin | out.bin traj.bin ens.bin), rc.txt and
// plan.txt (the launch plan on the emulated device: rc rb resident smem n_blocks). Config "mode
// layouts" writes the layout sizes instead (harness_common.h).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "harness_common.h"

#include "mlp_energy_kernel.cu"

using harness::read_file;
using harness::write_file;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const harness::Config cfg(dir);
  if (harness::write_layouts(cfg, dir)) return 0;
  auto I = [&](const char* k) { return cfg.I(k); };
  auto F = [&](const char* k) { return cfg.F(k); };
  const bool f64 = cfg.f64();
  const size_t es = f64 ? 8 : 4;
  const auto net = cfg.net<ebmfast::MLPNetDesc>();
  std::vector<char> x = read_file(dir + "/x.bin"), params = read_file(dir + "/params.bin");
  const auto dt = f64 ? ebmfast::DType::kFloat64 : ebmfast::DType::kFloat32;
  {  // the plan the launch takes on the emulated device: rc rb resident smem n_blocks
    ebmfast::MLPCudaDevice dev;
    ebmfast::mlp_smem::current_device(&dev);
    const auto kernel = cfg.S("mode") == "eg" ? ebmfast::MLPKernel::kForward : ebmfast::MLPKernel::kChain;
    const auto plan = ebmfast::mlp_cuda_plan(kernel, net.D, net.NH, net.HP, net.B, static_cast<int64_t>(es), dev);
    std::ofstream(dir + "/plan.txt") << plan.rc << " " << plan.rb << " " << int(plan.resident) << " " << plan.smem
                                     << " " << plan.n_blocks << "\n";
  }
  if (cfg.kv.count("plan_only")) return 0;  // the plan alone (no inputs needed)
  int rc = 0;
  if (cfg.S("mode") == "eg") {
    int64_t S = 0;
    for (int l = 0; l < net.NH; ++l) S += 2 * net.widths[l];
    std::vector<char> e(net.B * es), g(net.B * net.D * es), saved(I("save") ? net.B * S * es : 0);
    rc = ebmfast::mlp_energy_grad_cuda_launch(dt, x.data(), params.data(), e.data(), g.data(),
                                              saved.empty() ? nullptr : saved.data(), net, nullptr);
    write_file(dir + "/e.bin", e.data(), e.size());
    write_file(dir + "/g.bin", g.data(), g.size());
    write_file(dir + "/saved.bin", saved.data(), saved.size());
  } else {
    ebmfast::MLPChainParamsD p;
    p.n_steps = I("n_steps");
    p.every = I("every");
    p.step_size = F("step_size");
    p.noise_scale = F("noise_scale");
    p.ref_coef = F("ref_coef");
    p.has_lo = I("has_lo");
    p.has_hi = I("has_hi");
    p.lo = F("lo");
    p.hi = F("hi");
    p.clip_mode = I("clip_mode");
    p.clip_value = F("clip_value");
    p.seed = static_cast<uint64_t>(I("seed"));
    p.offset = 0;
    p.record_trajectory = I("rec_traj");
    p.record_energies = I("rec_e");
    p.check_finite = I("check");
    const int64_t T = (p.n_steps + p.every - 1) / p.every + 1;
    std::vector<char> out(net.B * net.D * es), traj(p.record_trajectory ? T * net.B * net.D * es : 0),
        ens(p.record_energies ? T * net.B * es : 0);
    int32_t bad = INT32_MAX;
    rc = ebmfast::mlp_chain_cuda_launch(dt, x.data(), params.data(), out.data(),
                                        traj.empty() ? nullptr : traj.data(), ens.empty() ? nullptr : ens.data(),
                                        &bad, net, p, nullptr);
    write_file(dir + "/out.bin", out.data(), out.size());
    write_file(dir + "/traj.bin", traj.data(), traj.size());
    write_file(dir + "/ens.bin", ens.data(), ens.size());
    std::ofstream(dir + "/bad.txt") << bad << "\n";
  }
  std::ofstream(dir + "/rc.txt") << rc << "\n";
  return 0;
}
