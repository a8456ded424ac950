// TensorRT 10+: the preprocessing plugin as IPluginV3 (core, build and runtime
// capabilities) with an IPluginCreatorV3One creator. Input: uint8 images; output:
// the network input (see preprocess_plugin_core.h for shapes).
#include <exception>
#include <memory>
#include <vector>

#include "NvInfer.h"
#include "plugin_fields.h"
#include "preprocess_plugin_core.h"

#if NV_TENSORRT_MAJOR < 10
#error "plugin_v3.cpp needs TensorRT 10 or newer; build plugin_v2.cpp for TensorRT 8.5/8.6"
#endif

using namespace nvinfer1;

namespace tegra_ai {

class PreprocessPluginV3 : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
public:
    explicit PreprocessPluginV3(PreprocessPluginParams const& p) : mParams(p) { initFields(); }
    PreprocessPluginV3(PreprocessPluginV3 const& other) : mParams(other.mParams) { initFields(); }

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        if (type == PluginCapabilityType::kBUILD) return static_cast<IPluginV3OneBuild*>(this);
        if (type == PluginCapabilityType::kRUNTIME) return static_cast<IPluginV3OneRuntime*>(this);
        return static_cast<IPluginV3OneCore*>(this);
    }
    IPluginV3* clone() noexcept override {
        try {
            return new PreprocessPluginV3(*this);
        } catch (std::exception const&) {
            return nullptr;
        }
    }

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return 1; }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
                            int32_t nbOutputs) noexcept override {
        return (nbInputs == 1 && nbOutputs == 1) ? 0 : -1;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override {
        if (inOut[pos].desc.format != TensorFormat::kLINEAR) return false;
        if (pos == 0) return inOut[0].desc.type == DataType::kUINT8;
        return inOut[pos].desc.type == outputType(mParams);
    }

    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override {
        if (nbOutputs != 1) return -1;
        outputTypes[0] = outputType(mParams);
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
                            int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
                            IExprBuilder& exprBuilder) noexcept override {
        if (nbInputs != 1 || nbOutputs != 1 || inputs[0].nbDims < 3) return -1;
        int64_t dims[4];
        outputDims(mParams, 0, dims);
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];
        for (int i = 1; i < 4; ++i) outputs[0].d[i] = exprBuilder.constant(dims[i]);
        return 0;
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override {
        return workspaceSize(inputs[0].max.d[0]);
    }

    // IPluginV3OneRuntime
    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
                    void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
        Dims const& d = inputDesc[0].dims;
        int64_t dims[8];
        for (int32_t i = 0; i < d.nbDims && i < 8; ++i) dims[i] = d.d[i];
        int32_t srcH, srcW;
        if (!sourceSize(mParams, d.nbDims, dims, &srcH, &srcW)) return -1;
        return enqueue_(inputs[0], (int32_t)dims[0], srcH, srcW, outputs[0], workspace, stream);
    }

    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override {
        return 0;
    }

    IPluginV3* attachToContext(IPluginResourceContext* context) noexcept override { return clone(); }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &mFC; }

private:
    int32_t enqueue_(void const* src, int32_t batch, int32_t srcH, int32_t srcW, void* out, void* ws,
                     cudaStream_t stream) {
        return tegra_ai::enqueue(mParams, src, batch, srcH, srcW, out, ws, stream) == 0 ? 0 : -1;
    }

    void initFields() {
        mFields = fieldsOf(mParams);
        mFC.nbFields = (int32_t)mFields.size();
        mFC.fields = mFields.data();
    }

    PreprocessPluginParams mParams;
    std::vector<PluginField> mFields;
    PluginFieldCollection mFC{};
};

class PreprocessPluginCreatorV3 : public IPluginCreatorV3One {
public:
    PreprocessPluginCreatorV3() : mNames(fieldNames()) {
        mFC.nbFields = (int32_t)mNames.size();
        mFC.fields = mNames.data();
    }
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mFC; }

    // Build and runtime phases both pass the fields (at run time, those of
    // getFieldsToSerialize), so one path creates the plugin.
    IPluginV3* createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept override {
        try {
            PreprocessPluginParams p;
            if (!paramsFromFields(fc, &p)) return nullptr;
            return new PreprocessPluginV3(p);
        } catch (std::exception const&) {
            return nullptr;
        }
    }

private:
    std::vector<PluginField> mNames;
    PluginFieldCollection mFC{};
};

}  // namespace tegra_ai

namespace {
tegra_ai::PreprocessPluginCreatorV3 gCreator;
nvinfer1::IPluginCreatorInterface* gCreators[] = {&gCreator};
}  // namespace

// IPluginRegistry::loadLibrary / trtexec --dynamicPlugins entry points.
extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    nbCreators = 1;
    return gCreators;
}

// For a library loaded with dlopen/ctypes: register with the global registry once.
extern "C" bool initTegraAIPlugins() {
    static bool const registered = getPluginRegistry()->registerCreator(gCreator, tegra_ai::kPluginNamespace);
    return registered;
}
