// The shared look of the console's QCustomPlot charts (Clusters, Errors, Serve): fonts relative to the
// application font, dotted light grid, titles as a text row above the axis rect.
// Thread affinity: GUI thread.
#pragma once

#include <QFont>
#include <QString>

class QCPAxis;
class QCustomPlot;

namespace lorafleet::ui {

// The application font, `pointSizeDelta` points larger (never below `minimumPointSize`).
QFont plotFont(int pointSizeDelta = 0, int minimumPointSize = 8);
// Axis label and tick fonts (relative to the application font) and the dotted grid.
void styleAxis(QCPAxis* axis, const QString& label, int labelDelta = 1, int tickDelta = 0);
// Inserts a title row above the plot's main axis rect (object name "title", for tests).
void addTitle(QCustomPlot* plot, const QString& title);

} // namespace lorafleet::ui
