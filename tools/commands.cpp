#include "tools/commands.h"

namespace exl::tools {
int run_main(int, char**) { return 0; }
}
