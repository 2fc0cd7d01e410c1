// SwiGLU, the Llama MLP's gate: silu(gate) * up elementwise, silu(x) = x / (1 + exp(-x)) in float,
// exactly the CPU forward pass's expression (engine/serve/model/transformer.cpp). Shapes: gate, up, out [n];
// out may alias gate. Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cmath>

namespace lorafleet::kernels {

LORAFLEET_HD float silu(float x) {
    return x / (1.0f + expf(-x));
}

LORAFLEET_HD float swiglu_element(float gate, float up) {
    return silu(gate) * up;
}

LORAFLEET_HD void swiglu_row(const float* gate, const float* up, float* out, int n) {
    for (int i = 0; i < n; ++i)
        out[i] = swiglu_element(gate[i], up[i]);
}

} // namespace lorafleet::kernels
