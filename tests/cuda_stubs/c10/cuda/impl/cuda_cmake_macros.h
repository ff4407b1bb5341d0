// c10's build-generated header (empty stub for the launcher type check in tests/test_nvcc_compile.py)
#pragma once
