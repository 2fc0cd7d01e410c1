// Where the Serve tab finds its bundled material: the demo model (resources/models/tinystories-656k) and
// the load generator's prompts (resources/prompts/sonnets.txt, paragraphs separated by blank lines).
// Looked up by engine/resources/bundled_resources.hpp (the same lookup as the CLI): $LORAFLEET_RESOURCES,
// PREFIX/share/lorafleet beside an installed executable, a `resources` folder in the executable's folder
// or any folder above it, then the configured source tree. Pure functions, any thread.
#pragma once

#include <QString>
#include <QStringList>

namespace lorafleet::ui {

// The folder holding models/ and prompts/, or "" when none of the places above has it.
QString bundledResourcesDir();

// The bundled demo model folder, or "" when it is not found.
QString demoModelDir();
// "" when the demo model is found, else a sentence listing every place that was searched.
QString demoModelMissingReason();

// The bundled sonnets file, or "" when it is not found.
QString sonnetsPath();

// The paragraphs of a prompts file (blank-line separated; one per line when it has no blank line).
// Throws lorafleet::io_error when the file cannot be read, validation_error when it holds no text.
QStringList readPromptFile(const QString& path);

} // namespace lorafleet::ui
