// Shared by the emulation harnesses (mlp_harness.cpp, mlp_backward_harness.cpp): the dynamic
// shared memory the kernels see, raw file I/O, and the "key value" config. Include it before
// the kernel's .cu (the kernels' `extern __shared__ unsigned char smem_raw[]` resolves to the
// array defined here).
#pragma once

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "ebmfast/mlp_cuda_plan.h"

namespace ebmfast {
namespace {
alignas(16) unsigned char smem_raw[emu::kSmemCapacity];
}  // namespace
}  // namespace ebmfast
unsigned char* emu::dynamic_smem() { return ebmfast::smem_raw; }

namespace harness {

inline std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const void* p, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
}

// DIR/config.txt: "key value" lines; sets the emulated device (smem_optin, sm_count and, when
// given, smem_per_sm, static_smem: every kernel's static shared memory, lane_order: see
// cuda_runtime.h).
struct Config {
  std::map<std::string, std::string> kv;
  explicit Config(const std::string& dir) {
    std::ifstream f(dir + "/config.txt");
    std::string k, v;
    while (f >> k >> v) kv[k] = v;
    emu::smem_optin = static_cast<int>(I("smem_optin"));
    emu::sm_count = static_cast<int>(I("sm_count"));
    if (kv.count("smem_per_sm")) emu::smem_per_sm = static_cast<int>(I("smem_per_sm"));
    if (kv.count("static_smem")) emu::static_smem = static_cast<int>(I("static_smem"));
    if (kv.count("lane_order")) emu::lane_order = static_cast<int>(I("lane_order"));
  }
  long long I(const std::string& k) const { return std::stoll(kv.at(k)); }
  double F(const std::string& k) const { return std::stod(kv.at(k)); }
  const std::string& S(const std::string& k) const { return kv.at(k); }
  bool f64() const { return S("dtype") == "f64"; }
  // B, D, NH, HP, act and the hidden widths w0.. of an MLPNetDesc
  template <class Net>
  Net net() const {
    Net n{};
    n.B = I("B");
    n.D = I("D");
    n.NH = I("NH");
    n.HP = I("HP");
    n.act = I("act");
    for (int l = 0; l < n.NH; ++l) n.widths[l] = I("w" + std::to_string(l));
    return n;
  }
};

// Config "mode layouts": writes DIR/layouts.txt with the shared-memory bytes of every layout of
// include/ebmfast/mlp_cuda_plan.h for the config's D, NH, HP and elem (4 or 8), one
// "<fwd|bwd> rb resident state_smem bytes" line each (rb 1, 2, 4), and a last line
// "static_budget <kMLPCudaStaticSmemBudget>". Returns whether it did (the harness then stops).
inline bool write_layouts(const Config& cfg, const std::string& dir) {
  if (!cfg.kv.count("mode") || cfg.S("mode") != "layouts") return false;
  const int64_t D = cfg.I("D"), NH = cfg.I("NH"), HP = cfg.I("HP"), elem = cfg.I("elem");
  std::ofstream f(dir + "/layouts.txt");
  for (int64_t rb : {1, 2, 4}) {
    for (bool resident : {true, false}) {
      f << "fwd " << rb << " " << resident << " 1 " << ebmfast::mlp_fwd_layout(D, NH, HP, rb, resident).total * elem
        << "\n";
      for (bool state : {true, false})
        f << "bwd " << rb << " " << resident << " " << state << " "
          << ebmfast::mlp_bwd_layout(D, NH, HP, rb, resident, state).total * elem << "\n";
    }
  }
  f << "static_budget " << ebmfast::kMLPCudaStaticSmemBudget << "\n";
  return true;
}

}  // namespace harness
