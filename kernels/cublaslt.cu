// cuBLASLt through dlopen (cublaslt.h).
#include <dlfcn.h>

#include <string>

#include "kernels/cublaslt.h"

namespace st::gpu {

const CublasLt& cublaslt() {
    static const CublasLt lib = [] {
        // The major version the code was compiled against: its entry points and enums are the ones used.
        const std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
        void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h)
            fail("the GPU engine needs cuBLASLt, and " + soname + " cannot be loaded: " + dlerror() +
                 " (install the CUDA toolkit's cuBLAS, or add its lib64 folder to LD_LIBRARY_PATH)");
        auto sym = [&](const char* name) {
            void* p = dlsym(h, name);
            if (!p) fail("cuBLASLt: " + std::string(name) + " is missing from " + soname);
            return p;
        };
        CublasLt l;
        auto get = [&](auto& fn, const char* name) { fn = reinterpret_cast<std::decay_t<decltype(fn)>>(sym(name)); };
        get(l.create, "cublasLtCreate");
        get(l.destroy, "cublasLtDestroy");
        get(l.desc_create, "cublasLtMatmulDescCreate");
        get(l.desc_destroy, "cublasLtMatmulDescDestroy");
        get(l.desc_set, "cublasLtMatmulDescSetAttribute");
        get(l.layout_create, "cublasLtMatrixLayoutCreate");
        get(l.layout_destroy, "cublasLtMatrixLayoutDestroy");
        get(l.pref_create, "cublasLtMatmulPreferenceCreate");
        get(l.pref_destroy, "cublasLtMatmulPreferenceDestroy");
        get(l.pref_set, "cublasLtMatmulPreferenceSetAttribute");
        get(l.heuristic, "cublasLtMatmulAlgoGetHeuristic");
        get(l.matmul, "cublasLtMatmul");
        get(l.status_string, "cublasLtGetStatusString");
        return l;
    }();
    return lib;
}

}  // namespace st::gpu
