// What the file tests share: a fresh directory under /tmp, removed with everything in it.
#pragma once
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace st::test {

struct TempDir {
    std::string path;
    TempDir() {
        char name[] = "/tmp/st-test-XXXXXX";
        if (!mkdtemp(name)) throw std::runtime_error("mkdtemp failed");
        path = name;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
    std::vector<std::string> names() const {  // sorted
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
    bool has_temporaries() const {  // a "*.tmp.*" left by an atomic write
        for (const auto& n : names())
            if (n.find(".tmp") != std::string::npos) return true;
        return false;
    }
};

}  // namespace st::test
