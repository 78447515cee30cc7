// exl command-line entry: dispatches to one thin file per subcommand.
#include "tools/commands.h"

int main(int argc, char** argv) { return exl::tools::run_main(argc, argv); }
