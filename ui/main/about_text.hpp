// The About box's content: the application version and the versions of what it runs on (Qt, QCustomPlot,
// the CUDA runtime or why there is none, OpenBLAS, sentencepiece). A function so tests can check it
// without a modal dialog. GUI thread (probes the CUDA runtime).
#pragma once

#include <QString>

namespace lorafleet::ui {

QString aboutText(); // rich text
QString openBlasVersion();
QString sentencePieceVersion();
QString cudaRuntimeText(); // "CUDA runtime 12.4, 1 device" / "not built with CUDA" / "CUDA runtime 13.0, no
                           // usable GPU: ..."

} // namespace lorafleet::ui
