// Minimal stand-in for TFLM's MicroMutableOpResolver (tests only): the Add* methods the
// exporter may emit, with TFLM's names and signatures (a class template on
// `unsigned int tOpCount` deriving from MicroOpResolver, default-constructible, each Add*
// callable without arguments and returning TfLiteStatus; TFLM gives AddFullyConnected and
// AddSoftmax a defaulted registration parameter).
#pragma once
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {
class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() {}
};

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddAveragePool2D() { return Add(); }
  TfLiteStatus AddConv2D() { return Add(); }
  TfLiteStatus AddDequantize() { return Add(); }
  TfLiteStatus AddFullyConnected() { return Add(); }
  TfLiteStatus AddLogistic() { return Add(); }
  TfLiteStatus AddMaxPool2D() { return Add(); }
  TfLiteStatus AddPack() { return Add(); }
  TfLiteStatus AddQuantize() { return Add(); }
  TfLiteStatus AddRelu() { return Add(); }
  TfLiteStatus AddRelu6() { return Add(); }
  TfLiteStatus AddReshape() { return Add(); }
  TfLiteStatus AddShape() { return Add(); }
  TfLiteStatus AddSoftmax() { return Add(); }
  TfLiteStatus AddStridedSlice() { return Add(); }
  TfLiteStatus AddTanh() { return Add(); }

 private:
  TfLiteStatus Add() { return n_++ < tOpCount ? kTfLiteOk : kTfLiteError; }
  unsigned int n_ = 0;
};
}  // namespace tflite
