// The heavy torch headers every dispatcher-level source (csrc/autograd/*.cpp) parses, compiled
// once into a GCC precompiled header by fastgen/_build.py and force-included (-include): each
// of those sources then compiles in about a third of the time. Nothing here is fastgen's own.
#pragma once

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
