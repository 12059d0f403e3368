// Context parallelism on CPU processes (threads of this test, meeting over TCP as st-train's ranks
// do): P processes, each running its part of every sequence, give the loss and the gradient of one
// process running it all, in every pattern and head mode, for lengths P does not divide, with and
// without --recompute.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "engine.h"
#include "local_job.h"
#include "model.h"
#include "parallel/comm.h"
#include "parallel/rendezvous.h"
#include "rng.h"
#include "tiny_config.h"

using namespace st;

namespace {

// Two layers, d 16, two heads; chunks of 8 and blocks of 32, so that a length of 100 has four query
// blocks and a process's part leaves some of them out; dropout on, so that the masks are checked too.
Config split_config(Pattern p, HeadMode mode) {
    Config c = test::tiny_config(p, mode, PosKind::p2d, 16, 2);
    c.n_ctx = 104;  // the tests run shorter sequences too
    c.attn.stride = 8;
    c.dropout = 0.1f;
    return c;
}

std::vector<uint8_t> random_bytes(size_t n, int vocab, uint64_t seed) {
    Rng r(seed);
    std::vector<uint8_t> v(n);
    for (auto& x : v) x = uint8_t(r.next() % uint64_t(vocab));
    return v;
}

// The paper's initialisation starts the head at zero, so every gradient below it is zero in the
// first step; these weights, the same in every model, let the gradients reach every layer (and the
// exchanges of the keys' and values' gradients matter).
void init_busy(Model<float>& m) {
    m.init_weights(3);
    Rng r(5);
    for (float& x : m.w) x += float(0.05 * r.normal());
}

// Runs body(rank, comm) on world threads, each a rank of one job.
template <class Body> void run_ranks(int world, Body body) {
    const int port = test::free_port();
    std::vector<std::thread> ranks;
    for (int r = 0; r < world; r++)
        ranks.emplace_back([&, r] {
            Rendezvous rv(test::local_job(r, world, port), r == 0 ? std::vector<uint8_t>{1} : std::vector<uint8_t>{},
                          20);
            auto comm = make_tcp_comm(rv);
            body(r, comm.get());
        });
    for (auto& t : ranks) t.join();
}

double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, double(std::fabs(x)));
    return m;
}

}  // namespace

TEST_CASE("the parts of a sequence are consecutive, cover it once and differ by at most one", "[dist]") {
    for (int seq : {1, 2, 7, 100, 65536})
        for (int world = 1; world <= std::min(seq, 5); world++) {
            int next = 0, shortest = seq, longest = 0;
            for (int r = 0; r < world; r++) {
                const SequencePart p = sequence_part(seq, r, world);
                CHECK(p.lo == next);
                next = p.hi;
                shortest = std::min(shortest, p.hi - p.lo);
                longest = std::max(longest, p.hi - p.lo);
            }
            CHECK(next == seq);
            CHECK(longest - shortest <= 1);
            CHECK(shortest >= 1);
        }
}

TEST_CASE("allgather and add_to_owners: each segment its owner's, sums to the owner, only the floor sent", "[dist]") {
    // Segments of 3, 0 and 2 values (a rank may own none); the TCP collectives and the defaults over
    // allreduce_sum (a group of the whole job) give the same values, and say what each rank sent.
    const std::vector<size_t> counts = {3, 0, 2};
    const size_t n = 5, lo[] = {0, 3, 3};
    for (bool group : {false, true}) {
        CAPTURE(group);
        std::vector<std::vector<float>> gathered(3), added(3);
        std::vector<std::pair<size_t, size_t>> sent(3);
        run_ranks(3, [&](int r, Comm* job) {
            std::unique_ptr<Comm> whole = group ? make_group_comm(*job, 3) : nullptr;
            Comm* c = group ? whole.get() : job;
            std::vector<float> x(n, -1.0f);  // others' segments hold garbage on entry
            for (size_t i = 0; i < counts[size_t(r)]; i++) x[lo[r] + i] = float(10 * (r + 1) + int(i));
            sent[size_t(r)].first = c->allgather(x.data(), counts);
            gathered[size_t(r)] = x;
            for (size_t i = 0; i < n; i++) x[i] = float((r + 1) * 100 + int(i));
            sent[size_t(r)].second = c->add_to_owners(x.data(), counts);
            added[size_t(r)].assign(x.begin() + ptrdiff_t(lo[r]), x.begin() + ptrdiff_t(lo[r] + counts[size_t(r)]));
        });
        for (int r = 0; r < 3; r++) {
            CHECK(gathered[size_t(r)] == std::vector<float>{10, 11, 12, 30, 31});
            std::vector<float> want;  // 100 + 200 + 300 + 3 i
            for (size_t i = 0; i < counts[size_t(r)]; i++) want.push_back(float(600 + 3 * int(lo[r] + i)));
            CHECK(added[size_t(r)] == want);
            if (group)
                CHECK(sent[size_t(r)] == std::pair<size_t, size_t>{n, n});
            else
                CHECK(sent[size_t(r)] == std::pair<size_t, size_t>{counts[size_t(r)], n - counts[size_t(r)]});
        }
    }
}

