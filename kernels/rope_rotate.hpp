// Rotary position embedding (RoPE) of one head, in the engine's convention (engine/serve/model/transformer.cpp,
// HuggingFace's rotate_half layout): element i pairs with element i + head_dim/2, and pair i turns by the
// angle position * inv_freq[i], inv_freq[i] = float(rope_theta^(-2i / head_dim)). The angle, its cosine
// and sine are computed in double and rounded to float, as the CPU does, so the tables agree to the last
// bit wherever the device's double cos/sin agree with the host's (both are correctly rounded to within an
// ulp of a double, far below float resolution). Shapes: v [head_dim] rotated in place; cos, sin [head_dim/2].
// head_dim must be even (the CPU transformer refuses odd ones). Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cmath>

namespace lorafleet::kernels {

// inv_freq[i] for i < head_dim / 2, as float (the CPU stores it as float and widens it again).
LORAFLEET_HD float rope_inv_freq(double rope_theta, int i, int head_dim) {
    return static_cast<float>(pow(rope_theta, -2.0 * i / head_dim));
}

// cos and sin of the angle of pair i at `position`.
LORAFLEET_HD void rope_angle(int position, float inv_freq, float* cos_out, float* sin_out) {
    const double angle = double(position) * double(inv_freq);
    *cos_out = static_cast<float>(cos(angle));
    *sin_out = static_cast<float>(sin(angle));
}

// Pair i of one head: (a, b) = (v[i], v[i + half]) -> (a c - b s, b c + a s).
LORAFLEET_HD void rope_rotate_pair(float* v, int half, int i, float c, float s) {
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
}

LORAFLEET_HD void rope_rotate_head(float* v, int head_dim, const float* cos, const float* sin) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i)
        rope_rotate_pair(v, half, i, cos[i], sin[i]);
}

} // namespace lorafleet::kernels
