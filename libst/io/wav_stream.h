// A mono 16-bit WAV written as its samples arrive, for a pipe: st-sample music.st | st-audio decode
// -o - | play -. libsndfile makes whole files in memory (libst/audio); this writes the header first,
// its lengths "unknown" (0xFFFFFFFF, as streaming writers do), and each read's samples at once.
#pragma once
#include <cstdint>
#include <string>

namespace st {

// Reads sample bytes (mu-law, or 8-bit linear) from in_fd until its end and writes them to out_fd
// as a WAV at `rate` as they come; where out_fd can seek (a file), the lengths are put right at the
// end. Returns the samples written. Throws st::Error naming in_name or out_name on a failed read or
// write, and on an input of no samples.
int64_t stream_wav(int in_fd, const std::string& in_name, int out_fd, const std::string& out_name, int rate,
                   bool linear);

// A sample in [-1, 1] as 16 bits, as libsndfile writes it with clipping (to 32 bits, rounded, then
// the top 16: floor(x * 32768) but for rounding at 2^-31), clamped to -32768 .. 32767.
int16_t pcm16(float x);

}  // namespace st
