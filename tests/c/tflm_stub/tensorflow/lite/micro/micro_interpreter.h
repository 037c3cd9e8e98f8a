// Minimal stand-in for TFLM's MicroInterpreter (tests only). The members the exported
// example uses, with the signatures of tensorflow/tflite-micro's micro_interpreter.h: the
// constructor (model, op resolver, arena, arena size; TFLM adds defaulted parameters),
// AllocateTensors() and Invoke() returning TfLiteStatus, input(size_t) and output(size_t)
// returning TfLiteTensor*, and TFLITE_SCHEMA_VERSION, which TFLM defines in this header.
#pragma once
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

#define TFLITE_SCHEMA_VERSION (3)

namespace tflite {
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver,
                   uint8_t* tensor_arena, size_t tensor_arena_size)
      : model_(model), resolver_(op_resolver), arena_(tensor_arena),
        size_(tensor_arena_size) {}
  TfLiteStatus AllocateTensors() { return kTfLiteOk; }
  TfLiteStatus Invoke() { return kTfLiteOk; }
  TfLiteTensor* input(size_t) { return &tensor_; }
  TfLiteTensor* output(size_t) { return &tensor_; }

 private:
  const Model* model_;
  const MicroOpResolver& resolver_;
  uint8_t* arena_;
  size_t size_;
  TfLiteTensor tensor_;
};
}  // namespace tflite