TEST_CASE("a group of consecutive ranks sums over itself alone", "[dist]") {
    std::vector<std::vector<float>> got(4);
    std::vector<int> ranks(4), worlds(4);
    run_ranks(4, [&](int r, Comm* job) {
        CHECK_THROWS_WITH(make_group_comm(*job, 3), Catch::Contains("groups of 3 do not divide the job's 4"));
        auto group = make_group_comm(*job, 2);
        std::vector<float> x = {float(r + 1), float(10 * (r + 1))};
        group->allreduce_sum(x.data(), x.size());
        got[size_t(r)] = x, ranks[size_t(r)] = group->rank(), worlds[size_t(r)] = group->world();
    });
    CHECK(got == std::vector<std::vector<float>>{{3, 30}, {3, 30}, {7, 70}, {7, 70}});
    CHECK(ranks == std::vector<int>{0, 1, 0, 1});
    CHECK(worlds == std::vector<int>{2, 2, 2, 2});
}

TEST_CASE("the shared positions are those a query of another part attends to, no more", "[dist]") {
    const int T = 100;
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
            for (int layer : {0, 1})
                for (int world : {1, 2, 3}) {
                    CAPTURE(pattern_name(p), head_mode_name(mode), layer, world);
                    const Config c = split_config(p, mode);
                    std::vector<int> owner(T);
                    for (int r = 0; r < world; r++)
                        for (int i = sequence_part(T, r, world).lo; i < sequence_part(T, r, world).hi; i++)
                            owner[i] = r;
                    std::vector<int32_t> want;  // element by element, from the pattern's definition
                    int64_t reads = 0;          // (reader, position of another part) pairs
                    for (int j = 0; j < T; j++) {
                        std::vector<char> readers(size_t(world), 0);
                        for (int i = j; i < T; i++)
                            for (int h = 0; h < c.n_head; h++)
                                if (owner[i] != owner[j] && attn_allowed(c.attn, c.n_head, layer, h, i, j))
                                    readers[size_t(owner[i])] = 1;
                        if (std::count(readers.begin(), readers.end(), 1)) want.push_back(j);
                        reads += std::count(readers.begin(), readers.end(), 1);
                    }
                    const LayerLayout lay = layout_build(c.attn, T, c.n_head, layer);
                    CHECK(shared_positions(lay, world) == want);
                    CHECK(foreign_reads(lay, world) == reads);
                }
    // The fixed pattern shares its summaries (and the chunks a part's edge cuts), a fraction of the
    // sequence; dense attention shares everything but the last part.
    Config fixed = split_config(Pattern::fixed, HeadMode::multihead);
    fixed.attn.stride = 16, fixed.attn.summary = 1,
    fixed.n_ctx = 96;  // chunks of 16: the parts' edges fall between them
    CHECK(shared_positions(layout_build(fixed.attn, 96, fixed.n_head, 0), 2).size() == 3);  // chunk 0, 1, 2's summary
    Config dense = split_config(Pattern::dense, HeadMode::merged);
    CHECK(shared_positions(layout_build(dense.attn, 96, dense.n_head, 0), 3).size() == 64);
}

