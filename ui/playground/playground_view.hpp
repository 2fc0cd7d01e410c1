// PlaygroundView: the console's Playground tab — try one adapter of the workspace. Top: the adapter (every
// adapter of the fleet and of the bank, by name), the model folder (the bundled demo model by default),
// max tokens, temperature, Run (Ctrl+Return) and Stop; the prompt. Below, side by side, the adapter's raw
// output (its imported PEFT folder), its compressed output (the workspace's bank) and the base model's,
// each streamed as it is generated with its token count and tokens/s; a column that cannot run says why
// (no bank yet, the adapter is not in the bank, no PEFT folder in the workspace). Once raw and compressed
// both finished greedy (temperature 0), the compressed text is highlighted from the first character where
// it differs from the raw one, and a line says at which token the two part (or that they are identical).
// All generation runs in a PlaygroundRunner (off the GUI thread, the Serve tab's engine).
// Thread affinity: GUI thread.
#pragma once

#include "ui/playground/playground_runner.hpp"

#include <QWidget>

#include <array>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QTextEdit;

namespace lorafleet::ui {

class Session;

class PlaygroundView : public QWidget {
    Q_OBJECT
public:
    explicit PlaygroundView(Session* session, QWidget* parent = nullptr);
    ~PlaygroundView() override;

    PlaygroundRunner* runner() const { return m_runner; }

    QStringList adapterNames() const; // the choices, in order
    bool setAdapter(const QString& name);
    QString currentAdapter() const; // the chosen adapter's name, "" for the base model only
    void setModelDir(const QString& dir);
    void setPrompt(const QString& text);
    void setMaxTokens(int n);
    void setTemperature(double t);

    QString outputText(PlaygroundColumn column) const;   // what the column shows
    QString columnStatus(PlaygroundColumn column) const; // its line under the text
    QString diffText() const;                            // the divergence line
    // The highlighted range of the compressed column: [start, end) characters; start -1 when none.
    std::pair<int, int> highlightedRange() const { return m_highlight; }
    QString statusText() const;

public slots:
    bool run(); // false (and the status says why) when it cannot start
    void stop();
    void refreshAdapters();

signals:
    void runFinished();

protected:
    void showEvent(QShowEvent* event) override;

private:
    struct Column {
        QLabel* title = nullptr;
        QTextEdit* text = nullptr;
        QLabel* status = nullptr;
    };
    void onText(PlaygroundColumn column, const QString& piece);
    void onColumnFinished(PlaygroundColumn column);
    void onFinished(bool ok, const QString& message);
    void updateColumnStatus(PlaygroundColumn column);
    void updateButtons();
    void showDiff();

    Session* m_session;
    PlaygroundRunner* m_runner;
    QComboBox* m_adapter = nullptr;
    QLineEdit* m_model = nullptr;
    QSpinBox* m_maxTokens = nullptr;
    QDoubleSpinBox* m_temperature = nullptr;
    QPushButton* m_run = nullptr;
    QPushButton* m_stop = nullptr;
    QPlainTextEdit* m_prompt = nullptr;
    QLabel* m_status = nullptr;
    QLabel* m_diff = nullptr;
    std::array<Column, kPlaygroundColumns> m_columns;
    std::array<QString, kPlaygroundColumns> m_unavailable; // why a column did not run ("" = it ran)
    std::pair<int, int> m_highlight{-1, -1};
    bool m_greedy = true;
};

} // namespace lorafleet::ui
