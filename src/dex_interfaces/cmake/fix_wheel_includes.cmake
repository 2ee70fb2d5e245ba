# fix_wheel_includes.cmake -- pass as -DCMAKE_PROJECT_INCLUDE=<this file>.
#
# The ROS 2 PyPI wheels export CMake targets (<pkg>__rosidl_generator_py) whose
# INTERFACE_INCLUDE_DIRECTORIES name include dirs of the machine that built the wheels, e.g.
#   /opt/python/cp311-cp311/include/python3.11
#   /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
# CMake refuses to generate with non-existent include dirs on imported targets. This file defers
# (cmake_language(DEFER)) to the end of configuration of the top-level directory, walks the
# IMPORTED_TARGETS of every directory and rewrites exactly those entries to
#   DEX_PYTHON_INCLUDE_DIR  (this interpreter's sysconfig "include" path) and
#   DEX_NUMPY_INCLUDE_DIR   (numpy.get_include()),
# both passed in with -D by build_in_venv.py (queried from Python3_EXECUTABLE if absent).
#
# On a normal ROS install no such path occurs and nothing is changed.

if(DEFINED _DEX_FIX_WHEEL_INCLUDES_ARMED)
  return()  # CMAKE_PROJECT_INCLUDE runs after every project() call; arm the deferral once.
endif()
set(_DEX_FIX_WHEEL_INCLUDES_ARMED TRUE)

if(CMAKE_VERSION VERSION_LESS 3.21)
  message(STATUS "fix_wheel_includes: CMake ${CMAKE_VERSION} < 3.21 (no IMPORTED_TARGETS); skipped")
  return()
endif()

# Wheel-builder prefix: manylinux images keep their interpreters under /opt/python/cpXY-cpXY*/.
set(DEX_WHEEL_BUILDER_PREFIX_REGEX "^/opt/python/cp[0-9]+-cp[0-9]+[a-z]*/"
  CACHE STRING "Regex of include-dir prefixes baked into the ROS wheels that must be rewritten")

function(_dex_query_python_include out_var code)
  if(NOT Python3_EXECUTABLE)
    set(${out_var} "" PARENT_SCOPE)
    return()
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "${code}"
    OUTPUT_VARIABLE _out
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc
    ERROR_QUIET)
  if(_rc EQUAL 0)
    set(${out_var} "${_out}" PARENT_SCOPE)
  else()
    set(${out_var} "" PARENT_SCOPE)
  endif()
endfunction()

# Returns in out_var the replacement for one include dir (unchanged if it is not a wheel path).
function(_dex_map_include_dir out_var dir)
  set(_new "${dir}")
  if(dir MATCHES "${DEX_WHEEL_BUILDER_PREFIX_REGEX}" AND NOT EXISTS "${dir}")
    if(dir MATCHES "/numpy/")
      set(_new "${DEX_NUMPY_INCLUDE_DIR}")
    elseif(dir MATCHES "/include/python[0-9]")
      set(_new "${DEX_PYTHON_INCLUDE_DIR}")
    endif()
    if(NOT _new)
      message(WARNING "fix_wheel_includes: no replacement known for '${dir}' "
        "(set DEX_PYTHON_INCLUDE_DIR / DEX_NUMPY_INCLUDE_DIR)")
      set(_new "${dir}")
    endif()
  endif()
  set(${out_var} "${_new}" PARENT_SCOPE)
endfunction()

function(_dex_fix_targets_in_directory directory count_var)
  set(_count 0)
  get_property(_targets DIRECTORY "${directory}" PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    foreach(_prop INTERFACE_INCLUDE_DIRECTORIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES)
      get_target_property(_dirs ${_target} ${_prop})
      if(NOT _dirs)
        continue()
      endif()
      set(_fixed "")
      set(_changed FALSE)
      foreach(_dir IN LISTS _dirs)
        _dex_map_include_dir(_mapped "${_dir}")
        if(NOT _mapped STREQUAL _dir)
          set(_changed TRUE)
        endif()
        list(APPEND _fixed "${_mapped}")
      endforeach()
      if(_changed)
        list(REMOVE_DUPLICATES _fixed)
        set_property(TARGET ${_target} PROPERTY ${_prop} "${_fixed}")
        math(EXPR _count "${_count} + 1")
      endif()
    endforeach()
  endforeach()
  get_property(_subdirs DIRECTORY "${directory}" PROPERTY SUBDIRECTORIES)
  foreach(_sub IN LISTS _subdirs)
    _dex_fix_targets_in_directory("${_sub}" _sub_count)
    math(EXPR _count "${_count} + ${_sub_count}")
  endforeach()
  set(${count_var} ${_count} PARENT_SCOPE)
endfunction()

function(_dex_fix_wheel_includes)
  if(NOT DEX_PYTHON_INCLUDE_DIR)
    _dex_query_python_include(DEX_PYTHON_INCLUDE_DIR
      "import sysconfig; print(sysconfig.get_paths()['include'])")
  endif()
  if(NOT DEX_NUMPY_INCLUDE_DIR)
    _dex_query_python_include(DEX_NUMPY_INCLUDE_DIR "import numpy; print(numpy.get_include())")
  endif()
  _dex_fix_targets_in_directory("${CMAKE_SOURCE_DIR}" _count)
  if(_count GREATER 0)
    message(STATUS "fix_wheel_includes: rewrote wheel-builder include dirs on ${_count} "
      "imported target properties (python: ${DEX_PYTHON_INCLUDE_DIR}; numpy: ${DEX_NUMPY_INCLUDE_DIR})")
  endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _dex_fix_wheel_includes)
