//! Fuzz target: decode an image (PNG, JPEG, BMP) with the runtime's limits, then fit it to a
//! small uint8 and a float32 input tensor with each resampling filter and fit.
#![no_main]

use edgetpu::cpu::{QuantParams, TensorInfo};
use edgetpu::model::TensorType;
use edgetpu::vision::{open_image_bytes, preprocess::prepare, Filter, Fit, Preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let Ok(image) = open_image_bytes(bytes) else { return };
    // Keep a run short: the limits allow camera-sized images, the fuzzer needs none of them.
    if u64::from(image.width()) * u64::from(image.height()) > 1 << 20 {
        return;
    }
    let filters = [Filter::PilLanczos, Filter::Lanczos3, Filter::PilBilinear, Filter::Triangle, Filter::Nearest];
    let pre = Preprocess {
        fit: if selector & 0x80 != 0 { Fit::Letterbox } else { Fit::Stretch },
        filter: filters[(selector & 7) as usize % filters.len()],
        ..Preprocess::default()
    };
    let side = 1 + (selector as usize >> 3 & 0xf);
    for (dtype, quant) in [
        (TensorType::UINT8, Some(QuantParams { scale: vec![1.0 / 128.0], zero_point: vec![128], axis: 0 })),
        (TensorType::FLOAT32, None),
    ] {
        let info = TensorInfo { index: 0, name: "input".into(), shape: vec![1, side, side + 1, 3], dtype, quant };
        let _ = prepare(&image, &info, &pre);
    }
});
