// One attention test case (a pattern on a shape), shared by the CPU and GPU attention tests.
#pragma once
#include <sstream>
#include <string>

#include "layout.h"

namespace st {

struct AttnCase {
    AttnSpec spec;
    int layer, B, T, C, NH;
    int head_size() const { return C / NH; }
};

inline std::string describe(const AttnCase& k) {
    std::ostringstream o;
    o << pattern_name(k.spec.pattern) << " " << head_mode_name(k.spec.mode) << " l " << k.spec.stride << " c "
      << k.spec.summary << " block " << k.spec.block << " layer " << k.layer << " B " << k.B << " T " << k.T << " C "
      << k.C << " NH " << k.NH;
    return o.str();
}

}  // namespace st
