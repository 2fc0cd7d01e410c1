// EtaSmoother (see eta_smoother.hpp).
#include "ui/common/eta_smoother.hpp"

#include <algorithm>
#include <cmath>

namespace lorafleet::ui {

void EtaSmoother::reset() {
    *this = EtaSmoother();
}

void EtaSmoother::add(double seconds, double fraction) {
    m_fraction = std::max(m_fraction, std::clamp(fraction, 0.0, 1.0));
    const double dt = seconds - m_lastT;
    if (!(dt > 0)) return;
    if (seconds < kTau || !(m_rate > 0)) {
        m_rate = m_fraction / seconds; // the average so far
    } else {
        const double sample = (m_fraction - m_lastF) / dt;
        const double weight = 1 - std::exp(-dt / kTau);
        m_rate = (1 - weight) * m_rate + weight * sample;
    }
    m_lastT = seconds;
    m_lastF = m_fraction;
}

double EtaSmoother::eta() const {
    if (m_lastT < kWarmup || !(m_rate > 0)) return -1;
    if (m_fraction >= 1) return 0;
    return (1 - m_fraction) / m_rate;
}

} // namespace lorafleet::ui
