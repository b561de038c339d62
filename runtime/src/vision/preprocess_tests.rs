use super::*;
use crate::cpu::QuantParams;
use image::{GrayImage, Rgb, RgbImage};

fn input(shape: &[usize], dtype: TensorType, quant: Option<(f32, i32)>) -> TensorInfo {
    TensorInfo {
        index: 0,
        name: "input".into(),
        shape: shape.to_vec(),
        dtype,
        quant: quant.map(|(s, z)| QuantParams { scale: vec![s], zero_point: vec![z], axis: 0 }),
    }
}

/// A w x h image whose pixel (x, y) is (10x + y, 100 + y, 255 - x).
fn ramp(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| Rgb([(10 * x + y) as u8, (100 + y) as u8, (255 - x) as u8])))
}

#[test]
fn same_size_uint8_is_the_raw_pixels() {
    let img = ramp(4, 2);
    let (bytes, t) =
        prepare(&img, &input(&[1, 2, 4, 3], TensorType::UINT8, Some((0.0078125, 128))), &Preprocess::default())
            .unwrap();
    let mut want = Vec::new();
    for y in 0..2u8 {
        for x in 0..4u8 {
            want.extend_from_slice(&[10 * x + y, 100 + y, 255 - x]);
        }
    }
    assert_eq!(bytes, want);
    assert_eq!(t, Transform::identity(4, 2));
}

#[test]
fn grayscale_inputs_use_pillow_luma() {
    let img = ramp(3, 1);
    let (bytes, _) = prepare(&img, &input(&[1, 1, 3, 1], TensorType::UINT8, None), &Preprocess::default()).unwrap();
    let want: Vec<u8> = (0..3u8).map(|x| pil::rgb_to_luma(10 * x, 100, 255 - x)).collect();
    assert_eq!(bytes, want);
    // [1, H, W] is a grayscale input too (H, W >= 8); a Luma8 image is used as is.
    let px: Vec<u8> = (0..64).collect();
    let g = DynamicImage::ImageLuma8(GrayImage::from_raw(8, 8, px.clone()).unwrap());
    let (bytes, _) = prepare(&g, &input(&[1, 8, 8], TensorType::UINT8, None), &Preprocess::default()).unwrap();
    assert_eq!(bytes, px);
    assert!(InputGeometry::of(&input(&[1, 1917, 4], TensorType::UINT8, None)).is_err());
}

#[test]
fn int8_and_float_values() {
    let img = DynamicImage::ImageLuma8(GrayImage::from_raw(4, 1, vec![0, 1, 128, 255]).unwrap());
    let i8in = input(&[1, 1, 4, 1], TensorType::INT8, Some((1.0 / 255.0, -128)));
    let (bytes, _) = prepare(&img, &i8in, &Preprocess::default()).unwrap();
    assert_eq!(bytes.iter().map(|&b| b as i8).collect::<Vec<_>>(), vec![-128, -127, 0, 127]);
    // q = round(v / scale) + zp, clamped: v = (p - 127.5) / 127.5, scale 1/128, zp 0.
    let i8in = input(&[1, 1, 4, 1], TensorType::INT8, Some((1.0 / 128.0, 0)));
    let pre = Preprocess { normalize: Normalize::MeanStd { mean: 127.5, std: 127.5 }, ..Preprocess::default() };
    let (bytes, _) = prepare(&img, &i8in, &pre).unwrap();
    // 128 -> v = 0.5 / 127.5 -> 0.502 / scale -> 1.
    assert_eq!(bytes.iter().map(|&b| b as i8).collect::<Vec<_>>(), vec![-128, -127, 1, 127]);
    let u8in = input(&[1, 1, 4, 1], TensorType::UINT8, Some((2.0, 10)));
    let pre = Preprocess { normalize: Normalize::MeanStd { mean: 0.0, std: 1.0 }, ..Preprocess::default() };
    let (bytes, _) = prepare(&img, &u8in, &pre).unwrap();
    assert_eq!(bytes, vec![10, 11, 74, 138]); // 0.5 rounds away from zero; 127.5 -> 128 + 10
    let f = input(&[1, 1, 4, 1], TensorType::FLOAT32, None);
    let (bytes, _) = prepare(&img, &f, &Preprocess::default()).unwrap();
    let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(v, vec![-1.0, -126.5 / 127.5, 0.5 / 127.5, 1.0]);
    // Normalising into a tensor without quantization is an error, not garbage.
    let pre = Preprocess { normalize: Normalize::MeanStd { mean: 0.0, std: 1.0 }, ..Preprocess::default() };
    assert!(prepare(&img, &input(&[1, 1, 4, 1], TensorType::UINT8, None), &pre).is_err());
}

