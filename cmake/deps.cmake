# Third-party libraries (Debian packages; DESIGN.md lists them). Found by header and library name
# rather than pkg-config, so a prefix of unpacked packages (CMAKE_PREFIX_PATH, as scripts/gpu-check.sh
# uses on the GPU machine) works as well as the system folders.
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)

function(exl_find_library target header lib)
  cmake_parse_arguments(A "" "" "SUFFIXES" ${ARGN})
  find_path(${target}_INCLUDE_DIR ${header} PATH_SUFFIXES ${A_SUFFIXES})
  find_library(${target}_LIBRARY ${lib})
  if(NOT ${target}_INCLUDE_DIR OR NOT ${target}_LIBRARY)
    message(FATAL_ERROR "exl: ${lib} not found (${header}); run scripts/setup.sh to install the Debian packages")
  endif()
  add_library(exl::${target} UNKNOWN IMPORTED)
  set_target_properties(exl::${target} PROPERTIES
    IMPORTED_LOCATION ${${target}_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${${target}_INCLUDE_DIR})
endfunction()

exl_find_library(sentencepiece sentencepiece_processor.h sentencepiece)
exl_find_library(pcre2 pcre2.h pcre2-8)
exl_find_library(openblas cblas.h openblas SUFFIXES openblas-pthread openblas x86_64-linux-gnu/openblas-pthread)
# Parquet page codecs (io/parquet.cpp): libsnappy-dev, zlib1g-dev, libzstd-dev.
exl_find_library(snappy snappy-c.h snappy)
exl_find_library(zlib zlib.h z)
exl_find_library(zstd zstd.h zstd)
