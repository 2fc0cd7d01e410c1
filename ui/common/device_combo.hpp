// DeviceCombo: the console's one device picker (the Compress panel, the Serve tab), in the engine's one
// device vocabulary (engine/backend/device_choice.hpp): each item's data is "auto", "cpu" or "cuda", the
// words the engine parses. The texts come from the device registry (engine/backend/device_registry.hpp,
// probed once per process):
//   Automatic (GPU: NVIDIA H200)        or  Automatic (CPU: no CUDA device)
//   CPU
//   GPU: NVIDIA H200, 139.2 GiB free    or  GPU: no CUDA device: <the registry's reason>  (disabled)
// The GPU item of a machine without a usable device stays in the list, disabled, with the reason as its
// text and tooltip: a device saved on a GPU machine can still be set (setDevice), and a start then fails
// with the engine's own error. Free memory is asked of the runtime only by refresh(AskFree): that creates
// the device's CUDA context in this process, which a view does when the device is about to be used (the
// Serve tab when shown), not at startup; otherwise the item shows the device's total memory.
// description() is the one-line summary for under the combo. Thread affinity: GUI thread.
#pragma once

#include <QComboBox>

namespace lorafleet::ui {

class DeviceCombo : public QComboBox {
    Q_OBJECT
public:
    enum class FreeMemory { NotAsked, AskFree };
    enum Item { kAuto = 0, kCpu = 1, kGpu = 2 }; // item indices

    explicit DeviceCombo(QWidget* parent = nullptr);

    QString device() const; // "auto", "cpu" or "cuda"
    // Selects `device` ("auto", "cpu", "cuda"; the GPU item even while disabled); anything else selects
    // Automatic. Returns whether `device` was one of the three.
    bool setDevice(const QString& device);
    // Rebuilds the item texts; AskFree also asks the runtime for the GPU's free memory now.
    void refresh(FreeMemory free = FreeMemory::NotAsked);

    static bool gpuUsable(); // the registry found a usable CUDA device
    // "GPU: NVIDIA H200, 140.4 GiB (compute 9.0)", "GPU: NVIDIA H200, 139.2 GiB free of 140.4 GiB (compute
    // 9.0)" once free memory was asked, or "GPU unavailable: <why>".
    QString description() const;
    // Why there is no usable GPU ("" when there is one): the registry's reason, one line.
    static QString noGpuReason();

private:
    qint64 m_freeBytes = -1, m_totalBytes = -1; // from the runtime (refresh(AskFree)); -1: not asked
};

} // namespace lorafleet::ui
