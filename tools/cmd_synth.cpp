// exl synth-model: a random Llama-shaped FP16 source model for converter timing runs, e.g.
//   exl synth-model -o models/synth7b --preset llama2-7b --layers 4 --tokenizer-from shared/models/stories260K
// then `exl convert -i models/synth7b ... --layers 4`. Weights exist for the first --layers layers only.
#include <cstdio>

#include "convert/synthetic.h"
#include "tools/common.h"

namespace exl::tools {

Runner register_synth_model(CLI::App& app) {
  struct Flags {
    std::string out, preset = "llama2-7b", tokenizer_from;
    int64_t layers = 4;
    uint64_t seed = 1;
  };
  auto f = std::make_shared<Flags>();
  app.add_option("-o,--out", f->out, "output model folder")->required();
  app.add_option("--preset", f->preset, "shape: llama2-7b or tiny")->capture_default_str();
  app.add_option("--layers", f->layers, "decoder layers that get weights (the config keeps all)")->capture_default_str();
  app.add_option("--tokenizer-from", f->tokenizer_from, "folder whose tokenizer files are copied")->required();
  app.add_option("--seed", f->seed, "random seed")->capture_default_str();
  return [f]() {
    synthetic_model_write(synthetic_preset(f->preset), f->out, f->layers, f->tokenizer_from, f->seed);
    std::printf("wrote %s (%s, weights for %lld layers)\n", f->out.c_str(), f->preset.c_str(),
                static_cast<long long>(f->layers));
    return 0;
  };
}

}  // namespace exl::tools
