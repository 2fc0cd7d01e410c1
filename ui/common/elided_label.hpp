// ElidedLabel: a one-line QLabel that never widens its layout: when the text does not fit it is drawn
// elided ("…") and the whole text is available as the tooltip. text() returns the full text.
// Thread affinity: GUI thread.
#pragma once

#include <QLabel>

namespace lorafleet::ui {

class ElidedLabel : public QLabel {
    Q_OBJECT
public:
    explicit ElidedLabel(Qt::TextElideMode mode = Qt::ElideRight, QWidget* parent = nullptr);
    explicit ElidedLabel(const QString& text, Qt::TextElideMode mode = Qt::ElideRight,
                         QWidget* parent = nullptr);

    void setElidedText(const QString& text); // sets the text and a tooltip holding it
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    Qt::TextElideMode m_mode;
};

} // namespace lorafleet::ui