#[test]
fn letterbox_pads_and_maps_back() {
    // 8x4 image into a 4x4 input: scaled by 0.5 to 4x2, centred at rows 1..3.
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 4, Rgb([200, 100, 50])));
    let pre = Preprocess { fit: Fit::Letterbox, pad: [1, 2, 3], ..Preprocess::default() };
    let (bytes, t) = prepare(&img, &input(&[1, 4, 4, 3], TensorType::UINT8, None), &pre).unwrap();
    for y in 0..4 {
        for x in 0..4 {
            let px = &bytes[(y * 4 + x) * 3..][..3];
            let want: &[u8] = if (1..3).contains(&y) { &[200, 100, 50] } else { &[1, 2, 3] };
            assert_eq!(px, want, "({x}, {y})");
        }
    }
    assert_eq!((t.scale_x, t.scale_y, t.offset_x, t.offset_y), (0.5, 0.5, 0.0, 1.0));
    assert_eq!(t.to_image(0.0, 1.0), (0.0, 0.0));
    assert_eq!(t.to_image(4.0, 3.0), (8.0, 4.0));
    assert_eq!(t.to_input(8.0, 4.0), (4.0, 3.0));
    // A normalised box covering the content maps to the whole image; one in the padding clamps.
    assert_eq!(t.normalized_to_image(0.0, 0.25), (0.0, 0.0));
    assert_eq!(t.normalized_to_image(1.0, 0.75), (8.0, 4.0));
    assert_eq!(t.normalized_to_image(0.5, 0.0), (4.0, 0.0));

    // A tall image pads left and right.
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 9, Rgb([9, 9, 9])));
    let (_, t) = prepare(&img, &input(&[1, 3, 3, 3], TensorType::UINT8, None), &pre).unwrap();
    assert_eq!((t.scale_x, t.scale_y, t.offset_x, t.offset_y), (1.0 / 3.0, 1.0 / 3.0, 1.0, 0.0));
}

#[test]
fn center_crop_takes_the_middle() {
    let img = ramp(8, 4);
    let pre = Preprocess { fit: Fit::CenterCrop, ..Preprocess::default() };
    let (bytes, t) = prepare(&img, &input(&[1, 4, 4, 3], TensorType::UINT8, None), &pre).unwrap();
    let mut want = Vec::new();
    for y in 0..4u8 {
        for x in 2..6u8 {
            want.extend_from_slice(&[10 * x + y, 100 + y, 255 - x]);
        }
    }
    assert_eq!(bytes, want);
    assert_eq!((t.scale_x, t.offset_x, t.offset_y), (1.0, -2.0, 0.0));
    assert_eq!(t.to_image(0.0, 0.0), (2.0, 0.0));
    assert_eq!(t.normalized_to_image(1.0, 1.0), (6.0, 4.0));
}

#[test]
fn stretch_resizes_with_each_filter() {
    let img = ramp(16, 10);
    let info = input(&[1, 5, 8, 3], TensorType::UINT8, None);
    for filter in [Filter::Lanczos3, Filter::PilLanczos, Filter::PilBilinear, Filter::Triangle, Filter::Nearest] {
        let (bytes, t) = prepare(&img, &info, &Preprocess { filter, ..Preprocess::default() }).unwrap();
        assert_eq!(bytes.len(), 5 * 8 * 3);
        assert_eq!((t.scale_x, t.scale_y), (0.5, 0.5));
        // The green channel only depends on y (100 + y): each output row is constant.
        for y in 0..5 {
            let g: Vec<u8> = (0..8).map(|x| bytes[(y * 8 + x) * 3 + 1]).collect();
            assert!(g.iter().all(|&v| v == g[0]), "{filter:?} row {y}: {g:?}");
            assert!((100..110).contains(&g[0]), "{filter:?}: {g:?}");
        }
    }
}

#[test]
fn geometry_and_input_search() {
    let a = input(&[1, 8, 8, 320], TensorType::UINT8, None);
    let b = input(&[1, 256, 256, 3], TensorType::UINT8, None);
    assert!(InputGeometry::of(&a).is_err());
    assert_eq!(find_image_input(&[&a, &b]).unwrap(), 1);
    assert!(find_image_input(&[&a]).unwrap_err().to_string().contains("no image input"));
    assert!(InputGeometry::of(&input(&[2, 4, 4, 3], TensorType::UINT8, None)).is_err());
    assert!(InputGeometry::of(&input(&[1, 4, 4, 3], TensorType::INT32, None)).is_err());
    assert_eq!("letterbox".parse::<Fit>().unwrap(), Fit::Letterbox);
    assert_eq!("pil-lanczos".parse::<Filter>().unwrap(), Filter::PilLanczos);
    assert!("x".parse::<Fit>().is_err());
}
