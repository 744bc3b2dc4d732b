#include "testkit/testkit.hpp"
