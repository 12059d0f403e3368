// Which attention kernel runs: one rule (attention_kernel), used by the forward, the backward, the
// [gpu] tests and the benchmarks. Three families, one file each per pass:
//   mma    attention_{fwd,bwd}_mma.cu    mma.sync, any sm_80+ card: every head size and block
//   wgmma  attention_{fwd,bwd}_wgmma.cu  Hopper's wgmma, one query block per CTA
//   ws     attention_{fwd,bwd}_ws.cu     Hopper's wgmma, warp-specialised (a loading warpgroup, two
//                                        multiplying ones), persistent CTAs
//
//   head size, block   Hopper (H100, H200) forward / backward   A100, and any other sm_80+ card
//   32, 64 or 128      mma / mma                                 mma / mma
//   64, 64             wgmma / wgmma                             mma / mma
//   64, 128            ws / ws                                   mma / mma
//   128, 64 or 128     wgmma / wgmma                             mma / mma
//
// "Hopper" means a compute-capability 9.0 device running a build with sm_90a code (make gpu; the
// default CUDA build has it too). ST_ATTENTION=mma|wgmma|ws forces one family for every layer (to
// time or test it); a forced family that has no code for a layer's shape is an error.
#pragma once
#include <cuda_runtime.h>

namespace st::gpu {

enum class AttnKernel { mma, wgmma, ws };
enum class AttnPass { forward, backward };

const char* attention_kernel_name(AttnKernel k);  // "mma", "wgmma", "ws": ST_ATTENTION's words

// The rule of the table above. head_size 32, 64 or 128 and block 64 or 128 (attention_gpu_check).
AttnKernel attention_kernel(AttnPass pass, int head_size, int block, bool hopper);

// Whether family k has code for this pass and shape: mma everywhere, the others where
// attention_kernel picks them on a Hopper (no code exists that the rule never picks).
bool attention_kernel_takes(AttnKernel k, AttnPass pass, int head_size, int block);

// Whether this process's device runs the Hopper kernels: compute capability 9.0 and sm_90a code.
bool attention_hopper();

// The kernel that runs here: ST_ATTENTION's when it is set, else attention_kernel on this device.
AttnKernel attention_kernel_here(AttnPass pass, int head_size, int block);

}  // namespace st::gpu
