// The JSON that a model file carries in its metadata: the config (checked, then laid out as
// parameters, as a model is built from it) and st-train's recipe.
#include "config.h"
#include "error.h"
#include "io/json.h"
#include "model.h"
#include "train.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const nlohmann::json j = st::json_parse(text, "input");
        try {
            const st::Config c = st::config_from_json(j);
            if (!st::config_check(c).empty()) abort();  // config_from_json promises a usable config
            // A model's layout is made before its tensors are checked against the file: keep it small.
            if (c.n_layer <= 64) st::param_layout(c);
        } catch (const st::Error&) {}
        st::recipe_from_json(j);
    } catch (const st::Error&) {}
    return 0;
}
