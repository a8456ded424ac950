// PluginField parsing shared by the TensorRT 10 (IPluginV3) and 8.5 (IPluginV2DynamicExt)
// wrappers. Attribute names are those tegra_ai/plugin/graphsurgeon.py writes.
#pragma once

#include <cstring>
#include <vector>

#include "NvInfer.h"
#include "preprocess_plugin_core.h"

namespace tegra_ai {

inline std::vector<nvinfer1::PluginField> fieldNames() {
    using nvinfer1::PluginField;
    using nvinfer1::PluginFieldType;
    return {
        PluginField("height", nullptr, PluginFieldType::kINT32, 1),
        PluginField("width", nullptr, PluginFieldType::kINT32, 1),
        PluginField("input_format", nullptr, PluginFieldType::kINT32, 1),
        PluginField("channel_order", nullptr, PluginFieldType::kINT32, 1),
        PluginField("resize", nullptr, PluginFieldType::kINT32, 1),
        PluginField("layout", nullptr, PluginFieldType::kINT32, 1),
        PluginField("dtype", nullptr, PluginFieldType::kINT32, 1),
        PluginField("pad_value", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("mean", nullptr, PluginFieldType::kFLOAT32, 3),
        PluginField("std", nullptr, PluginFieldType::kFLOAT32, 3),
    };
}

// The fields this plugin's parameters serialize to (V3) or are created from.
// Returns false on an unknown name or a wrong type/length.
inline bool paramsFromFields(nvinfer1::PluginFieldCollection const* fc, PreprocessPluginParams* p) {
    using nvinfer1::PluginFieldType;
    if (fc == nullptr) return false;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        nvinfer1::PluginField const& f = fc->fields[i];
        char const* n = f.name;
        int32_t* ints[] = {&p->height, &p->width, &p->input_format, &p->channel_order, &p->resize, &p->layout, &p->dtype};
        char const* intNames[] = {"height", "width", "input_format", "channel_order", "resize", "layout", "dtype"};
        bool matched = false;
        for (int k = 0; k < 7; ++k) {
            if (std::strcmp(n, intNames[k]) == 0) {
                if (f.type != PluginFieldType::kINT32 || f.length != 1) return false;
                *ints[k] = *static_cast<int32_t const*>(f.data);
                matched = true;
            }
        }
        if (matched) continue;
        if (std::strcmp(n, "pad_value") == 0 || std::strcmp(n, "scale") == 0) {
            if (f.type != PluginFieldType::kFLOAT32 || f.length != 1) return false;
            (n[0] == 'p' ? p->pad_value : p->scale) = *static_cast<float const*>(f.data);
        } else if (std::strcmp(n, "mean") == 0 || std::strcmp(n, "std") == 0) {
            // gray output has one value; colour three
            if (f.type != PluginFieldType::kFLOAT32 || f.length < 1 || f.length > 3) return false;
            float* dst = n[0] == 'm' ? p->mean : p->std;
            for (int32_t c = 0; c < f.length; ++c) dst[c] = static_cast<float const*>(f.data)[c];
        } else if (std::strcmp(n, "plugin_version") != 0 && std::strcmp(n, "plugin_namespace") != 0) {
            return false;
        }
    }
    return validate(*p) == nullptr;
}

// Fields describing `p`, pointing into `p` (which must outlive them).
inline std::vector<nvinfer1::PluginField> fieldsOf(PreprocessPluginParams& p) {
    using nvinfer1::PluginField;
    using nvinfer1::PluginFieldType;
    int32_t const c = outputChannels(p);
    return {
        PluginField("height", &p.height, PluginFieldType::kINT32, 1),
        PluginField("width", &p.width, PluginFieldType::kINT32, 1),
        PluginField("input_format", &p.input_format, PluginFieldType::kINT32, 1),
        PluginField("channel_order", &p.channel_order, PluginFieldType::kINT32, 1),
        PluginField("resize", &p.resize, PluginFieldType::kINT32, 1),
        PluginField("layout", &p.layout, PluginFieldType::kINT32, 1),
        PluginField("dtype", &p.dtype, PluginFieldType::kINT32, 1),
        PluginField("pad_value", &p.pad_value, PluginFieldType::kFLOAT32, 1),
        PluginField("scale", &p.scale, PluginFieldType::kFLOAT32, 1),
        PluginField("mean", p.mean, PluginFieldType::kFLOAT32, c),
        PluginField("std", p.std, PluginFieldType::kFLOAT32, c),
    };
}

inline nvinfer1::DataType outputType(PreprocessPluginParams const& p) {
    return p.dtype == kFLOAT16 ? nvinfer1::DataType::kHALF : nvinfer1::DataType::kFLOAT;
}

}  // namespace tegra_ai
