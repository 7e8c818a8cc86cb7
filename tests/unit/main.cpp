// The one translation unit that holds Catch2's main (Catch2 v2: slow to compile, so alone).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
