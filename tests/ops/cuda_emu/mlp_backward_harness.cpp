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
#include <map>
#include <string>
#include <vector>

#include "cuda_runtime.h"

// The kernels' `extern __shared__ unsigned char smem_raw[]` resolves to this array.
namespace ebmfast {
namespace {
alignas(16) unsigned char smem_raw[emu::kSmemCapacity];
}  // namespace
}  // namespace ebmfast
unsigned char* emu::dynamic_smem() { return ebmfast::smem_raw; }

#include "mlp_backward_kernel.cu"

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const void* p, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  std::map<std::string, std::string> cfg;
  {
    std::ifstream f(dir + "/config.txt");
    std::string k, v;
    while (f >> k >> v) cfg[k] = v;
  }
  auto I = [&](const char* k) { return std::stoll(cfg.at(k)); };
  emu::smem_optin = static_cast<int>(I("smem_optin"));
  emu::sm_count = static_cast<int>(I("sm_count"));
  emu::smem_per_sm = static_cast<int>(I("smem_per_sm"));
  const bool f64 = cfg.at("dtype") == "f64";
  const size_t es = f64 ? 8 : 4;
  ebmfast::MLPNetDesc net{};
  net.B = I("B");
  net.D = I("D");
  net.NH = I("NH");
  net.HP = I("HP");
  net.act = I("act");
  for (int l = 0; l < net.NH; ++l) net.widths[l] = I(("w" + std::to_string(l)).c_str());
  const std::vector<char> x = read_file(dir + "/x.bin"), params = read_file(dir + "/params.bin"),
                          ge = read_file(dir + "/ge.bin"), gg = read_file(dir + "/gg.bin");
  const std::vector<char> saved = I("saved") ? read_file(dir + "/saved.bin") : std::vector<char>();
  const auto dt = f64 ? ebmfast::DType::kFloat64 : ebmfast::DType::kFloat32;

  ebmfast::MLPBackwardPlan plan;
  const int prc = ebmfast::mlp_backward_cuda_plan(dt, net, &plan);
  {
    std::ofstream f(dir + "/plan.txt");
    f << prc << " " << plan.rb << " " << int(plan.resident) << " " << int(plan.state_in_smem) << " " << plan.smem
      << " " << plan.n_blocks << " " << plan.width << " " << plan.scratch_per_block;
    for (int64_t l = 0; l <= net.NH; ++l) f << " " << ebmfast::mlp_backward_offset(net, l);
    f << "\n";
  }
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
