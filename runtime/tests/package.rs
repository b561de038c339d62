//! Decoding of the Edge TPU packages of the shared test data, checked against the values in
//! PROTOCOL.md §3.8-3.9 (decoded independently from the same files).

mod common;

use common::sha256_hex;
use edgetpu::package::{
    DataType, Description, DmaHint, ExecutableType, FieldOffset, Package, Position, ON_CHIP_MEMORY_BYTES,
};
use edgetpu::{ErrorKind, Model};

fn open(rel: &str) -> Model {
    Model::open(common::testdata().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn only_package(model: &Model) -> Package<'_> {
    let mut all = Package::all(model).unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn fo(desc: Description, position: Position, name: Option<&str>, offset_bit: usize) -> FieldOffset {
    FieldOffset { desc, position, batch: 0, name: name.map(str::to_string), offset_bit }
}

#[test]
fn mobilenet_v1_025_matches_protocol_3_8() {
    let model = open("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    assert_eq!(model.bytes().len(), 801_454);
    assert_eq!(sha256_hex(model.bytes()), "a4cb1e493346542248687939fbd7421ab92d74c58b1f0a0018b8f1bdddfcef7e");
    let pkg = only_package(&model);
    pkg.ensure_runnable().unwrap();
    assert_eq!(pkg.operator_index, 0);
    assert_eq!(pkg.options_offset, 980);
    assert_eq!(model.custom_options(&model.subgraphs()[0].operators[0]).unwrap().len(), 778_324);
    assert_eq!(pkg.offset, 988);
    assert_eq!(pkg.bytes.len(), 778_240);
    assert_eq!(sha256_hex(pkg.bytes), "695e8bade35b6e735a63b68d47b8089b5c29c6910fb208405eba98be5c0ed7ab");
    assert!(pkg.has_identifier);
    assert_eq!(pkg.options_version, Some(0));
    assert_eq!(pkg.chip_ids, vec![18]);
    assert_eq!(pkg.extra_packages, 0);
    assert_eq!(pkg.min_runtime_version, 12);
    assert_eq!(pkg.compiler_version, "cl/");
    assert_eq!(pkg.virtual_chip_id, 0);
    assert!(pkg.signature.is_empty());
    assert_eq!(pkg.executables.len(), 2);

    let main = pkg.main();
    assert_eq!(main.index, 0);
    assert_eq!(main.kind, ExecutableType::ExecutionOnly);
    assert_eq!(main.bytes.len(), 176_128);
    assert_eq!(main.offset, 988 + 598_016);
    assert_eq!(main.name, "model");
    assert_eq!(main.chip, "beagle");
    assert_eq!((main.batch_size, main.scratch_size_bytes), (1, 0));
    assert!(main.parameters.is_empty());
    assert_eq!(main.used_narrow_memory_bytes_per_tile, 8996);
    assert_eq!(main.parameter_caching_token, 0x6d14_6c3f_97d6_648c);
    assert_eq!((main.estimated_cycles, main.estimated_cycles_64bit), (0, 0));
    assert_eq!(main.bitstreams.len(), 1);
    let bs = &main.bitstreams[0];
    assert_eq!(bs.data.len(), 170_032);
    assert_eq!(sha256_hex(bs.data), "750130780818196c53854f45bc7ff0f24a1e950b5efba15012d7533437ad030a");
    let out = "MobilenetV1/Predictions/Reshape_1";
    use Description::*;
    use Position::*;
    assert_eq!(
        bs.field_offsets,
        vec![
            fo(Parameter, Lower32, None, 582),
            fo(Parameter, Upper32, None, 710),
            fo(Scratch, Lower32, None, 838),
            fo(Scratch, Upper32, None, 966),
            fo(InputActivation, Upper32, Some("input"), 8902),
            fo(InputActivation, Lower32, Some("input"), 9030),
            fo(OutputActivation, Upper32, Some(out), 1_339_462),
            fo(OutputActivation, Lower32, Some(out), 1_339_590),
        ]
    );
    assert!(main.dma_hints.fully_deterministic);
    assert_eq!(
        main.dma_hints.hints,
        vec![
            DmaHint::Instruction { chunk: 0 },
            DmaHint::Input { name: "input".into(), batch: 0, offset: 0, size: 49_152 },
            DmaHint::Output { name: out.into(), batch: 0, offset: 0, size: 1_008 },
            DmaHint::Interrupt { number: 0 },
        ]
    );
    let input = &main.input_layers[0];
    assert_eq!((input.name.as_str(), input.size_bytes), ("input", 49_152));
    assert_eq!((input.y_dim, input.x_dim, input.z_dim), (128, 128, 3));
    assert_eq!((input.data_type, input.zero_point, input.scale), (DataType::FixedPoint8, 128, 0.0078125));
    assert!(input.shape.is_none() && input.output.is_none());
    let output = &main.output_layers[0];
    assert_eq!((output.name.as_str(), output.size_bytes), (out, 1_008));
    assert_eq!((output.y_dim, output.x_dim, output.z_dim), (1, 1, 1001));
    assert_eq!((output.data_type, output.zero_point, output.scale), (DataType::FixedPoint8, 0, 0.00390625));
    assert_eq!(output.shape, Some(vec![(0, 0), (0, 1000)]));
    assert_eq!(output.actual_size_bytes(), 1001);
    assert!(!output.is_tiled());
    let layout = output.output.as_ref().unwrap().layout.as_ref().unwrap();
    assert_eq!(layout.y_coordinate_to_linear_tile_id_map, vec![0]);
    assert_eq!(layout.x_coordinate_to_linear_tile_id_map, vec![0]);
    assert_eq!(layout.linearized_tile_byte_offset, (0..16).map(|i| i * 64).collect::<Vec<_>>());
    assert_eq!(layout.x_coordinate_to_local_byte_offset, vec![0]);
    assert_eq!(layout.y_coordinate_to_local_y_offset, vec![0]);
    assert_eq!(layout.x_coordinate_to_local_y_row_size, vec![64]);
    assert!(output.output.as_ref().unwrap().shape_info.is_none());

    let pc = pkg.parameter_caching().unwrap();
    assert_eq!(pc.index, 1);
    assert_eq!(pc.kind, ExecutableType::ParameterCaching);
    assert_eq!(pc.bytes.len(), 585_728);
    assert_eq!(pc.offset, 988 + 8_192);
    assert_eq!(pc.name, "Unknown");
    assert_eq!(pc.batch_size, 1);
    assert_eq!(pc.parameter_caching_token, 0x6d14_6c3f_97d6_648c);
    assert_eq!(pc.used_narrow_memory_bytes_per_tile, 0);
    assert_eq!(pc.parameters.len(), 566_912);
    assert_eq!(pc.parameters_offset, 13_276);
    assert_eq!(sha256_hex(pc.parameters), "2597c89a4acc49a0b8ec6f93770d19908623548fb097394b4930856fa0c5cfd6");
    assert_eq!(pc.bitstreams.len(), 1);
    assert_eq!(pc.bitstreams[0].data.len(), 12_624);
    assert_eq!(sha256_hex(pc.bitstreams[0].data), "04e76431e6b64b8ec304d176deb6feff1c81c09a40e1f922ab039c9c3abc284b");
    assert_eq!(
        pc.bitstreams[0].field_offsets,
        vec![fo(Parameter, Lower32, None, 582), fo(Parameter, Upper32, None, 710)]
    );
    assert_eq!(
        pc.dma_hints.hints,
        vec![
            DmaHint::Instruction { chunk: 0 },
            DmaHint::Parameter { offset: 0, size: 566_912 },
            DmaHint::Interrupt { number: 0 }
        ]
    );

    assert_eq!(pkg.caching_token(), 0x6d14_6c3f_97d6_648c);
    assert_eq!(pkg.cached_parameter_bytes(), 566_912);
    assert_eq!(pkg.streamed_parameter_bytes(), 0);
    assert!(pkg.fits_on_chip());
    // Bitstreams and parameters are slices of the model's bytes, not copies.
    let file = model.bytes();
    assert_eq!(&file[pc.parameters_offset..pc.parameters_offset + pc.parameters.len()], pc.parameters);
    assert_eq!(pc.parameters.as_ptr(), file[13_276..].as_ptr());
    assert_eq!(bs.data.as_ptr(), file[bs.offset..].as_ptr());
}

#[test]
fn cached_and_streamed_parameters_match_protocol_3_9() {
    // (file, streamed bytes, cached bytes)
    let table: &[(&str, usize, usize)] = &[
        ("mobilenet_v1_0.5_160_quant_edgetpu.tflite", 0, 1_473_280),
        ("mobilenet_v1_0.75_192_quant_edgetpu.tflite", 0, 2_777_600),
        (
            "cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite",
            0,
            566_912,
        ),
        (
            "cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite",
            0,
            1_473_280,
        ),
        ("deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite", 0, 766_720),
        ("keras_lstm_mnist_ptq_edgetpu.tflite", 576, 43_968),
        ("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite", 0, 1_444_608),
        ("tools/split_concat_edgetpu.tflite", 0, 192),
    ];
    for &(file, streamed, cached) in table {
        let model = open(file);
        let pkg = only_package(&model);
        assert_eq!(pkg.streamed_parameter_bytes(), streamed, "{file}");
        assert_eq!(pkg.cached_parameter_bytes(), cached, "{file}");
        let kinds: Vec<_> = pkg.executables.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&ExecutableType::ExecutionOnly) && kinds.contains(&ExecutableType::ParameterCaching));
        pkg.ensure_runnable().unwrap();
    }
    // split_concat: the package's length prefix is 2 bytes wide (package at options offset 6).
    let model = open("tools/split_concat_edgetpu.tflite");
    let pkg = only_package(&model);
    assert_eq!(pkg.offset - pkg.options_offset, 6);
    assert_eq!(pkg.bytes.len(), 57_344);
    assert_eq!(pkg.min_runtime_version, 13);
    assert_eq!((pkg.main().input_layers.len(), pkg.main().output_layers.len()), (3, 5));
    // SSD pipeline segments: the largest cached blob of the test data.
    let seg = open("pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite");
    let biggest = Package::all(&seg).unwrap()[0].cached_parameter_bytes();
    assert!(biggest > 1_000_000 && biggest <= ON_CHIP_MEMORY_BYTES);
}

#[test]
fn cocompiled_models_share_one_token() {
    let a = open("cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite");
    let b = open("cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let (pa, pb) = (only_package(&a), only_package(&b));
    assert_eq!(pa.caching_token(), 0xe2c3_66fd_5d62_fa6b);
    assert_eq!(pa.caching_token(), pb.caching_token());
    assert_eq!(pa.parameter_caching().unwrap().parameter_caching_token, pa.caching_token());
    // A separately compiled model has another token.
    let alone = open("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    assert_ne!(only_package(&alone).caching_token(), pa.caching_token());
}

#[test]
fn lstm_is_not_fully_deterministic_and_has_signed_and_variable_layers() {
    let model = open("keras_lstm_mnist_ptq_edgetpu.tflite");
    let pkg = only_package(&model);
    let main = pkg.main();
    assert_eq!(main.kind, ExecutableType::ExecutionOnly);
    assert!(!main.dma_hints.fully_deterministic);
    assert!(!main.dma_hints.hints.iter().any(|h| matches!(h, DmaHint::Interrupt { .. } | DmaHint::Output { .. })));
    assert!(pkg.parameter_caching().unwrap().dma_hints.fully_deterministic);
    assert!(main.input_layers.iter().any(|l| l.data_type == DataType::SignedFixedPoint8));
    assert!(main.input_layers.iter().any(|l| l.data_type == DataType::SignedFixedPoint16));
    let vars: Vec<_> = main.output_layers.iter().filter(|l| l.name.ends_with("_variable_output")).collect();
    assert_eq!(vars.len(), 2);
}

#[test]
fn tiled_outputs_are_decoded() {
    let model = open("deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite");
    let pkg = only_package(&model);
    let main = pkg.main();
    let input = &main.input_layers[0];
    assert_eq!((input.y_dim, input.x_dim, input.z_dim, input.size_bytes), (513, 513, 3, 789_512));
    let out = &main.output_layers[0];
    assert_eq!((out.y_dim, out.x_dim, out.z_dim), (33, 33, 256));
    assert!(out.is_tiled());
    let layout = out.output.as_ref().unwrap().layout.as_ref().unwrap();
    assert_eq!(layout.linearized_tile_byte_offset.len(), 16);
    // x split 9/8/8/8 across the tile columns, row sizes 2304/2048.
    let mut split = [0; 4];
    for &t in &layout.x_coordinate_to_linear_tile_id_map {
        split[t as usize] += 1;
    }
    assert_eq!(split, [9, 8, 8, 8]);
    assert_eq!(layout.x_coordinate_to_local_y_row_size[0], 2304);
    assert_eq!(layout.x_coordinate_to_local_y_row_size[32], 2048);
    // The layout is a bijection onto the elements: every (y, x, z) lands on its own byte.
    let mut seen = vec![false; out.size_bytes];
    for y in 0..33 {
        for x in 0..33 {
            for z in 0..256 {
                let i = layout.index(y, x, z).unwrap() as usize;
                assert!(!seen[i], "({y},{x},{z}) collides");
                seen[i] = true;
            }
        }
    }
    assert_eq!(seen.iter().filter(|&&s| s).count(), 33 * 33 * 256);

    let posenet = open("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite");
    let pkg = only_package(&posenet);
    let heat = &pkg.main().output_layers[0];
    assert_eq!((heat.y_dim, heat.x_dim, heat.z_dim), (23, 31, 17));
    let layout = heat.output.as_ref().unwrap().layout.as_ref().unwrap();
    // Z is padded on the device: the stride between x neighbours exceeds 17.
    assert!(layout.index(0, 1, 0).unwrap() - layout.index(0, 0, 0).unwrap() > 17);
}

#[test]
fn every_compiled_model_decodes() {
    let mut decoded = 0;
    for rel in common::all_models() {
        let model = open(&rel);
        let pkgs = Package::all(&model).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(pkgs.len(), usize::from(rel.ends_with("_edgetpu.tflite")), "{rel}");
        for p in &pkgs {
            p.ensure_runnable().unwrap();
            assert!(p.main().bitstreams.iter().all(|b| b.data.len() % 16 == 0), "{rel}");
            decoded += 1;
        }
    }
    assert_eq!(decoded, 13);
}

/// Position of the first occurrence of `needle` in `hay` after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

#[test]
fn refuses_what_it_cannot_run() {
    let path = common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let original = std::fs::read(&path).unwrap();
    let model = Model::from_bytes(original.clone()).unwrap();
    let pkg = only_package(&model);
    // Locate min_runtime_version (field 0 of the package's root table) through the vtable.
    let base = pkg.offset;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let table = base + u32_at(&original, base);
    let vtable = (table as i64 - i32::from_le_bytes(original[table..table + 4].try_into().unwrap()) as i64) as usize;
    let field = u16::from_le_bytes(original[vtable + 4..vtable + 6].try_into().unwrap()) as usize;
    assert_eq!(u32_at(&original, table + field), 12);
    let mut newer = original.clone();
    newer[table + field..table + field + 4].copy_from_slice(&15u32.to_le_bytes());
    let model = Model::from_bytes(newer).unwrap();
    let pkg = only_package(&model);
    let err = pkg.ensure_runnable().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("version 15"), "{err}");

    // virtual_chip_id = -1 marks a multi-chip package: field 5 of the table (absent = 0), so
    // patch the vtable to point it at min_runtime_version's slot holding -1.
    let mut multi = original.clone();
    let vt_len = u16::from_le_bytes(original[vtable..vtable + 2].try_into().unwrap()) as usize;
    assert!(vt_len >= 4 + 2 * 6, "vtable too short to patch");
    multi[table + field..table + field + 4].copy_from_slice(&(-1i32).to_le_bytes());
    multi[vtable + 4 + 2 * 5..vtable + 4 + 2 * 5 + 2].copy_from_slice(&(field as u16).to_le_bytes());
    let model = Model::from_bytes(multi).unwrap();
    let err = only_package(&model).ensure_runnable().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("multi-chip"), "{err}");
}

#[test]
fn field_offset_past_the_bitstream_is_named() {
    let path = common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let mut bytes = std::fs::read(&path).unwrap();
    let model = Model::from_bytes(bytes.clone()).unwrap();
    let main_offset = only_package(&model).main().offset;
    // The output's LOWER field offset_bit is 1339590; move it past the 170032-byte bitstream.
    let at = find(&bytes, &1_339_590u32.to_le_bytes(), main_offset).unwrap();
    bytes[at..at + 4].copy_from_slice(&(170_032u32 * 8 - 16).to_le_bytes());
    let model = Model::from_bytes(bytes).unwrap();
    let err = Package::all(&model).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModel);
    let loc = err.location().unwrap();
    assert!(loc.field.contains("field_offsets[7].offset_bit"), "{err}");
    assert!(loc.offset > main_offset && loc.offset < main_offset + 176_128, "{err}");
    assert!(err.to_string().contains("does not fit in the 170032-byte bitstream"), "{err}");
}
