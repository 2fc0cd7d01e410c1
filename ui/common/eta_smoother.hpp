// EtaSmoother: a steady "time left" for a long job from its progress fraction. For the first kTau
// seconds the rate is the job's average so far (fraction / elapsed); after that an exponentially weighted
// mean with time constant kTau over the samples, so a fast or slow stretch (one big module, a clustering
// pass) moves the estimate gradually instead of making it jump (7.1 s -> 10.1 s -> 5.2 s).
// ETA = (1 - fraction) / rate; unknown before kWarmup seconds or without progress. Pure value type, any
// thread (one owner).
#pragma once

namespace lorafleet::ui {

class EtaSmoother {
public:
    static constexpr double kTau = 5.0;    // s, time constant of the rate's moving mean
    static constexpr double kWarmup = 1.0; // s of progress before the first estimate

    void reset();
    // `seconds`: time since the job started (monotonic, > 0); `fraction` in [0, 1], non-decreasing.
    void add(double seconds, double fraction);
    // Seconds left, or < 0 while unknown.
    double eta() const;

private:
    double m_lastT = 0, m_lastF = 0;
    double m_rate = 0; // fraction per second
    double m_fraction = 0;
};

} // namespace lorafleet::ui
