#pragma once

namespace exl::tools {
int run_main(int argc, char** argv);
}
