# Which LibTorch saelab builds against. This file and core/torch_version.h are the only places that
# know the difference between the two.
#
#   SAELAB_LIBTORCH=wheel   LibTorch 2.x: the C++ library and headers inside the torch wheel of the
#                           peers' environment (python/peers.lock pins torch 2.11.0, the version
#                           the lent GPU machines carry). Found from SAELAB_PEERS_PYTHON without
#                           importing torch, or from SAELAB_TORCH_WHEEL_DIR (the torch package folder).
#   SAELAB_LIBTORCH=debian  Debian 12's libtorch-dev 1.13.1 (find_package(Torch)).
#
# The wheel is a CUDA build. Its own TorchConfig.cmake looks for a CUDA toolkit, so the CPU build
# links the CPU half directly (libtorch_cpu, libc10); libtorch_cpu finds the CUDA runtime libraries
# it names from the nvidia wheels through its own RUNPATH.
set(SAELAB_LIBTORCH "wheel" CACHE STRING "LibTorch to build against: wheel (2.x, the default) or debian (1.13)")
set_property(CACHE SAELAB_LIBTORCH PROPERTY STRINGS wheel debian)
set(SAELAB_PEERS_PYTHON "" CACHE FILEPATH "python of the peers' environment (scripts/python-env)")
set(SAELAB_MODELS_PYTHON "" CACHE FILEPATH "python of the model families' environment (scripts/python-env models)")
set(SAELAB_TORCH_WHEEL_DIR "" CACHE PATH "the torch package folder of a torch wheel (found from SAELAB_PEERS_PYTHON when empty)")

if(SAELAB_LIBTORCH STREQUAL "debian")
  find_package(Torch REQUIRED)
  set(SAELAB_FMT fmt::fmt)
  if(Torch_VERSION AND NOT Torch_VERSION VERSION_LESS 2)
    message(FATAL_ERROR "SAELAB_LIBTORCH=debian found LibTorch ${Torch_VERSION} at ${Torch_DIR}, not Debian's 1.13")
  endif()
elseif(SAELAB_LIBTORCH STREQUAL "wheel")
  set(_dir "${SAELAB_TORCH_WHEEL_DIR}")
  if(NOT _dir)
    if(NOT SAELAB_PEERS_PYTHON OR NOT EXISTS "${SAELAB_PEERS_PYTHON}")
      message(FATAL_ERROR "SAELAB_LIBTORCH=wheel needs the torch wheel of the peers' environment, and "
                          "SAELAB_PEERS_PYTHON ('${SAELAB_PEERS_PYTHON}') is not its python. Run scripts/setup, or pass "
                          "-DSAELAB_PEERS_PYTHON=$(scripts/python-env)/bin/python (or -DSAELAB_LIBTORCH=debian)")
    endif()
    execute_process(
      COMMAND "${SAELAB_PEERS_PYTHON}" -c
              "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torch').origin))"
      OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "${SAELAB_PEERS_PYTHON} has no torch package (exit ${_rc})")
    endif()
  endif()
  foreach(_f include/torch/script.h lib/libtorch_cpu.so lib/libc10.so version.py)
    if(NOT EXISTS "${_dir}/${_f}")
      message(FATAL_ERROR "${_dir} is not a torch wheel's package folder: ${_f} is missing")
    endif()
  endforeach()
  file(STRINGS "${_dir}/version.py" _v REGEX "^__version__")
  string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" Torch_VERSION "${_v}")
  if(Torch_VERSION VERSION_LESS 2)
    message(FATAL_ERROR "${_dir} holds torch ${Torch_VERSION}; SAELAB_LIBTORCH=wheel is for LibTorch 2.x")
  endif()
  add_library(saelab_libtorch INTERFACE)
  target_include_directories(saelab_libtorch SYSTEM INTERFACE "${_dir}/include" "${_dir}/include/torch/csrc/api/include")
  # The wheels are built with the C++11 ABI since torch 2.7, as Debian's g++ builds by default.
  target_compile_definitions(saelab_libtorch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
  target_link_libraries(saelab_libtorch INTERFACE "${_dir}/lib/libtorch_cpu.so" "${_dir}/lib/libc10.so")
  set(TORCH_LIBRARIES saelab_libtorch)
  # The wheel's include folder carries fmt 12's headers, found before Debian's (fmt 9): compile fmt
  # from the headers that are found (header-only) instead of linking Debian's libfmt against them.
  set(SAELAB_FMT fmt::fmt-header-only)  # the targets of find_package(fmt), in CMakeLists.txt
  message(STATUS "LibTorch ${Torch_VERSION} from the torch wheel at ${_dir}")
else()
  message(FATAL_ERROR "SAELAB_LIBTORCH must be wheel or debian (got '${SAELAB_LIBTORCH}')")
endif()
