// TensorRT 8.5/8.6 (JetPack 5 and 6.0): the preprocessing plugin as
// IPluginV2DynamicExt with an IPluginCreator. Same kernel, parameters and
// serialization (preprocess_plugin_core) as the IPluginV3 build.
#include <exception>
#include <string>
#include <vector>

#include "NvInfer.h"
#include "plugin_fields.h"
#include "preprocess_plugin_core.h"

using namespace nvinfer1;

namespace tegra_ai {

class PreprocessPluginV2 : public IPluginV2DynamicExt {
public:
    explicit PreprocessPluginV2(PreprocessPluginParams const& p) : mParams(p) {}

    // IPluginV2DynamicExt
    IPluginV2DynamicExt* clone() const noexcept override {
        try {
            auto* p = new PreprocessPluginV2(mParams);
            p->setPluginNamespace(mNamespace.c_str());
            return p;
        } catch (std::exception const&) {
            return nullptr;
        }
    }

    DimsExprs getOutputDimensions(int32_t outputIndex, DimsExprs const* inputs, int32_t nbInputs,
                                  IExprBuilder& exprBuilder) noexcept override {
        DimsExprs out{};
        int64_t dims[4];
        outputDims(mParams, 0, dims);
        out.nbDims = 4;
        out.d[0] = inputs[0].d[0];
        for (int i = 1; i < 4; ++i) out.d[i] = exprBuilder.constant((int32_t)dims[i]);
        return out;
    }

    bool supportsFormatCombination(int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override {
        if (inOut[pos].format != TensorFormat::kLINEAR) return false;
        if (pos == 0) return inOut[0].type == DataType::kUINT8;
        return inOut[pos].type == outputType(mParams);
    }

    void configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
                         int32_t nbOutputs) noexcept override {}

    size_t getWorkspaceSize(PluginTensorDesc const* inputs, int32_t nbInputs, PluginTensorDesc const* outputs,
                            int32_t nbOutputs) const noexcept override {
        return workspaceSize(inputs[0].dims.d[0]);
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
                    void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
        Dims const& d = inputDesc[0].dims;
        int64_t dims[8];
        for (int32_t i = 0; i < d.nbDims && i < 8; ++i) dims[i] = d.d[i];
        int32_t srcH, srcW;
        if (!sourceSize(mParams, d.nbDims, dims, &srcH, &srcW)) return -1;
        return tegra_ai::enqueue(mParams, inputs[0], (int32_t)dims[0], srcH, srcW, outputs[0], workspace, stream) == 0
            ? 0 : -1;
    }

    // IPluginV2Ext
    DataType getOutputDataType(int32_t index, DataType const* inputTypes, int32_t nbInputs) const noexcept override {
        return outputType(mParams);
    }

    // IPluginV2
    char const* getPluginType() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t initialize() noexcept override { return 0; }
    void terminate() noexcept override {}
    size_t getSerializationSize() const noexcept override { return serializedSize(); }
    void serialize(void* buffer) const noexcept override { tegra_ai::serialize(mParams, buffer); }
    void destroy() noexcept override { delete this; }
    void setPluginNamespace(char const* ns) noexcept override { mNamespace = ns ? ns : ""; }
    char const* getPluginNamespace() const noexcept override { return mNamespace.c_str(); }

private:
    PreprocessPluginParams mParams;
    std::string mNamespace{kPluginNamespace};
};

class PreprocessPluginCreatorV2 : public IPluginCreator {
public:
    PreprocessPluginCreatorV2() : mNames(fieldNames()) {
        mFC.nbFields = (int32_t)mNames.size();
        mFC.fields = mNames.data();
    }
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mFC; }

    IPluginV2* createPlugin(char const* name, PluginFieldCollection const* fc) noexcept override {
        try {
            PreprocessPluginParams p;
            if (!paramsFromFields(fc, &p)) return nullptr;
            auto* plugin = new PreprocessPluginV2(p);
            plugin->setPluginNamespace(mNamespace.c_str());
            return plugin;
        } catch (std::exception const&) {
            return nullptr;
        }
    }

    IPluginV2* deserializePlugin(char const* name, void const* serialData, size_t serialLength) noexcept override {
        try {
            PreprocessPluginParams p;
            if (!deserialize(serialData, serialLength, &p)) return nullptr;
            auto* plugin = new PreprocessPluginV2(p);
            plugin->setPluginNamespace(mNamespace.c_str());
            return plugin;
        } catch (std::exception const&) {
            return nullptr;
        }
    }

    void setPluginNamespace(char const* ns) noexcept override { mNamespace = ns ? ns : ""; }
    char const* getPluginNamespace() const noexcept override { return mNamespace.c_str(); }

private:
    std::vector<PluginField> mNames;
    PluginFieldCollection mFC{};
    std::string mNamespace{kPluginNamespace};
};

}  // namespace tegra_ai

namespace {
tegra_ai::PreprocessPluginCreatorV2 gCreator;
nvinfer1::IPluginCreator* gCreators[] = {&gCreator};
}  // namespace

// IPluginRegistry::loadLibrary / trtexec --plugins entry point (TensorRT 8.5+).
extern "C" nvinfer1::IPluginCreator* const* getPluginCreators(int32_t& nbCreators) {
    nbCreators = 1;
    return gCreators;
}

// For a library loaded with dlopen/ctypes: register with the global registry once.
extern "C" bool initTegraAIPlugins() {
    static bool const registered = getPluginRegistry()->registerCreator(gCreator, tegra_ai::kPluginNamespace);
    return registered;
}
