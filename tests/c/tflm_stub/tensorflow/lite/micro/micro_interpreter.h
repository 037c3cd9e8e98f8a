// Minimal stand-in for TFLM's MicroInterpreter (tests only).
#pragma once
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

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
