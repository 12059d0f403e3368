// JSON from files st did not write itself (model headers, configs, recipes): parsed only after a scan
// has bounded its nesting, since nlohmann's trees are copied and compared recursively and a header of
// a few hundred thousand '[' would overflow the stack. Errors name the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "error.h"

namespace st {

// Deeper than anything st writes (its configs nest three levels) by a wide margin.
inline constexpr size_t kJsonMaxDepth = 64;

// The deepest nesting of arrays and objects in TEXT, or limit + 1 as soon as it passes LIMIT. Brackets
// inside strings do not count; the text need not be valid JSON (the parser judges that afterwards).
size_t json_depth(std::string_view text, size_t limit);

// TEXT parsed as JSON (or ordered_json); st::Error "WHAT: ..." when it is not JSON or nests deeper
// than kJsonMaxDepth.
template <class Json = nlohmann::json> Json json_parse(std::string_view text, const std::string& what) {
    if (json_depth(text, kJsonMaxDepth) > kJsonMaxDepth)
        fail(what + ": JSON nested more than " + std::to_string(kJsonMaxDepth) + " levels deep");
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::parse_error& e) {
        fail(what + ": not valid JSON, at byte " + std::to_string(e.byte));
    } catch (const nlohmann::json::exception&) {  // a number beyond a double's range: out_of_range
        fail(what + ": not valid JSON (a number out of range)");
    }
}

// J[KEY] as a whole number in [lo, hi] or a real number in [lo, hi]: st::Error naming KEY when it is
// missing, of another type or out of range (nothing is converted before it is known to fit).
int64_t json_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi);
double json_real(const nlohmann::json& j, const char* key, double lo, double hi);
std::string json_string(const nlohmann::json& j, const char* key);

}  // namespace st
