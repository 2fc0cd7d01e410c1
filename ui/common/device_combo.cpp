// DeviceCombo (see device_combo.hpp).
#include "ui/common/device_combo.hpp"

#include "engine/backend/device_registry.hpp"
#include "ui/common/text_format.hpp"

#include <QStandardItemModel>

namespace lorafleet::ui {

namespace {

const backend::device_info* firstGpu() {
    const auto& report = backend::devices();
    return report.available && !report.devices.empty() ? &report.devices.front() : nullptr;
}

QString gpuName(const backend::device_info& d) {
    return QString::fromStdString(d.name);
}

} // namespace

DeviceCombo::DeviceCombo(QWidget* parent) : QComboBox(parent) {
    setObjectName(QStringLiteral("deviceChoice"));
    addItem(QString(), QStringLiteral("auto"));
    addItem(QString(), QStringLiteral("cpu"));
    addItem(QString(), QStringLiteral("cuda"));
    // The reason of a missing GPU can be long: the combo keeps its width, the popup shows it whole.
    setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    setMinimumContentsLength(22);
    connect(this, &QComboBox::currentIndexChanged, this,
            [this](int index) { setToolTip(itemData(index, Qt::ToolTipRole).toString()); });
    refresh();
}

bool DeviceCombo::gpuUsable() {
    return firstGpu() != nullptr;
}

QString DeviceCombo::noGpuReason() {
    if (gpuUsable()) return QString();
    const auto& report = backend::devices();
    if (!report.compiled) return QStringLiteral("this build has no CUDA backend");
    return oneLine(QString::fromStdString(report.reason));
}

QString DeviceCombo::device() const {
    return currentData().toString();
}

bool DeviceCombo::setDevice(const QString& device) {
    const int index = findData(device);
    setCurrentIndex(index < 0 ? kAuto : index); // a disabled item can still be made current
    return index >= 0;
}

void DeviceCombo::refresh(FreeMemory free) {
    const backend::device_info* gpu = firstGpu();
    if (gpu && free == FreeMemory::AskFree) {
        if (const auto m = backend::device_memory_now(gpu->index)) {
            m_freeBytes = qint64(m->free_bytes);
            m_totalBytes = qint64(m->total_bytes);
        }
    }
    const QString why = noGpuReason();
    setItemText(kAuto,
                gpu ? tr("Automatic (GPU: %1)").arg(gpuName(*gpu)) : tr("Automatic (CPU: no CUDA device)"));
    setItemData(
        kAuto,
        gpu ? tr("The GPU when one is usable, else the CPU: here the GPU")
            : tr("The GPU when one is usable, else the CPU: here the CPU (no CUDA device: %1)").arg(why),
        Qt::ToolTipRole);
    setItemText(kCpu, tr("CPU"));
    setItemData(kCpu, tr("The host's cores (OpenBLAS and the engine's threads)"), Qt::ToolTipRole);
    QString gpuText;
    if (!gpu)
        gpuText = tr("GPU: no CUDA device: %1").arg(why);
    else if (m_freeBytes >= 0)
        gpuText = tr("GPU: %1, %2 free").arg(gpuName(*gpu), formatBytes(quint64(m_freeBytes)));
    else
        gpuText = tr("GPU: %1, %2").arg(gpuName(*gpu), formatBytes(quint64(gpu->memory_mb) << 20));
    setItemText(kGpu, gpuText);
    setItemData(kGpu, gpu ? description() : tr("No CUDA device: %1").arg(why), Qt::ToolTipRole);
    if (auto* items = qobject_cast<QStandardItemModel*>(model()))
        items->item(kGpu)->setEnabled(gpu != nullptr);
    setToolTip(itemData(currentIndex(), Qt::ToolTipRole).toString());
}

QString DeviceCombo::description() const {
    const backend::device_info* gpu = firstGpu();
    if (!gpu) return tr("GPU unavailable: %1").arg(noGpuReason());
    const QString memory =
        m_freeBytes >= 0
            ? tr("%1 free of %2").arg(formatBytes(quint64(m_freeBytes)), formatBytes(quint64(m_totalBytes)))
            : formatBytes(quint64(gpu->memory_mb) << 20);
    return tr("GPU: %1, %2 (compute %3.%4)").arg(gpuName(*gpu), memory).arg(gpu->cc_major).arg(gpu->cc_minor);
}

} // namespace lorafleet::ui
