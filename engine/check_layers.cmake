# Include layering check: `cmake -DROOT=<source dir> [-DSTAMP=<file>] -P engine/check_layers.cmake`.
# Scans every `#include "..."` line of engine/, ui/, app/ and kernels/ and fails the build with
#   file:line: engine/io may not include engine/serve (engine/io may include: engine/core)
# for an include that goes the wrong way. Run as a build step (engine/CMakeLists.txt: target
# lorafleet_layers, a stamp that depends on every scanned source), so lorafleet_engine, lorafleet_ui and
# lorafleet-cli do not build while a wrong-way include exists. tests/engine/core/test_layers runs it on a
# planted tree. Touches STAMP (when given) on success.
#
# A file's part is its folder: engine/<part>/ (engine/serve/** and engine/backend/ are one part each,
# engine/backend/cuda/ is its own part), ui/, app/, kernels/. Includes inside one part are always fine;
# angle-bracket includes (system, Qt, nlohmann) and quoted includes outside these folders are not checked.
# The allowed graph (a part may include the parts listed, nothing else; it is acyclic, lowest first):
#
#   part                 may include                                  what it is
#   engine/core          -                                            error types, float16, sha256, RNG
#   engine/io            core                                         safetensors, PEFT, HF config, files
#   engine/resources     core io                                      files shipped beside the program
#   engine/synth         core io                                      synthetic fleets
#   engine/compress      core io                                      joint compression (no device code)
#   engine/http          core                                         HTTP/1.1 over POSIX sockets
#   engine/bank          core io compress                             the compressed bank
#   engine/backend       core io compress bank                        the device layer: device_choice,
#                                                                     device registry, device_error,
#                                                                     device_adapters, compression backend
#                                                                     selection; declares what cuda/ defines
#   engine/analysis      core io resources synth compress bank backend   what the console's views draw
#   engine/serve         core io resources synth compress bank backend   tokenizer, model, adapters,
#                                                                     scheduling, metrics, session
#   engine/quality       serve's + analysis serve                     adapter quality checks
#   engine/api           quality's + quality http                     the OpenAI-compatible API
#   engine/backend/cuda  core io compress bank backend serve kernels  the CUDA glue: the ONLY engine part
#                                                                     that includes kernels/; nobody
#                                                                     includes it (lower parts declare its
#                                                                     entry points, the link joins them)
#   kernels              -                                            CUDA kernels, plain C++ launchers
#   ui                   every engine part except backend/cuda        never app/, never kernels/
#   app                  every engine part except backend/cuda, ui    never kernels/
#
# An engine folder that is not in this table fails the check: a new part states where it sits here.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED ROOT)
    message(FATAL_ERROR "check_layers.cmake: pass -DROOT=<source dir>")
endif()

set(allowed_engine/core "")
set(allowed_engine/io engine/core)
set(allowed_engine/resources engine/core engine/io)
set(allowed_engine/synth engine/core engine/io)
set(allowed_engine/compress engine/core engine/io)
set(allowed_engine/http engine/core)
set(allowed_engine/bank engine/core engine/io engine/compress)
set(allowed_engine/backend engine/core engine/io engine/compress engine/bank)
set(allowed_engine/analysis engine/core engine/io engine/resources engine/synth engine/compress engine/bank engine/backend)
set(allowed_engine/serve engine/core engine/io engine/resources engine/synth engine/compress engine/bank engine/backend)
set(allowed_engine/quality ${allowed_engine/serve} engine/analysis engine/serve)
set(allowed_engine/api ${allowed_engine/quality} engine/quality engine/http)
set(allowed_engine/backend/cuda engine/core engine/io engine/compress engine/bank engine/backend engine/serve
    kernels)
set(allowed_kernels "")
set(_all_engine engine/core engine/io engine/resources engine/synth engine/compress engine/http engine/bank engine/backend
    engine/analysis engine/serve engine/quality engine/api)
set(allowed_ui ${_all_engine})
set(allowed_app ${_all_engine} ui)
set(_known ${_all_engine} engine/backend/cuda kernels ui app)

# The part of a path relative to ROOT (or of an include path), or "" when it is in none of the scanned
# folders.
function(layer_of path out)
    set(_part "")
    if(path MATCHES "^engine/backend/cuda/")
        set(_part engine/backend/cuda)
    elseif(path MATCHES "^engine/([A-Za-z0-9_]+)/")
        set(_part engine/${CMAKE_MATCH_1})
    elseif(path MATCHES "^(kernels|ui|app)/")
        set(_part ${CMAKE_MATCH_1})
    endif()
    set(${out} "${_part}" PARENT_SCOPE)
endfunction()

# The 1-based line of the first `#include "<inc>"` in `file`.
function(line_of file inc out)
    file(STRINGS ${file} _lines)
    set(_n 0)
    set(_found 0)
    string(REPLACE "." "\\." _re "${inc}")
    foreach(_l IN LISTS _lines)
        math(EXPR _n "${_n} + 1")
        if(_l MATCHES "^[ \t]*#[ \t]*include[ \t]*\"${_re}\"")
            set(_found ${_n})
            break()
        endif()
    endforeach()
    set(${out} ${_found} PARENT_SCOPE)
endfunction()

set(_files "")
foreach(_dir engine ui app kernels)
    file(GLOB_RECURSE _f RELATIVE ${ROOT} ${ROOT}/${_dir}/*.cpp ${ROOT}/${_dir}/*.hpp ${ROOT}/${_dir}/*.h
         ${ROOT}/${_dir}/*.cu ${ROOT}/${_dir}/*.cuh)
    list(APPEND _files ${_f})
endforeach()

set(_errors "")
set(_count 0)
foreach(_rel IN LISTS _files)
    layer_of(${_rel} _from)
    if(_from STREQUAL "")
        continue() # a file directly under engine/ (none today) belongs to no part
    endif()
    if(NOT _from IN_LIST _known)
        list(APPEND _errors "${ROOT}/${_rel}:1: ${_from} is not in the layer table of engine/check_layers.cmake")
        continue()
    endif()
    file(STRINGS ${ROOT}/${_rel} _includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"[^\"]+\"")
    foreach(_line IN LISTS _includes)
        string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*$" "\\1" _inc "${_line}")
        layer_of(${_inc} _to)
        if(_to STREQUAL "" OR _to STREQUAL _from)
            continue()
        endif()
        if(NOT _to IN_LIST allowed_${_from})
            line_of(${ROOT}/${_rel} ${_inc} _at)
            string(REPLACE ";" " " _may "${allowed_${_from}}")
            if(_may STREQUAL "")
                set(_may "nothing outside itself")
            endif()
            list(APPEND _errors
                 "${ROOT}/${_rel}:${_at}: ${_from} may not include ${_to} (\"${_inc}\", layers: ${_from} may include: ${_may})")
        endif()
    endforeach()
    math(EXPR _count "${_count} + 1")
endforeach()

if(_errors)
    list(LENGTH _errors _n)
    foreach(_e IN LISTS _errors)
        message("${_e}") # verbatim on stderr, one line each (file:line: first, for editors)
    endforeach()
    message(FATAL_ERROR "${_n} wrong-way include(s); the allowed graph is in engine/check_layers.cmake")
endif()
if(DEFINED STAMP AND NOT STAMP STREQUAL "")
    file(TOUCH ${STAMP})
endif()
message(STATUS "include layers: ${_count} files, no wrong-way include")
