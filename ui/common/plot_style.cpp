#include "ui/common/plot_style.hpp"

#include <qcustomplot.h>

#include <algorithm>

namespace lorafleet::ui {

QFont plotFont(int pointSizeDelta, int minimumPointSize) {
    QFont f;
    f.setPointSize(std::max(minimumPointSize, f.pointSize() + pointSizeDelta));
    return f;
}

void styleAxis(QCPAxis* axis, const QString& label, int labelDelta, int tickDelta) {
    axis->setLabel(label);
    axis->setLabelFont(plotFont(labelDelta));
    axis->setTickLabelFont(plotFont(tickDelta));
    axis->grid()->setPen(QPen(QColor(220, 220, 220), 1, Qt::DotLine));
}

void addTitle(QCustomPlot* plot, const QString& title) {
    plot->plotLayout()->insertRow(0);
    auto* text = new QCPTextElement(plot, title, plotFont(1));
    text->setObjectName(QStringLiteral("title"));
    plot->plotLayout()->addElement(0, 0, text);
}

} // namespace lorafleet::ui
