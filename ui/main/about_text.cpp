// About box content (see about_text.hpp).
#include "ui/main/about_text.hpp"

#include "engine/backend/device_registry.hpp"

#include <QRegularExpression>
#include <qcustomplot.h>

extern "C" char* openblas_get_config(void); // OpenBLAS's own API (cblas.h of libopenblas)

#ifndef LORAFLEET_SENTENCEPIECE_VERSION
#define LORAFLEET_SENTENCEPIECE_VERSION "unknown"
#endif

namespace lorafleet::ui {

QString openBlasVersion() {
    // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64": the first two words.
    const QString config = QString::fromLatin1(openblas_get_config()).simplified();
    const auto match = QRegularExpression(QStringLiteral("^OpenBLAS\\s+(\\S+)")).match(config);
    return match.hasMatch() ? match.captured(1) : config;
}

QString sentencePieceVersion() {
    return QStringLiteral(LORAFLEET_SENTENCEPIECE_VERSION);
}

QString cudaRuntimeText() {
    const auto& cuda = backend::devices();
    if (!cuda.compiled) return QStringLiteral("not built with CUDA");
    const QString runtime = QStringLiteral("CUDA runtime %1.%2")
                                .arg(cuda.runtime_version / 1000)
                                .arg((cuda.runtime_version % 1000) / 10);
    if (cuda.available) return QStringLiteral("%1, %2 device(s)").arg(runtime).arg(cuda.devices.size());
    return QStringLiteral("%1, no usable GPU: %2").arg(runtime, QString::fromStdString(cuda.reason));
}

QString aboutText() {
    return QStringLiteral("<h3>LoRA Fleet %1</h3>"
                          "<p>Compress then serve thousands of LoRA adapters.</p>"
                          "<table cellspacing='4'>"
                          "<tr><td>Qt</td><td>%2 (built with %3)</td></tr>"
                          "<tr><td>QCustomPlot</td><td>%4</td></tr>"
                          "<tr><td>CUDA</td><td>%5</td></tr>"
                          "<tr><td>OpenBLAS</td><td>%6</td></tr>"
                          "<tr><td>sentencepiece</td><td>%7</td></tr>"
                          "</table>")
        .arg(QStringLiteral(LORAFLEET_VERSION), QString::fromLatin1(qVersion()),
             QStringLiteral(QT_VERSION_STR), QStringLiteral(QCUSTOMPLOT_VERSION_STR),
             cudaRuntimeText().toHtmlEscaped(), openBlasVersion().toHtmlEscaped(),
             sentencePieceVersion().toHtmlEscaped());
}

} // namespace lorafleet::ui
