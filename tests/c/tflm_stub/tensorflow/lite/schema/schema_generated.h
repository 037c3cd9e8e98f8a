// Minimal stand-in for TFLM's schema_generated.h, for a syntax check of the generated
// example (tests only). Signatures follow tensorflow/tflite-micro.
#pragma once
#include <cstddef>
#include <cstdint>

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef union TfLitePtrUnion {
  int8_t* int8;
  float* f;
  uint8_t* uint8;
} TfLitePtrUnion;

typedef struct TfLiteTensor {
  TfLitePtrUnion data;
} TfLiteTensor;

namespace tflite {
struct Model {
  uint32_t version() const { return 3; }
};
inline const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
}  // namespace tflite
