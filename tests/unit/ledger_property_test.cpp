#include "tests/unit/fixture.h"
