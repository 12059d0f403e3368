// The fuzz targets' way to reach parsers that read a named file: the input goes into a file of this
// process (in /dev/shm when there is one, so that no disk is touched) whose name ends as the format
// needs (".zst"), and the parser reads it by name as the programs do.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

inline std::string fuzz_input_file(const uint8_t* data, size_t size, const char* suffix) {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    const std::string path = std::string(dir) + "/st-fuzz-" + std::to_string(getpid()) + suffix;
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) abort();
    for (size_t done = 0; done < size;) {
        const ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) abort();
        done += size_t(n);
    }
    close(fd);
    return path;
}
