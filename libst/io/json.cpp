// The nesting scan in front of every JSON parse of a file's text.
#include "io/json.h"

#include <algorithm>
#include <cmath>

namespace st {

size_t json_depth(std::string_view text, size_t limit) {
    size_t depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return limit + 1;
            deepest = std::max(deepest, depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

static const nlohmann::json& field(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) fail("not a JSON object");
    auto it = j.find(key);
    if (it == j.end()) fail(std::string("no \"") + key + "\"");
    return *it;
}

// A value as an error message shows it: short.
static std::string shown(const nlohmann::json& v) {
    std::string s = v.dump();
    return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

int64_t json_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
    const auto& v = field(j, key);
    bool ok = false;
    int64_t x = 0;
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        ok = u <= uint64_t(hi);
        x = ok ? int64_t(u) : 0;
    } else if (v.is_number_integer()) {
        x = v.get<int64_t>();
        ok = true;
    }
    if (!ok || x < lo || x > hi)
        fail(std::string("\"") + key + "\" is " + shown(v) + ", not a whole number from " + std::to_string(lo) +
             " to " + std::to_string(hi));
    return x;
}

double json_real(const nlohmann::json& j, const char* key, double lo, double hi) {
    const auto& v = field(j, key);
    const double x = v.is_number() ? v.get<double>() : NAN;
    if (!(x >= lo && x <= hi))
        fail(std::string("\"") + key + "\" is " + shown(v) + ", not a number from " + std::to_string(lo) + " to " +
             std::to_string(hi));
    return x;
}

std::string json_string(const nlohmann::json& j, const char* key) {
    const auto& v = field(j, key);
    if (!v.is_string()) fail(std::string("\"") + key + "\" is " + shown(v) + ", not a string");
    return v.get<std::string>();
}

}  // namespace st
