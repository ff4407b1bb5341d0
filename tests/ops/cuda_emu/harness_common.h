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
// given, smem_per_sm).
struct Config {
  std::map<std::string, std::string> kv;
  explicit Config(const std::string& dir) {
    std::ifstream f(dir + "/config.txt");
    std::string k, v;
    while (f >> k >> v) kv[k] = v;
    emu::smem_optin = static_cast<int>(I("smem_optin"));
    emu::sm_count = static_cast<int>(I("sm_count"));
    if (kv.count("smem_per_sm")) emu::smem_per_sm = static_cast<int>(I("smem_per_sm"));
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

}  // namespace harness
