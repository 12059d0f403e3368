// The draw of a byte from logits (sample.h): each filter keeps exactly the bytes it names, and the
// draws among them follow their renormalised probabilities.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "rng.h"
#include "sample.h"

using namespace st;

namespace {

// Logits of 8 bytes whose probabilities at temperature 1 are proportional to w.
std::vector<float> logits_of(const std::vector<double>& w) {
    std::vector<float> l;
    for (double x : w) l.push_back(float(std::log(x)));
    return l;
}

// How often each byte is drawn in n draws.
std::vector<double> frequencies(const std::vector<float>& logits, const SampleOptions& o, int n) {
    Rng rng(11);
    std::vector<float> scratch;
    std::vector<double> f(logits.size(), 0);
    for (int i = 0; i < n; i++) f[size_t(sample_byte(logits.data(), int(logits.size()), o, rng, scratch))] += 1.0 / n;
    return f;
}

const std::vector<double> kWeights = {0.40, 0.20, 0.15, 0.10, 0.06, 0.05, 0.03, 0.01};

}  // namespace

TEST_CASE("sampling: temperature 0 takes the likeliest byte", "[sample]") {
    SampleOptions o;
    o.temperature = 0;
    const std::vector<float> l = logits_of({0.1, 0.2, 0.5, 0.2});
    Rng rng(1);
    std::vector<float> scratch;
    for (int i = 0; i < 10; i++) CHECK(sample_byte(l.data(), 4, o, rng, scratch) == 2);
}

TEST_CASE("sampling: top-k, top-p and min-p keep the bytes they name, in proportion", "[sample]") {
    const std::vector<float> l = logits_of(kWeights);
    struct Case {
        const char* name;
        SampleOptions o;
        int kept;  // the first `kept` bytes (kWeights is in descending order)
    };
    std::vector<Case> cases;
    cases.push_back({"none", {}, 8});
    cases.push_back({"top-k 3", {1.0f, 3, 1.0f, 0.0f}, 3});
    cases.push_back({"top-p 0.7", {1.0f, 0, 0.7f, 0.0f}, 3});  // 0.40 + 0.20 + 0.15 = 0.75 >= 0.7
    cases.push_back({"min-p 0.2", {1.0f, 0, 1.0f, 0.2f}, 4});  // 0.10 / 0.40 = 0.25 >= 0.2; 0.06 / 0.40 < 0.2
    cases.push_back({"min-p 0.9", {1.0f, 0, 1.0f, 0.9f}, 1});  // the likeliest is always kept
    cases.push_back({"top-k 6 then min-p 0.05", {1.0f, 6, 1.0f, 0.05f}, 6});  // min-p alone keeps 7 (0.03 / 0.40)
    cases.push_back({"top-k 2 then min-p 0.1", {1.0f, 2, 1.0f, 0.1f}, 2});
    for (const Case& c : cases) {
        INFO(c.name);
        const int n = 200000;
        const std::vector<double> f = frequencies(l, c.o, n);
        double kept_mass = 0;
        for (int v = 0; v < c.kept; v++) kept_mass += kWeights[size_t(v)];
        for (int v = 0; v < 8; v++) {
            INFO("byte " << v);
            if (v >= c.kept) {
                CHECK(f[size_t(v)] == 0);
                continue;
            }
            const double p = kWeights[size_t(v)] / kept_mass;
            CHECK(std::fabs(f[size_t(v)] - p) < 5 * std::sqrt(p * (1 - p) / n) + 1e-9);
        }
    }
}

TEST_CASE("sampling: min-p is relative to the likeliest byte after the temperature", "[sample]") {
    // At temperature 2 the ratios are square roots: 0.01 / 0.40 = 0.025 becomes 0.158.
    const std::vector<float> l = logits_of(kWeights);
    SampleOptions o{2.0f, 0, 1.0f, 0.15f};
    const std::vector<double> f = frequencies(l, o, 50000);
    for (int v = 0; v < 8; v++) CHECK(f[size_t(v)] > 0);
    o.min_p = 0.16f;
    CHECK(frequencies(l, o, 50000)[7] == 0);
}
