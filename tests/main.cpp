// The unit-test runner: every tests/test_*.cpp links into one Catch2 binary.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
