// Helpers shared by the console's tests: settings isolated from the operator's, synthetic adapter
// folders written by the engine's generator, fake fleet entries for model tests, waiting for imports.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/synth/synthetic_fleet.hpp"
#include "ui/fleet/fleet_entry.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/workspace/session.hpp"

#include <QCoreApplication>
#include <QImage>
#include <QSet>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QtTest/QtTest>

#include <filesystem>
#include <fstream>

namespace lorafleet::test {

// QSettings and QStandardPaths of a test never touch the operator's configuration.
inline void isolateSettings() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("LoRA Fleet Tests"));
    QCoreApplication::setApplicationName(QStringLiteral("lorafleet-tests"));
}

// `count` tinystories-656k adapters (q_proj, v_proj, rank 4) under `dir`, named adapter-0000 ...
inline synth::synth_result writeTinyFleet(const QString& dir, int count, std::uint64_t seed = 11) {
    synth::synth_options options;
    options.out_dir = dir.toStdString();
    options.adapters = count;
    options.geometry = *io::geometry_preset("tinystories-656k");
    options.modules = {"q_proj", "v_proj"};
    options.rank = 4;
    options.alpha = 8.0;
    options.clusters = 2;
    options.seed = seed;
    options.threads = 1;
    return synth::write_synthetic_fleet(options);
}

// Copies adapter folder `from` to `to` with adapter_model.safetensors cut to half its size.
inline void writeTruncatedCopy(const QString& from, const QString& to) {
    namespace fs = std::filesystem;
    fs::create_directories(to.toStdString());
    fs::copy_file(fs::path(from.toStdString()) / "adapter_config.json",
                  fs::path(to.toStdString()) / "adapter_config.json");
    const fs::path weights = fs::path(from.toStdString()) / "adapter_model.safetensors";
    const fs::path target = fs::path(to.toStdString()) / "adapter_model.safetensors";
    fs::copy_file(weights, target);
    fs::resize_file(target, fs::file_size(weights) / 2);
}

// Waits until the session's import queue is empty (true) or `timeoutMs` passed (false).
inline bool waitForImport(ui::Session& session, int timeoutMs = 120'000) {
    if (!session.isBusy()) return true;
    QSignalSpy idle(session.importer(), &ui::ImportController::idle);
    return idle.wait(timeoutMs) || !session.isBusy();
}

// Distinct colours of `image` sampled on a `step`-pixel grid, counted up to `cap`: a blank or
// single-colour rendering has one or two, a chart or a populated view many.
inline int distinctColours(const QImage& image, int step = 3, int cap = 200) {
    QSet<QRgb> colours;
    for (int y = 0; y < image.height(); y += step)
        for (int x = 0; x < image.width(); x += step) {
            colours.insert(image.pixel(x, y));
            if (colours.size() >= cap) return cap;
        }
    return int(colours.size());
}

} // namespace lorafleet::test