TEST_CASE("context-parallel processes give one process's loss and gradient, every pattern and mode", "[dist]") {
    const int B = 2, T = 100;
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
            for (int world : {2, 3}) {
                CAPTURE(pattern_name(p), head_mode_name(mode), world);
                const Config c = split_config(p, mode);
                const auto bytes = random_bytes(size_t(B) * (T + 1), c.vocab, 7);
                std::vector<uint8_t> inp, tgt;
                for (int b = 0; b < B; b++) {
                    inp.insert(inp.end(), bytes.begin() + b * (T + 1), bytes.begin() + b * (T + 1) + T);
                    tgt.insert(tgt.end(), bytes.begin() + b * (T + 1) + 1, bytes.begin() + (b + 1) * (T + 1));
                }
                // One process: the whole sequences, with dropout (a training forward).
                Model<float> one(c);
                init_busy(one);
                one.dropout_seed = 11;
                const double loss = one.forward(inp.data(), tgt.data(), B, T, true);
                one.backward();

                // world processes: each its part, weighed by its share of the positions and added; with
                // --recompute too, whose backward reruns each layer on the keys and values it kept.
                for (bool recompute : {false, true}) {
                    CAPTURE(recompute);
                    std::vector<double> losses(static_cast<size_t>(world));
                    std::vector<std::vector<float>> grads(static_cast<size_t>(world));
                    std::vector<std::pair<int64_t, int64_t>> exchanged_values(
                        static_cast<size_t>(world));  // counted, expected
                    run_ranks(world, [&](int r, Comm* comm) {
                        Model<float> m(c);
                        init_busy(m);
                        m.dropout_seed = 11;
                        m.recompute = recompute;
                        m.split_rank = r, m.split_world = world;
                        m.split_gather = [comm](float* x, const std::vector<size_t>& n) {
                            return comm->allgather(x, n);
                        };
                        m.split_add = [comm](float* x, const std::vector<size_t>& n) {
                            return comm->add_to_owners(x, n);
                        };
                        const double share = double(sequence_part(T, r, world).hi - sequence_part(T, r, world).lo) / T;
                        losses[size_t(r)] = m.forward(inp.data(), tgt.data(), B, T, true) * share;
                        m.backward();
                        // What this process contributed: in each layer the keys and values of the shared
                        // rows it owns in the forward (once, --recompute or not), and in the backward
                        // their gradients for every other owner's rows.
                        int64_t exchanged = 0;
                        for (int l = 0; l < c.n_layer; l++)
                            exchanged +=
                                int64_t(B) * int64_t(shared_positions(m.layout(l, T), world).size()) * 2 * c.d_model;
                        exchanged_values[size_t(r)] = {m.split_values, exchanged};
                        for (float& x : m.g) x = float(x * share);
                        grads[size_t(r)] = m.g;
                    });
                    double split_loss = 0;
                    std::vector<float> g(one.g.size(), 0.0f);
                    for (int r = 0; r < world; r++) {
                        split_loss += losses[size_t(r)];
                        for (size_t i = 0; i < g.size(); i++) g[i] += grads[size_t(r)][i];
                    }
                    CHECK(std::fabs(split_loss - loss) <= 1e-5 * loss);
                    for (const ParamInfo& pi : one.params) {  // each tensor against its own size
                        CAPTURE(pi.name);
                        const auto at = [&](const std::vector<float>& v) {
                            return std::vector<float>(v.begin() + pi.offset, v.begin() + pi.offset + pi.numel);
                        };
                        const std::vector<float> want = at(one.g), got = at(g);
                        std::vector<float> diff(want.size());
                        for (size_t i = 0; i < diff.size(); i++) diff[i] = got[i] - want[i];
                        REQUIRE(max_abs(want) > 0);
                        CHECK(max_abs(diff) <= 1e-5 * max_abs(want));
                    }
                    for (const auto& [counted, expected] : exchanged_values) CHECK(counted == expected);
                }
            }
}

TEST_CASE("context-parallel training: every rank the same weights, the losses of one process", "[dist]") {
    const int B = 2, T = 77, world = 3, steps = 3;  // 77 = 26 + 26 + 25
    const Config c = split_config(Pattern::fixed, HeadMode::merged);
    const auto bytes = random_bytes(size_t(B) * (T + 1) * steps, c.vocab, 9);
    auto batch = [&](int s, std::vector<uint8_t>* inp, std::vector<uint8_t>* tgt) {
        inp->clear(), tgt->clear();
        for (int b = 0; b < B; b++) {
            const auto* w = bytes.data() + (size_t(s) * B + b) * (T + 1);
            inp->insert(inp->end(), w, w + T);
            tgt->insert(tgt->end(), w + 1, w + T + 1);
        }
    };
    const AdamWStep opt{0.001f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, 0};
    auto train = [&](Engine& e, std::vector<double>* losses) {
        std::vector<uint8_t> inp, tgt;
        for (int s = 0; s < steps; s++) {
            batch(s, &inp, &tgt);
            AdamWStep o = opt;
            o.t = s + 1;
            losses->push_back(e.train_step(inp.data(), tgt.data(), B, T, uint64_t(100 + s), o).loss);
        }
        batch(0, &inp, &tgt);
        losses->push_back(e.loss(inp.data(), tgt.data(), B, T));  // held-out style: no dropout
    };
    Model<float> one(c);
    one.init_weights(5);
    std::vector<float> om, ov;
    auto e1 = make_cpu_engine(one, om, ov);
    std::vector<double> want;
    train(*e1, &want);

    std::vector<std::vector<double>> got(world);
    std::vector<std::vector<float>> weights(world);
    run_ranks(world, [&](int r, Comm* comm) {
        Model<float> m(c);
        m.init_weights(5);
        std::vector<float> m1, v1;
        auto e = make_cpu_engine(m, m1, v1);
        e->set_context_parallel(comm);
        train(*e, &got[size_t(r)]);
        weights[size_t(r)] = m.w;
    });
    for (int r = 0; r < world; r++) {
        CAPTURE(r);
        CHECK(weights[size_t(r)] == weights[0]);  // one update, made alike
        REQUIRE(got[size_t(r)].size() == want.size());
        for (size_t s = 0; s < want.size(); s++) CHECK(std::fabs(got[size_t(r)][s] - want[s]) <= 1e-5 * want[s]);
    }
}
